"""The minute and hour rollups written by the log flush, and percentiles read back from their histograms."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keys.choices import RequestStatus, RollupSpan
from keys.latency import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, latency_bucket_index, latency_percentile
from keys.models import DailySpend, DeploymentRollup, UsageRollup
from keys.spend import usage_records_write
from tests.keys.spend_support import record

# 2026-03-04 10:15:30 UTC and 10:59:59, in the same hour; 11:00:00 opens the next.
QUARTER_PAST = datetime(2026, 3, 4, 10, 15, 30, tzinfo=UTC).timestamp()
END_OF_HOUR = datetime(2026, 3, 4, 10, 59, 59, tzinfo=UTC).timestamp()
NEXT_HOUR = datetime(2026, 3, 4, 11, 0, 0, tzinfo=UTC).timestamp()


def rows(model, span):
    return list(model.objects.filter(span=span).order_by("start", "pk").values())


@pytest.mark.django_db
def test_a_flush_adds_each_request_to_its_minute_and_hour_per_key_team_and_group():
    usage_records_write(records=[
        record(started_at=QUARTER_PAST, key_id="k1", team_id="t1", prompt_tokens=10, completion_tokens=5, cost=0.5),
        record(started_at=QUARTER_PAST + 10, key_id="k1", team_id="t1", prompt_tokens=1, completion_tokens=2,
               cost=0.25, status=RequestStatus.ERROR, status_code=502),
        record(started_at=END_OF_HOUR, key_id="k1", team_id="t1", prompt_tokens=100, cost=1.0),
        record(started_at=NEXT_HOUR, key_id="k2", model_group="other", deployment_id="other-1", cost=2.0),
    ])
    hours = [(row["start"], row["key_id"], row["team_id"], row["model_group"], row["requests"], row["errors"],
              row["prompt_tokens"], row["completion_tokens"], row["cost"])
             for row in rows(UsageRollup, RollupSpan.HOUR)]
    assert hours == [
        (datetime(2026, 3, 4, 10, tzinfo=UTC), "k1", "t1", "gpt-fake", 3, 1, 111, 7, 1.75),
        (datetime(2026, 3, 4, 11, tzinfo=UTC), "k2", "", "other", 1, 0, 0, 0, 2.0),
    ]
    minutes = [(row["start"], row["requests"], row["cost"]) for row in rows(UsageRollup, RollupSpan.MINUTE)]
    assert minutes == [(datetime(2026, 3, 4, 10, 15, tzinfo=UTC), 2, 0.75),
                       (datetime(2026, 3, 4, 10, 59, tzinfo=UTC), 1, 1.0),
                       (datetime(2026, 3, 4, 11, 0, tzinfo=UTC), 1, 2.0)]
    assert DailySpend.objects.get(key_id="k1").requests == 3


@pytest.mark.django_db
def test_later_flushes_add_to_the_same_rows_instead_of_replacing_them():
    usage_records_write(records=[record(started_at=QUARTER_PAST, key_id="k1", cost=1.0, latency_ms=3)])
    usage_records_write(records=[record(started_at=QUARTER_PAST + 5, key_id="k1", cost=2.0, latency_ms=700,
                                        status=RequestStatus.ERROR)])
    usage = UsageRollup.objects.get(span=RollupSpan.MINUTE)
    assert (usage.requests, usage.errors, usage.cost) == (2, 1, 3.0)
    deployment = DeploymentRollup.objects.get(span=RollupSpan.HOUR)
    assert (deployment.deployment_id, deployment.model_group, deployment.requests, deployment.errors,
            deployment.latency_ms_total) == ("gpt-fake-1", "gpt-fake", 2, 1, 703.0)
    counts = [getattr(deployment, column) for column in LATENCY_COLUMNS]
    assert counts == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.django_db
def test_a_request_that_reached_no_deployment_counts_in_usage_but_not_per_deployment():
    usage_records_write(records=[record(started_at=QUARTER_PAST, deployment_id="", status=RequestStatus.ERROR,
                                        status_code=401)])
    assert UsageRollup.objects.filter(span=RollupSpan.HOUR).get().errors == 1
    assert not DeploymentRollup.objects.exists()


@pytest.mark.parametrize(("latency", "bucket"), [(0, 0), (5, 0), (5.01, 1), (999, 7), (1000, 7), (60000, 12),
                                                  (60001, 13), (10 ** 9, 13)])
def test_a_latency_counts_in_the_first_bucket_whose_bound_holds_it(latency, bucket):
    assert latency_bucket_index(latency) == bucket
    assert len(LATENCY_COLUMNS) == len(LATENCY_BOUNDS_MS) + 1


def test_percentiles_interpolate_inside_the_bucket_they_fall_in():
    counts = [0] * len(LATENCY_COLUMNS)
    counts[4] = 50  # 50-100 ms
    counts[5] = 50  # 100-250 ms
    assert latency_percentile(counts, 0.5) == 100.0
    assert latency_percentile(counts, 0.25) == 75.0
    assert latency_percentile(counts, 0.95) == pytest.approx(100 + 150 * 0.9)
    counts[-1] = 100
    assert latency_percentile(counts, 0.99) == 60000.0
    assert latency_percentile([0] * len(LATENCY_COLUMNS), 0.5) is None
