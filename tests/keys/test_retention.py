"""Retention: request logs older than N days and minute rollups older than N hours are deleted in bounded
chunks (one DELETE of at most `chunk_rows` ids each); recent rows, daily spend and hour rollups stay; the
command says what it did, or that there is nothing to do; the worker's schedule runs hourly and works off
a backlog sweep by sweep."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys.choices import RollupSpan
from keys.models import DailySpend, DeploymentRollup, RequestLog, UsageRollup
from keys.retention import (
    RetentionResult,
    RetentionSchedule,
    minute_rollups_prune,
    request_logs_prune,
    retention_apply,
)
from keys.spend import usage_records_write
from tests.keys.spend_support import record

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def at(moment: datetime, **fields):
    return record(started_at=moment.timestamp(), key_id="k1", team_id="t1", prompt_tokens=10, completion_tokens=5,
                  cost=0.5, **fields)


def write(*moments: datetime) -> None:
    """One request at each moment, through the log flush (request logs, daily spend and rollups alike)."""
    usage_records_write(records=[at(moment) for moment in moments])


def totals() -> dict:
    """What the aggregates say: daily spend per date, hour rollups per hour, hour latency rows per hour."""
    return {
        "daily": sorted(DailySpend.objects.values_list("date", "requests", "prompt_tokens", "cost")),
        "hours": sorted(UsageRollup.objects.filter(span=RollupSpan.HOUR).values_list("start", "requests", "cost")),
        "deployment_hours": sorted(DeploymentRollup.objects.filter(span=RollupSpan.HOUR)
                                   .values_list("start", "requests")),
    }


def deletes(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if query["sql"].lstrip().upper().startswith("DELETE")]


def deleted_ids(statement: str) -> list[int]:
    """The ids of `DELETE ... WHERE id IN (1, 2, 3)`, in the statement's order."""
    [ids] = re.findall(r"IN \(([^)]*)\)", statement)
    return sorted(int(value) for value in ids.split(","))


def test_request_logs_older_than_the_cutoff_go_and_the_rest_stays():
    old = [NOW - timedelta(days=31, minutes=index) for index in range(7)]
    recent = [NOW - timedelta(days=29), NOW - timedelta(hours=1), NOW - timedelta(days=30) + timedelta(seconds=1)]
    write(*old, *recent)
    kept_ids = set(RequestLog.objects.filter(created_at__gte=NOW - timedelta(days=30)).values_list("request_id",
                                                                                                   flat=True))
    before = totals()

    deleted = request_logs_prune(older_than_days=30, now=NOW)

    assert deleted == 7
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == kept_ids
    assert len(kept_ids) == 3
    assert totals() == before  # daily spend and hour rollups keep every request
    assert before["daily"][0][1] == 7  # the pruned day still counts its 7 requests


def test_each_chunk_is_one_bounded_delete_oldest_first():
    write(*[NOW - timedelta(days=10, minutes=index) for index in range(10)], NOW)
    oldest = list(RequestLog.objects.order_by("created_at").values_list("id", flat=True))
    assert len(oldest) == 11

    with CaptureQueriesContext(connection) as queries:
        deleted = request_logs_prune(older_than_days=7, chunk_rows=4, now=NOW)

    assert deleted == 10
    statements = deletes(queries)
    assert [deleted_ids(statement) for statement in statements] == \
        [sorted(oldest[:4]), sorted(oldest[4:8]), sorted(oldest[8:10])]
    assert all(statement.startswith('DELETE FROM "keys_requestlog" WHERE') for statement in statements)
    assert RequestLog.objects.count() == 1
    assert list(RequestLog.objects.values_list("id", flat=True)) == oldest[-1:]


def test_a_chunk_budget_stops_early_and_the_next_call_continues():
    write(*[NOW - timedelta(days=3, minutes=index) for index in range(5)])

    with CaptureQueriesContext(connection) as queries:
        first = retention_apply(log_days=1, rollup_hours=0, chunk_rows=2, max_chunks=1, now=NOW)

    assert first == RetentionResult(request_logs=2, minute_rollups=0, backlog=True)
    assert len(deletes(queries)) == 1
    assert RequestLog.objects.count() == 3
    assert retention_apply(log_days=1, rollup_hours=0, chunk_rows=2, max_chunks=5, now=NOW) == \
        RetentionResult(request_logs=3, minute_rollups=0, backlog=False)
    assert RequestLog.objects.count() == 0


def test_a_second_prune_of_the_same_rows_finds_nothing_and_does_no_harm():
    write(NOW - timedelta(days=5), NOW)

    assert request_logs_prune(older_than_days=2, now=NOW) == 1
    assert request_logs_prune(older_than_days=2, now=NOW) == 0
    assert RequestLog.objects.count() == 1


def test_minute_rollups_past_their_hours_go_hour_rollups_and_daily_spend_stay():
    write(NOW - timedelta(hours=50), NOW - timedelta(hours=49, minutes=30), NOW - timedelta(hours=47), NOW)
    before = totals()
    minutes_before = UsageRollup.objects.filter(span=RollupSpan.MINUTE).count()
    assert minutes_before == 4

    deleted = minute_rollups_prune(older_than_hours=48, chunk_rows=1, now=NOW)

    assert deleted == 4  # two usage minutes and two deployment minutes
    minutes = sorted(UsageRollup.objects.filter(span=RollupSpan.MINUTE).values_list("start", flat=True))
    assert minutes == [NOW - timedelta(hours=47), NOW]
    assert sorted(DeploymentRollup.objects.filter(span=RollupSpan.MINUTE).values_list("start", flat=True)) == minutes
    assert totals() == before
    assert RequestLog.objects.count() == 4  # request logs are their own retention


def test_nonsense_ages_and_chunks_are_refused():
    with pytest.raises(ValueError, match="older_than_days must be at least 1"):
        request_logs_prune(older_than_days=0)
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        request_logs_prune(older_than_days=1, chunk_rows=0)
    with pytest.raises(ValueError, match="older_than_hours must be at least 1"):
        minute_rollups_prune(older_than_hours=0)


def run_command(*args) -> str:
    output = StringIO()
    call_command("prune_request_logs", *args, stdout=output)
    return output.getvalue()


def test_the_command_prunes_with_days_and_says_what_it_deleted(settings):
    settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = 48
    now = datetime.now(UTC)
    write(now - timedelta(days=40), now - timedelta(days=35), now - timedelta(days=3), now)

    output = run_command("--days", "30", "--chunk-rows", "1")

    assert output == "Deleted 2 request logs older than 30 days.\nDeleted 6 minute rollups older than 48 hours.\n"
    assert RequestLog.objects.count() == 2
    assert DailySpend.objects.count() == 4


def test_the_command_defaults_to_the_setting(settings):
    settings.GATEWAY_LOG_RETENTION_DAYS = 2
    settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = 0
    now = datetime.now(UTC)
    write(now - timedelta(days=3), now)

    assert run_command() == "Deleted 1 request logs older than 2 days.\n"
    assert RequestLog.objects.count() == 1


def test_the_command_with_retention_off_and_no_days_deletes_nothing(settings):
    settings.GATEWAY_LOG_RETENTION_DAYS = 0
    settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = 0
    write(datetime.now(UTC) - timedelta(days=400))

    with CaptureQueriesContext(connection) as queries:
        output = run_command()

    assert output == ("Request logs are kept forever (GATEWAY_LOG_RETENTION_DAYS is 0): nothing to do. "
                      "Pass --days N to prune them now.\n")
    assert queries.captured_queries == []
    assert RequestLog.objects.count() == 1


def test_the_command_refuses_bad_arguments():
    with pytest.raises(CommandError, match="--days must be at least 1"):
        run_command("--days", "0")
    with pytest.raises(CommandError, match="--chunk-rows must be at least 1"):
        run_command("--days", "3", "--chunk-rows", "0")


def test_the_schedule_runs_at_once_then_hourly_and_works_off_a_backlog(settings, caplog):
    settings.GATEWAY_LOG_RETENTION_DAYS = 1
    settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = 72
    now = datetime.now(UTC)
    write(*[now - timedelta(days=2, minutes=index) for index in range(5)], now)
    schedule = RetentionSchedule(chunk_rows=2, max_chunks=2)
    caplog.set_level("INFO", logger="gatehouse.retention")

    first = schedule.run_if_due(clock=1000.0)
    assert first == RetentionResult(request_logs=4, minute_rollups=0, backlog=True)
    second = schedule.run_if_due(clock=1005.0)  # the backlog: the very next sweep continues
    assert second == RetentionResult(request_logs=1, minute_rollups=0, backlog=False)
    assert schedule.run_if_due(clock=1005.0 + 3599) is None  # then not before an hour has passed
    write(now - timedelta(days=2))
    assert schedule.run_if_due(clock=1005.0 + 3600) == RetentionResult(request_logs=1, minute_rollups=0,
                                                                       backlog=False)
    assert RequestLog.objects.count() == 1

    messages = [(entry.getMessage(), entry.request_logs_deleted, entry.backlog) for entry in caplog.records]
    assert messages == [
        ("retention: deleted 4 request logs older than 1 days and 0 minute rollups older than 72 hours; more to "
         "delete in the next sweep", 4, True),
        ("retention: deleted 1 request logs older than 1 days and 0 minute rollups older than 72 hours", 1, False),
        ("retention: deleted 1 request logs older than 1 days and 0 minute rollups older than 72 hours", 1, False),
    ]


def test_the_schedule_prunes_minute_rollups_even_with_log_retention_off(settings):
    settings.GATEWAY_LOG_RETENTION_DAYS = 0
    settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = 1
    now = datetime.now(UTC)
    write(now - timedelta(hours=3), now)

    assert RetentionSchedule().run_if_due(clock=0.0) == RetentionResult(request_logs=0, minute_rollups=2)
    assert RequestLog.objects.count() == 2
    assert UsageRollup.objects.filter(span=RollupSpan.MINUTE).count() == 1
