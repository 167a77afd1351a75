"""The dashboard stays fast with a large history: every endpoint answers from the aggregates in a few fixed
queries, none of which touches the request log, in well under a second and a half.

About 250,000 rollup rows (30 days of hours for 200 keys in 10 groups, two days of minutes, 20 deployments)
and 20,000 request logs are seeded in a few seconds: a few thousand template rows are written through the
ORM, then multiplied inside the database by one `INSERT ... SELECT` joined with the keys or deployments
(portable SQL: the same statement on SQLite and PostgreSQL).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys.choices import RollupSpan
from keys.latency import LATENCY_COLUMNS
from keys.models import DailySpend, DeploymentRollup, RequestLog, Team, UsageRollup, VirtualKey
from models_registry.models import Deployment
from models_registry.snapshot import forget_snapshot

pytestmark = pytest.mark.django_db

KEYS, GROUPS, DEPLOYMENTS = 200, 10, 20
MINUTE_KEYS = 10  # keys with per-minute rows (the two days minute rollups are kept)
TEMPLATE = "~template"
# Generous for a loaded two-core CI machine; a scan of millions of logs would not come close.
MAX_SECONDS = 1.5
# The most queries each endpoint may make, the admin's session and user lookups (2) included: traffic reads
# the series, the ranked keys and their aliases; deployments the rollup, plus the registry's version and
# deployments when its snapshot is rebuilt; cooldowns nothing but that; batches the active ones (none here).
MAX_QUERIES = {"traffic": 5, "deployments": 5, "cooldowns": 3, "batches": 3}


@dataclass(frozen=True)
class Seeded:
    hours: list[datetime]
    minutes: list[datetime]
    days: list
    log_count: int


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _fan_out(model: type[Model], *, join: str, overrides: dict[str, str], where: str = "") -> int:
    """Copy every template row of `model` once per row of the joined table, `overrides` giving the SQL of the
    columns that change (every other column is copied): `INSERT INTO t (...) SELECT ... FROM t JOIN ...`."""
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    table = _quote(model._meta.db_table)
    columns = ", ".join(_quote(field.column) for field in fields)
    values = ", ".join(overrides.get(field.name, f"t.{_quote(field.column)}") for field in fields)
    marker = "deployment_id" if model is DeploymentRollup else "key_id"
    statement = (f"INSERT INTO {table} ({columns}) SELECT {values} FROM {table} t {join} "  # noqa: S608
                 f"WHERE t.{_quote(marker)} = %s {where}")
    with connection.cursor() as cursor:
        cursor.execute(statement, [TEMPLATE])
        inserted = cursor.rowcount
    model.objects.filter(**{marker: TEMPLATE}).delete()
    return inserted


def _key_join() -> str:
    return f"CROSS JOIN {_quote(VirtualKey._meta.db_table)} k"


# Per-key rows scale the template's counts by the key's rank (kept in its rpm limit): key-199 spends most.
KEY_COLUMNS = {"key_id": "k.id", "team_id": "k.team_id", "model_group": "REPLACE(k.team_id, 'team', 'group')",
               "requests": "t.requests * k.rpm_limit", "errors": "t.errors * k.rpm_limit",
               "cost": "t.cost * k.rpm_limit"}
DEPLOYMENT_COLUMNS = {"deployment_id": "d.id", "model_group": "d.model_name"}


def _usage_template(span: str, start: datetime, index: int) -> UsageRollup:
    return UsageRollup(span=span, start=start, key_id=TEMPLATE, team_id=TEMPLATE, model_group=TEMPLATE,
                       requests=2, errors=1 if index % 5 == 0 else 0, prompt_tokens=100, completion_tokens=50,
                       cost=0.001)


def _deployment_template(span: str, start: datetime, index: int) -> DeploymentRollup:
    histogram = dict.fromkeys(LATENCY_COLUMNS, 0)
    histogram["latency_le_250"], histogram["latency_le_1000"] = 8, 2
    return DeploymentRollup(span=span, start=start, deployment_id=TEMPLATE, model_group=TEMPLATE, requests=10,
                            errors=1 if index % 4 == 0 else 0, latency_ms_total=3000.0, **histogram)


@pytest.fixture
def large_history() -> Seeded:
    now = timezone.now().astimezone(UTC)
    hour, minute = now.replace(minute=0, second=0, microsecond=0), now.replace(second=0, microsecond=0)
    hours = [hour - timedelta(hours=index) for index in range(30 * 24)]
    minutes = [minute - timedelta(minutes=index) for index in range(48 * 60)]
    days = [now.date() - timedelta(days=index) for index in range(31)]

    Team.objects.bulk_create([Team(id=f"team-{index}") for index in range(GROUPS)])
    VirtualKey.objects.bulk_create([
        VirtualKey(id=f"key-{index:03d}", digest=f"{index:064d}", key_name=f"sk-...{index:04d}",
                   key_alias=f"alias-{index:03d}", team_id=f"team-{index % GROUPS}", rpm_limit=index + 1)
        for index in range(KEYS)])
    Deployment.objects.bulk_create([
        Deployment(id=f"dep-{index:02d}", model_name=f"group-{index % GROUPS}", provider="mock",
                   provider_model="m", litellm_params={"model": "mock/m"}) for index in range(DEPLOYMENTS)])

    UsageRollup.objects.bulk_create([_usage_template(RollupSpan.HOUR, start, index)
                                     for index, start in enumerate(hours)])
    rows = _fan_out(UsageRollup, join=_key_join(), overrides=KEY_COLUMNS)
    UsageRollup.objects.bulk_create([_usage_template(RollupSpan.MINUTE, start, index)
                                     for index, start in enumerate(minutes)])
    rows += _fan_out(UsageRollup, join=_key_join(), overrides=KEY_COLUMNS, where=f"AND k.rpm_limit <= {MINUTE_KEYS}")
    DailySpend.objects.bulk_create([
        DailySpend(date=day, key_id=TEMPLATE, team_id=TEMPLATE, model_group=TEMPLATE, requests=48, errors=10,
                   prompt_tokens=2400, completion_tokens=1200, cost=0.024) for day in days])
    rows += _fan_out(DailySpend, join=_key_join(), overrides=KEY_COLUMNS)
    for span, starts in ((RollupSpan.HOUR, hours), (RollupSpan.MINUTE, minutes)):
        DeploymentRollup.objects.bulk_create([_deployment_template(span, start, index)
                                              for index, start in enumerate(starts)])
        rows += _fan_out(DeploymentRollup, join=f"CROSS JOIN {_quote(Deployment._meta.db_table)} d",
                         overrides=DEPLOYMENT_COLUMNS)
    assert rows == 720 * KEYS + 2880 * MINUTE_KEYS + 31 * KEYS + (720 + 2880) * DEPLOYMENTS  # 251,000

    RequestLog.objects.bulk_create([
        RequestLog(request_id=f"req_{index:04d}", created_at=now - timedelta(minutes=index), key_id=TEMPLATE,
                   operation="chat", model_group="group-0", deployment_id="dep-00", prompt_tokens=100,
                   completion_tokens=50, total_tokens=150, cost=0.001, latency_ms=180.0) for index in range(100)])
    logs = _fan_out(RequestLog, join=_key_join(), overrides={
        "request_id": "t.request_id || '-' || k.id", "key_id": "k.id", "team_id": "k.team_id"})
    forget_snapshot()
    return Seeded(hours=hours, minutes=minutes, days=days, log_count=logs)


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def _timed_get(client, url: str, *, max_queries: int) -> tuple[dict, float, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.content
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) <= max_queries, "\n".join(statements)
    return response.json(), elapsed, statements


def _in_window(body: dict, moments: list[datetime]) -> int:
    start = datetime.strptime(body["start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    end = datetime.strptime(body["end"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return sum(1 for moment in moments if start <= moment < end)


def _days_in_window(body: dict, days: list) -> int:
    first, last = body["labels"][0], body["labels"][-1]
    return sum(1 for day in days if first <= day.isoformat() <= last)


def test_every_endpoint_answers_from_aggregates_in_few_queries_and_fast(staff_client, large_history):
    assert RequestLog.objects.count() == large_history.log_count == 20_000
    weight = KEYS * (KEYS + 1) // 2  # every key's rank, summed: the multiplier of the template's counts
    log_table = RequestLog._meta.db_table
    timings = {}
    # The process's first request pays one-time costs (the static files finder's scan, URL imports): not measured.
    staff_client.get("/admin/dashboard/batches.json")

    for range_name, moments in (("hour", large_history.minutes), ("day", large_history.hours)):
        body, timings[f"traffic {range_name}"], statements = _timed_get(
            staff_client, f"/admin/dashboard/traffic.json?range={range_name}", max_queries=MAX_QUERIES["traffic"])
        assert all(log_table not in sql for sql in statements)
        points = _in_window(body, moments)
        keys_weight = MINUTE_KEYS * (MINUTE_KEYS + 1) // 2 if range_name == "hour" else weight
        assert points >= len(body["labels"]) - 1
        assert body["totals"]["requests"] == 2 * points * keys_weight
        assert body["totals"]["tokens"] == 150 * points * (MINUTE_KEYS if range_name == "hour" else KEYS)
        assert sorted(series["model_group"] for series in body["series"]) == [f"group-{index}"
                                                                               for index in range(GROUPS)]
        top = body["top_keys"]
        expected_top = MINUTE_KEYS if range_name == "hour" else KEYS
        assert [key["key_id"] for key in top] == [f"key-{index:03d}" for index in range(expected_top - 1,
                                                                                         expected_top - 11, -1)]
        assert top[0]["key_alias"] == f"alias-{expected_top - 1:03d}"

    body, timings["traffic 30d"], statements = _timed_get(
        staff_client, "/admin/dashboard/traffic.json?range=30d", max_queries=MAX_QUERIES["traffic"])
    assert all(log_table not in sql for sql in statements)
    days = _days_in_window(body, large_history.days)
    assert days == 30  # of the 31 seeded
    assert body["totals"]["requests"] == 48 * days * weight
    assert [key["key_id"] for key in body["top_keys"]][:3] == ["key-199", "key-198", "key-197"]

    body, timings["traffic 30d, one team"], statements = _timed_get(
        staff_client, "/admin/dashboard/traffic.json?range=30d&team_id=team-3", max_queries=MAX_QUERIES["traffic"])
    assert [series["model_group"] for series in body["series"]] == ["group-3"]
    assert body["totals"]["requests"] == 48 * days * sum(index + 1 for index in range(3, KEYS, GROUPS))

    for range_name, moments in (("hour", large_history.minutes), ("day", large_history.hours),
                                ("30d", large_history.hours)):
        body, timings[f"deployments {range_name}"], statements = _timed_get(
            staff_client, f"/admin/dashboard/deployments.json?range={range_name}",
            max_queries=MAX_QUERIES["deployments"])
        assert all(log_table not in sql for sql in statements)
        points = _in_window(body, moments)
        assert [row["deployment_id"] for row in body["deployments"]] == sorted(
            (f"dep-{index:02d}" for index in range(DEPLOYMENTS)), key=lambda name: (int(name[4:]) % GROUPS, name))
        first = body["deployments"][0]
        assert (first["requests"], first["latency_p50_ms"], first["latency_p95_ms"]) == (10 * points, 193.8, 875.0)

    for name in ("cooldowns", "batches"):
        body, timings[name], statements = _timed_get(staff_client, f"/admin/dashboard/{name}.json",
                                                     max_queries=MAX_QUERIES[name])
        assert body == {name: []}
        assert all(log_table not in sql for sql in statements)

    slow = {name: round(seconds, 3) for name, seconds in timings.items() if seconds >= MAX_SECONDS}
    assert not slow, f"slower than {MAX_SECONDS} s: {slow} (all: {timings})"
