"""Request logs and daily spend in the admin: listed, filtered, shown, and never editable."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from keys import log_buffer
from keys.choices import RequestStatus
from keys.models import DailySpend, RequestLog
from tests.keys.spend_support import record

LOGS = "/admin/keys/requestlog/"
DAILY = "/admin/keys/dailyspend/"


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


@pytest.fixture
def logs(db):
    log_buffer.pending_discard()
    day_one = datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp()
    day_two = datetime(2026, 5, 2, 12, tzinfo=UTC).timestamp()
    for fields in (
        {"request_id": "req_a_ok", "key_id": "key-a", "key_alias": "alpha", "team_id": "team-1", "started_at": day_one,
         "cost": 0.5, "total_tokens": 30},
        {"request_id": "req_a_fail", "key_id": "key-a", "key_alias": "alpha", "team_id": "team-1",
         "started_at": day_two, "status": RequestStatus.ERROR, "status_code": 429, "error_type": "rate_limit_error"},
        {"request_id": "req_b_ok", "key_id": "key-b", "team_id": "team-2", "model_group": "embed",
         "operation": "embeddings", "started_at": day_two, "cost": 0.25},
        {"request_id": "req_master", "started_at": day_two, "model_group": "embed", "operation": "embeddings"},
    ):
        log_buffer.usage_record_enqueue(record(**fields))
    log_buffer.usage_flush()
    return {row.request_id: row for row in RequestLog.objects.all()}


def listed(response) -> set[str]:
    assert response.status_code == 200
    return {str(row) for row in response.context["cl"].result_list}


def test_the_log_list_renders_every_row_with_key_cost_and_status(superuser_client, logs):
    response = superuser_client.get(LOGS)
    assert listed(response) == {"req_a_ok", "req_a_fail", "req_b_ok", "req_master"}
    html = response.content.decode()
    assert "alpha (key-a)" in html
    assert "master key" in html
    assert "0.500000" in html
    assert "rate_limit_error" in html


@pytest.mark.parametrize(("query", "expected"), [
    ("key_id=key-a", {"req_a_ok", "req_a_fail"}),
    ("team_id=team-2", {"req_b_ok"}),
    ("model_group=embed", {"req_b_ok", "req_master"}),
    ("status=error", {"req_a_fail"}),
    ("created_at__gte=2026-05-02+00:00:00%2B00:00&created_at__lt=2026-05-03+00:00:00%2B00:00",
     {"req_a_fail", "req_b_ok", "req_master"}),
    ("created_at__year=2026&created_at__month=5&created_at__day=1", {"req_a_ok"}),
    ("q=req_b_ok", {"req_b_ok"}),
])
def test_logs_filter_by_key_team_model_status_and_date(superuser_client, logs, query, expected):
    assert listed(superuser_client.get(f"{LOGS}?{query}")) == expected


def test_a_log_is_shown_read_only_and_cannot_be_added_changed_or_deleted(superuser_client, logs):
    row = logs["req_a_fail"]
    detail = superuser_client.get(f"{LOGS}{row.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "req_a_fail" in html and "rate_limit_error" in html
    assert 'name="_save"' not in html
    assert superuser_client.get(f"{LOGS}add/").status_code == 403
    assert superuser_client.post(f"{LOGS}{row.pk}/change/", {"request_id": "forged"}).status_code == 403
    assert superuser_client.post(f"{LOGS}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RequestLog.objects.get(pk=row.pk).request_id == "req_a_fail"


def test_daily_spend_lists_filters_and_is_read_only(superuser_client, logs):
    assert {(r.date, r.key_id, r.model_group) for r in listed_rows(superuser_client.get(DAILY))} == {
        (date(2026, 5, 1), "key-a", "gpt-fake"), (date(2026, 5, 2), "key-a", "gpt-fake"),
        (date(2026, 5, 2), "key-b", "embed"), (date(2026, 5, 2), "", "embed")}
    assert {(r.key_id, r.requests, r.cost) for r in listed_rows(superuser_client.get(f"{DAILY}?key_id=key-b"))} == {
        ("key-b", 1, 0.25)}
    assert {r.key_id for r in listed_rows(superuser_client.get(f"{DAILY}?model_group=embed"))} == {"key-b", ""}
    assert {r.date for r in listed_rows(superuser_client.get(f"{DAILY}?date__year=2026&date__month=5&date__day=1"))} \
        == {date(2026, 5, 1)}
    row = DailySpend.objects.get(key_id="key-b")
    detail = superuser_client.get(f"{DAILY}{row.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert superuser_client.get(f"{DAILY}add/").status_code == 403
    assert superuser_client.post(f"{DAILY}{row.pk}/delete/", {"post": "yes"}).status_code == 403


def listed_rows(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_anonymous_visitors_are_sent_to_the_login_page(client, logs):
    response = client.get(LOGS)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
