"""The request log buffer: rows, key and team spend and daily aggregates written in bulk, outages survived."""
from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime

import pytest
from django.db import OperationalError, connection

from keys import log_buffer
from keys.choices import RequestStatus
from keys.models import DailySpend, RequestLog, Team, VirtualKey
from tests.keys.spend_support import make_key, make_team, record
from tests.support.polling import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_buffer():
    log_buffer.pending_discard()
    yield
    log_buffer.pending_discard()


def daily_rows() -> list[tuple]:
    return list(DailySpend.objects.order_by("date", "key_id", "model_group").values_list(
        "date", "key_id", "team_id", "model_group", "requests", "errors", "prompt_tokens", "completion_tokens", "cost"))


def logged_rows() -> int:
    """Rows written so far, read while the flusher thread may be writing (SQLite's shared in-memory test
    database then answers "table is locked": not yet, ask again)."""
    try:
        return RequestLog.objects.count()
    except OperationalError:
        return -1


def test_enqueue_writes_nothing_until_the_flush():
    log_buffer.usage_record_enqueue(record(request_id="req_one"))
    assert RequestLog.objects.count() == 0
    assert log_buffer.pending_count() == 1

    assert log_buffer.usage_flush() == 1

    assert log_buffer.pending_count() == 0
    row = RequestLog.objects.get()
    assert (row.request_id, row.operation, row.model_group, row.deployment_id, row.provider, row.provider_model,
            row.status, row.status_code) == ("req_one", "chat", "gpt-fake", "gpt-fake-1", "openai", "gpt-4o-mini",
                                             RequestStatus.OK, 200)


def test_every_field_of_a_record_reaches_its_row():
    started = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC).timestamp()
    log_buffer.usage_record_enqueue(record(
        request_id="req_full", started_at=started, operation="completions", key_id="key-a", key_alias="alias a",
        team_id="team-a", user_id="user-a", model_group="grp", deployment_id="dep", provider="azure",
        provider_model="az-model", streamed=True, status=RequestStatus.ERROR, status_code=502,
        error_type="api_error", prompt_tokens=3, completion_tokens=4, total_tokens=7, cost=0.25, latency_ms=12.5,
        time_to_first_token_ms=3.5, attempts=3, fallbacks=1, metadata={"job": "nightly", "n": [1, 2]}))
    log_buffer.usage_flush()

    row = RequestLog.objects.values().get()
    row.pop("id")
    assert row == {
        "request_id": "req_full", "created_at": datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC),
        "key_id": "key-a", "key_alias": "alias a", "team_id": "team-a", "user_id": "user-a",
        "operation": "completions", "model_group": "grp", "deployment_id": "dep", "provider": "azure",
        "provider_model": "az-model", "streamed": True, "status": "error", "status_code": 502,
        "error_type": "api_error", "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cost": 0.25,
        "latency_ms": 12.5, "time_to_first_token_ms": 3.5, "attempts": 3, "fallbacks": 1,
        "metadata": {"job": "nightly", "n": [1, 2]},
    }


def test_spend_accumulates_on_keys_and_teams_one_update_each_per_flush(django_assert_max_num_queries):
    team = make_team("team-1")
    make_key("key-a", team=team, spend=1.0)
    make_key("key-b")
    for cost in (0.5, 0.25, 0.125):
        log_buffer.usage_record_enqueue(record(key_id="key-a", team_id="team-1", cost=cost))
    log_buffer.usage_record_enqueue(record(key_id="key-b", cost=2.0))
    log_buffer.usage_record_enqueue(record(key_id="key-b", cost=0.0, status=RequestStatus.ERROR, status_code=429))

    # savepoint + insert + 2 key updates + 1 team update + 1 daily upsert + 1 usage rollup upsert + 1 deployment
    # rollup upsert + release: never one per request.
    with django_assert_max_num_queries(9):
        assert log_buffer.usage_flush() == 5

    assert VirtualKey.objects.get(id="key-a").spend == 1.875
    assert VirtualKey.objects.get(id="key-b").spend == 2.0
    assert Team.objects.get(id="team-1").spend == 0.875


def test_daily_spend_is_upserted_per_day_key_team_and_model_across_flushes():
    day_one = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    day_two = datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    log_buffer.usage_record_enqueue(record(started_at=day_one, key_id="k", team_id="t", prompt_tokens=10,
                                           completion_tokens=5, total_tokens=15, cost=0.5))
    log_buffer.usage_record_enqueue(record(started_at=day_two, key_id="k", team_id="t", prompt_tokens=1,
                                           completion_tokens=1, total_tokens=2, cost=0.25))
    log_buffer.usage_record_enqueue(record(started_at=day_two, key_id="", model_group="other", prompt_tokens=4,
                                           total_tokens=4, cost=0.125))
    log_buffer.usage_flush()
    # A second flush adds to the same rows instead of replacing them.
    log_buffer.usage_record_enqueue(record(started_at=day_two, key_id="k", team_id="t", prompt_tokens=2,
                                           completion_tokens=3, total_tokens=5, cost=0.5))
    log_buffer.usage_record_enqueue(record(started_at=day_two, key_id="k", team_id="t", status=RequestStatus.ERROR,
                                           status_code=502))
    log_buffer.usage_flush()

    assert daily_rows() == [
        (date(2026, 1, 31), "k", "t", "gpt-fake", 1, 0, 10, 5, 0.5),
        (date(2026, 2, 1), "", "", "other", 1, 0, 4, 0, 0.125),
        (date(2026, 2, 1), "k", "t", "gpt-fake", 3, 1, 3, 4, 0.75),
    ]


def test_a_database_outage_keeps_the_rows_and_the_next_flush_writes_them():
    """The table is renamed away (a real database error, not a patched function), then brought back."""
    make_key("key-a", spend=0.0)
    for index in range(3):
        log_buffer.usage_record_enqueue(record(request_id=f"req_{index}", key_id="key-a", cost=1.0))
    table = connection.ops.quote_name(RequestLog._meta.db_table)
    hidden = connection.ops.quote_name("requestlog_hidden")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {hidden}")
    try:
        with pytest.raises(Exception) as failure:
            log_buffer.usage_flush()
        assert "requestlog" in str(failure.value).lower()
        assert [r.request_id for r in log_buffer.pending_records()] == ["req_0", "req_1", "req_2"]
        assert VirtualKey.objects.get(id="key-a").spend == 0.0  # nothing half-written
        assert DailySpend.objects.count() == 0
        log_buffer.usage_record_enqueue(record(request_id="req_3", key_id="key-a", cost=1.0))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {hidden} RENAME TO {table}")

    assert log_buffer.usage_flush() == 4
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["req_0", "req_1", "req_2", "req_3"]
    assert VirtualKey.objects.get(id="key-a").spend == 4.0


@pytest.mark.parametrize("poison", [
    {"prompt_tokens": -1},  # the column's CHECK constraint refuses it: an IntegrityError
    {"metadata": {"not json": {1, 2}}},  # cannot even be encoded
], ids=["constraint", "unencodable"])
def test_a_row_the_database_cannot_store_is_dropped_alone(caplog, poison):
    """A bad row must not take the rest of its batch with it, nor block the buffer forever."""
    make_key("key-a")
    log_buffer.usage_record_enqueue(record(request_id="req_good_1", key_id="key-a", cost=1.0))
    log_buffer.usage_record_enqueue(record(request_id="req_bad", key_id="key-a", cost=5.0, **poison))
    log_buffer.usage_record_enqueue(record(request_id="req_good_2", key_id="key-a", cost=1.0))

    assert log_buffer.usage_flush() == 2

    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"req_good_1", "req_good_2"}
    assert VirtualKey.objects.get(id="key-a").spend == 2.0  # the bad row's spend went with it
    assert DailySpend.objects.get().requests == 2
    assert "request log row for req_bad cannot be stored; dropped" in caplog.text
    assert log_buffer.pending_count() == 0


def test_long_strings_are_cut_to_their_columns():
    log_buffer.usage_record_enqueue(record(model_group="m" * 5000, error_type="e" * 500))
    log_buffer.usage_flush()
    row = RequestLog.objects.get()
    assert row.model_group == "m" * 255
    assert row.error_type == "e" * 64
    assert DailySpend.objects.get().model_group == "m" * 255


def test_memory_is_bounded_the_oldest_rows_go_first(caplog):
    caplog.set_level(logging.ERROR, logger="gatehouse.usage")
    total = log_buffer.MAX_PENDING_ROWS + 5
    for index in range(total):
        log_buffer.usage_record_enqueue(record(request_id=f"req_{index}"))
    pending = log_buffer.pending_records()
    assert len(pending) == log_buffer.MAX_PENDING_ROWS
    assert pending[0].request_id == "req_5"
    assert pending[-1].request_id == f"req_{total - 1}"
    assert "request log buffer full" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_background_flusher_writes_within_its_interval_and_stop_writes_the_rest():
    log_buffer.flusher_start(interval=0.05)
    try:
        assert log_buffer.flusher_running()
        for index in range(3):
            log_buffer.usage_record_enqueue(record(request_id=f"req_bg_{index}"))
        assert wait_until(lambda: logged_rows() == 3, seconds=10, interval=0.1)
    finally:
        log_buffer.flusher_stop()
    assert not log_buffer.flusher_running()

    # Stopped with a long interval: what is pending is written by the stop itself.
    log_buffer.flusher_start(interval=3600)
    log_buffer.usage_record_enqueue(record(request_id="req_last"))
    time.sleep(0.05)
    assert RequestLog.objects.filter(request_id="req_last").count() == 0
    assert log_buffer.flusher_stop() == 1
    assert RequestLog.objects.filter(request_id="req_last").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_full_batch_wakes_the_flusher_before_its_interval():
    log_buffer.flusher_start(interval=3600)
    try:
        for index in range(log_buffer.FLUSH_BATCH_ROWS):
            log_buffer.usage_record_enqueue(record(request_id=f"req_batch_{index}"))
        assert wait_until(lambda: logged_rows() == log_buffer.FLUSH_BATCH_ROWS, seconds=10,
                          interval=0.1)
    finally:
        log_buffer.flusher_stop()


@pytest.mark.django_db(transaction=True)
def test_the_background_flusher_retries_until_the_database_is_back(caplog):
    table = connection.ops.quote_name(RequestLog._meta.db_table)
    hidden = connection.ops.quote_name("requestlog_away")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {hidden}")
    log_buffer.flusher_start(interval=0.05)
    try:
        log_buffer.usage_record_enqueue(record(request_id="req_during_outage"))
        assert wait_until(lambda: "request log flush failed; 1 rows kept" in caplog.text, seconds=10, interval=0.05)
        assert log_buffer.pending_count() == 1
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {hidden} RENAME TO {table}")
        assert wait_until(lambda: logged_rows() == 1, seconds=10, interval=0.1)
    finally:
        log_buffer.flusher_stop()
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["req_during_outage"]
