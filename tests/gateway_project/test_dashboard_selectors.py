"""The dashboard's reads at a fixed moment: windows, zero-filled series per group, totals, filters, top keys and
per-deployment health, each compared whole."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from keys.choices import RollupSpan
from keys.dashboard_selectors import (
    MAX_SERIES_GROUPS,
    OTHER_GROUPS,
    dashboard_window,
    deployment_health,
    usage_traffic,
)
from keys.latency import LATENCY_COLUMNS
from keys.models import DailySpend, DeploymentRollup, RequestLog, UsageRollup
from models_registry.cooldowns import cooldown_start
from models_registry.snapshot import forget_snapshot
from tests.keys.spend_support import make_key, make_team

pytestmark = pytest.mark.django_db

# 2026-03-04 10:15:42 UTC: the last minute point is 10:15, the last hour point 10:00, the last day 03-04.
NOW = datetime(2026, 3, 4, 10, 15, 42, tzinfo=UTC)
MINUTE = datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
HOUR = datetime(2026, 3, 4, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_cached_registry():
    forget_snapshot()
    yield
    forget_snapshot()


def usage(span: str, start: datetime, group: str = "chat", key_id: str = "k1", team_id: str = "t1", **counts):
    return UsageRollup.objects.create(span=span, start=start, key_id=key_id, team_id=team_id, model_group=group,
                                      **counts)


def zeros(points: int, *at: tuple[int, float]) -> list:
    values = [0] * points
    for index, value in at:
        values[index] = value
    return values


@pytest.mark.parametrize(("range_name", "span", "first", "end", "first_label", "last_label"), [
    ("hour", "minute", datetime(2026, 3, 4, 9, 16, tzinfo=UTC), datetime(2026, 3, 4, 10, 16, tzinfo=UTC),
     "2026-03-04T09:16:00Z", "2026-03-04T10:15:00Z"),
    ("day", "hour", datetime(2026, 3, 3, 11, tzinfo=UTC), datetime(2026, 3, 4, 11, tzinfo=UTC),
     "2026-03-03T11:00:00Z", "2026-03-04T10:00:00Z"),
    ("30d", "day", datetime(2026, 2, 3, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC), "2026-02-03", "2026-03-04"),
])
def test_each_range_ends_with_the_point_holding_now(range_name, span, first, end, first_label, last_label):
    window = dashboard_window(range_name, now=NOW)
    labels = window.labels()
    assert (window.span, window.start, window.end) == (span, first, end)
    assert len(labels) == {"hour": 60, "day": 24, "30d": 30}[range_name]
    assert (labels[0], labels[-1]) == (first_label, last_label)
    assert len(set(labels)) == len(labels)


def test_the_last_hour_reads_minute_rows_per_group_zero_filled_with_totals_and_top_keys():
    make_key("k1", key_alias="nightly-jobs", team=make_team("t1"))
    usage(RollupSpan.MINUTE, MINUTE, requests=3, errors=1, prompt_tokens=30, completion_tokens=12, cost=0.5)
    usage(RollupSpan.MINUTE, MINUTE - timedelta(minutes=10), requests=2, prompt_tokens=4, completion_tokens=4,
          cost=0.25)
    usage(RollupSpan.MINUTE, MINUTE - timedelta(minutes=10), group="embed", key_id="k2", team_id="t2", requests=5,
          prompt_tokens=50, cost=0.125)
    usage(RollupSpan.MINUTE, MINUTE - timedelta(minutes=59), group="embed", key_id="", team_id="", requests=1,
          prompt_tokens=1, cost=0.0)
    # Outside the window (an hour and a minute ago), and hour rows: neither is read for the last hour.
    usage(RollupSpan.MINUTE, MINUTE - timedelta(minutes=60), requests=100, cost=9.0)
    usage(RollupSpan.HOUR, HOUR, requests=1000, cost=90.0)

    traffic = usage_traffic(window=dashboard_window("hour", now=NOW))

    assert traffic == {
        "range": "hour",
        "span": "minute",
        "start": "2026-03-04T09:16:00Z",
        "end": "2026-03-04T10:16:00Z",
        "labels": traffic["labels"],
        "filters": {"key_id": None, "team_id": None},
        "series": [
            {"model_group": "embed", "requests": zeros(60, (0, 1), (49, 5)), "errors": zeros(60),
             "cost": zeros(60, (0, 0.0), (49, 0.125)), "tokens": zeros(60, (0, 1), (49, 50))},
            {"model_group": "chat", "requests": zeros(60, (49, 2), (59, 3)), "errors": zeros(60, (59, 1)),
             "cost": zeros(60, (49, 0.25), (59, 0.5)), "tokens": zeros(60, (49, 8), (59, 42))},
        ],
        "totals": {"requests": 11, "errors": 1, "cost": 0.875, "prompt_tokens": 85, "completion_tokens": 16,
                   "tokens": 101, "error_rate": 0.0909},
        "top_keys": [
            {"key_id": "k1", "key_alias": "nightly-jobs", "team_id": "t1", "master_key": False, "requests": 5,
             "errors": 1, "tokens": 50, "cost": 0.75, "admin_url": "/admin/keys/virtualkey/k1/change/"},
            {"key_id": "k2", "key_alias": None, "team_id": None, "master_key": False, "requests": 5, "errors": 0,
             "tokens": 50, "cost": 0.125, "admin_url": None},
            {"key_id": "", "key_alias": None, "team_id": None, "master_key": True, "requests": 1, "errors": 0,
             "tokens": 1, "cost": 0.0, "admin_url": None},
        ],
    }
    assert traffic["labels"][49] == "2026-03-04T10:05:00Z"
    assert all(isinstance(value, float) for value in traffic["series"][0]["cost"])


def test_the_last_day_reads_hour_rows_and_the_filters_narrow_series_totals_and_keys():
    usage(RollupSpan.HOUR, HOUR, requests=4, errors=2, prompt_tokens=10, completion_tokens=10, cost=1.0)
    usage(RollupSpan.HOUR, HOUR - timedelta(hours=23), key_id="k2", requests=6, cost=2.0)
    usage(RollupSpan.HOUR, HOUR - timedelta(hours=5), key_id="k3", team_id="t3", requests=7, cost=4.0)
    usage(RollupSpan.MINUTE, MINUTE, requests=500, cost=50.0)  # minute rows are not what a day reads
    window = dashboard_window("day", now=NOW)

    everything = usage_traffic(window=window)
    assert everything["series"] == [
        {"model_group": "chat", "requests": zeros(24, (0, 6), (18, 7), (23, 4)), "errors": zeros(24, (23, 2)),
         "cost": zeros(24, (0, 2.0), (18, 4.0), (23, 1.0)), "tokens": zeros(24, (23, 20))},
    ]
    assert [key["key_id"] for key in everything["top_keys"]] == ["k3", "k2", "k1"]

    team = usage_traffic(window=window, team_id="t1")
    assert team["filters"] == {"key_id": None, "team_id": "t1"}
    assert team["series"][0]["requests"] == zeros(24, (0, 6), (23, 4))
    assert team["totals"] == {"requests": 10, "errors": 2, "cost": 3.0, "prompt_tokens": 10,
                              "completion_tokens": 10, "tokens": 20, "error_rate": 0.2}
    assert [(key["key_id"], key["cost"]) for key in team["top_keys"]] == [("k2", 2.0), ("k1", 1.0)]

    key = usage_traffic(window=window, key_id="k2", team_id="t1")
    assert key["series"][0]["requests"] == zeros(24, (0, 6))
    assert [row["key_id"] for row in key["top_keys"]] == ["k2"]

    nobody = usage_traffic(window=window, key_id="no-such-key")
    assert nobody["series"] == [] and nobody["top_keys"] == []
    assert nobody["totals"] == {"requests": 0, "errors": 0, "cost": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                "tokens": 0, "error_rate": None}


def test_thirty_days_read_daily_spend_one_point_per_utc_day():
    def daily(day: date, **fields):
        values = {"key_id": "k1", "team_id": "t1", "model_group": "chat", **fields}
        return DailySpend.objects.create(date=day, **values)

    daily(date(2026, 3, 4), requests=2, cost=0.5, prompt_tokens=7, completion_tokens=3)
    daily(date(2026, 2, 3), requests=1, errors=1, cost=0.25)
    daily(date(2026, 2, 3), key_id="k2", requests=1, cost=0.25)
    daily(date(2026, 2, 2), requests=50, cost=10.0)  # 31 days ago: outside
    usage(RollupSpan.HOUR, HOUR, requests=900)  # not read for 30 days
    RequestLog.objects.create(request_id="req_only_in_the_log", created_at=NOW, operation="chat", model_group="chat")

    traffic = usage_traffic(window=dashboard_window("30d", now=NOW))

    assert traffic["labels"][0] == "2026-02-03" and traffic["labels"][-1] == "2026-03-04"
    assert traffic["series"] == [
        {"model_group": "chat", "requests": zeros(30, (0, 2), (29, 2)), "errors": zeros(30, (0, 1)),
         "cost": zeros(30, (0, 0.5), (29, 0.5)), "tokens": zeros(30, (29, 10))},
    ]
    assert traffic["totals"]["requests"] == 4
    assert [(key["key_id"], key["requests"], key["cost"]) for key in traffic["top_keys"]] == [
        ("k1", 3, 0.75), ("k2", 1, 0.25)]


def test_past_the_series_limit_the_quietest_groups_are_summed_into_one():
    for number in range(MAX_SERIES_GROUPS + 2):
        usage(RollupSpan.HOUR, HOUR, group=f"group-{number:02d}", requests=100 - number, cost=1.0)
    series = usage_traffic(window=dashboard_window("day", now=NOW))["series"]
    names = [item["model_group"] for item in series]
    assert names == [f"group-{number:02d}" for number in range(MAX_SERIES_GROUPS - 1)] + [OTHER_GROUPS]
    # The last three groups (91, 90 and 89 requests) share one series.
    assert series[-1]["requests"][23] == 91 + 90 + 89
    assert series[-1]["cost"][23] == 3.0


def histogram(**buckets: int) -> dict[str, int]:
    """Latency counts by bucket index, e.g. histogram(b4=2) puts two requests in the 50-100 ms bucket."""
    counts = dict.fromkeys(LATENCY_COLUMNS, 0)
    for name, count in buckets.items():
        counts[LATENCY_COLUMNS[int(name[1:])]] = count
    return counts


def test_deployment_health_sums_rows_in_sql_and_reads_percentiles_from_the_histogram(configure_gateway):
    configure_gateway({"model_list": [
        {"model_name": "chat", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "chat-a"}},
        {"model_name": "chat", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "chat-b"}},
        {"model_name": "idle", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "idle-1"}},
    ]})
    cooldown_start("chat-b", seconds=30, reason="test")
    # chat-a: two minutes of traffic, 4 requests in the 50-100 ms bucket and 4 in 100-250 ms, 2 errors.
    for minute, errors in ((MINUTE, 2), (MINUTE - timedelta(minutes=30), 0)):
        DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=minute, deployment_id="chat-a",
                                        model_group="chat", requests=4, errors=errors, latency_ms_total=1000.0,
                                        **histogram(b4=2, b5=2))
    DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=MINUTE, deployment_id="chat-b", model_group="chat",
                                    requests=1, errors=1, latency_ms_total=70000.0, **histogram(b13=1))
    DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=MINUTE, deployment_id="gone-1", model_group="old",
                                    requests=2, latency_ms_total=8.0, **histogram(b0=2))
    DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=MINUTE - timedelta(hours=2),
                                    deployment_id="chat-a", model_group="chat", requests=90, **histogram(b12=90))

    report = deployment_health(window=dashboard_window("hour", now=NOW))

    cooling = report["deployments"][1].pop("cooldown_seconds")
    assert 29.0 <= cooling <= 30.0
    assert report == {"range": "hour", "span": "minute", "start": "2026-03-04T09:16:00Z",
                      "end": "2026-03-04T10:16:00Z", "deployments": [
        {"deployment_id": "chat-a", "model_group": "chat", "provider": "mock", "in_registry": True, "requests": 8,
         "errors": 2, "error_rate": 0.25, "latency_mean_ms": 250.0, "latency_p50_ms": 100.0,
         "latency_p95_ms": 235.0, "cooldown_seconds": None,
         "admin_url": "/admin/models_registry/deployment/chat-a/change/"},
        {"deployment_id": "chat-b", "model_group": "chat", "provider": "mock", "in_registry": True, "requests": 1,
         "errors": 1, "error_rate": 1.0, "latency_mean_ms": 70000.0, "latency_p50_ms": 60000.0,
         "latency_p95_ms": 60000.0, "admin_url": "/admin/models_registry/deployment/chat-b/change/"},
        {"deployment_id": "idle-1", "model_group": "idle", "provider": "mock", "in_registry": True, "requests": 0,
         "errors": 0, "error_rate": None, "latency_mean_ms": None, "latency_p50_ms": None, "latency_p95_ms": None,
         "cooldown_seconds": None, "admin_url": "/admin/models_registry/deployment/idle-1/change/"},
        {"deployment_id": "gone-1", "model_group": "old", "provider": None, "in_registry": False, "requests": 2,
         "errors": 0, "error_rate": 0.0, "latency_mean_ms": 4.0, "latency_p50_ms": 2.5, "latency_p95_ms": 4.8,
         "cooldown_seconds": None, "admin_url": None},
    ]}


def test_a_day_and_thirty_days_of_deployment_health_read_hour_rows():
    DeploymentRollup.objects.create(span=RollupSpan.HOUR, start=HOUR - timedelta(days=20), deployment_id="d1",
                                    model_group="chat", requests=10, errors=1, latency_ms_total=500.0,
                                    **histogram(b3=10))
    DeploymentRollup.objects.create(span=RollupSpan.HOUR, start=HOUR, deployment_id="d1", model_group="chat",
                                    requests=10, latency_ms_total=500.0, **histogram(b3=10))
    DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=MINUTE, deployment_id="d1", model_group="chat",
                                    requests=1000, **histogram(b13=1000))

    day = deployment_health(window=dashboard_window("day", now=NOW))["deployments"]
    month = deployment_health(window=dashboard_window("30d", now=NOW))["deployments"]

    assert [(row["requests"], row["errors"], row["latency_p50_ms"]) for row in day] == [(10, 0, 37.5)]
    assert [(row["requests"], row["errors"], row["error_rate"], row["latency_mean_ms"]) for row in month] == [
        (20, 1, 0.05, 50.0)]
