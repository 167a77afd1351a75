"""Usage and deployment rollups: what a batch of finished requests adds to each minute and hour.

Run inside the log flush's transaction (`keys.spend.usage_records_write`), off the request path.
Every rollup row is written with an incrementing upsert (`increment_upsert`): one statement per
batch and table, adding in the database, so workers and instances flushing at once never lose each
other's counts.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, models

from keys.choices import RollupSpan
from keys.latency import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, latency_bucket_index
from keys.models import DeploymentRollup, UsageRollup
from keys.usage import UsageRecord

SPAN_SECONDS = {RollupSpan.MINUTE: 60, RollupSpan.HOUR: 3600}


def increment_upsert(model: type[models.Model], *, scope: Sequence[str], added: Sequence[str],
                     rows: Sequence[tuple]) -> None:
    """Insert rows of `scope + added` values, or add `added` to the row that already has that scope.

    `ON CONFLICT ... DO UPDATE SET column = column + excluded.column` is shared by SQLite (3.24+) and
    PostgreSQL, and needs the unique constraint on exactly `scope`. Rows should come sorted by scope so
    that concurrent flushes lock rows in the same order.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    scope_columns = [quote(model._meta.get_field(name).column) for name in scope]
    added_columns = [quote(model._meta.get_field(name).column) for name in added]
    increments = ", ".join(f"{column} = {table}.{column} + excluded.{column}" for column in added_columns)
    columns = scope_columns + added_columns
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(scope_columns)}) DO UPDATE SET {increments}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


@dataclass(slots=True)
class UsageTotals:
    """What a set of requests added up to: one row of `DailySpend` or `UsageRollup` before it is written."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, record: UsageRecord) -> None:
        self.requests += 1
        self.errors += 0 if record.succeeded else 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.cost += record.cost

    def values(self) -> tuple:
        """The added columns, in `USAGE_TOTAL_FIELDS` order."""
        return self.requests, self.errors, self.prompt_tokens, self.completion_tokens, self.cost


USAGE_TOTAL_FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost")


@dataclass(slots=True)
class _DeploymentTotals:
    requests: int = 0
    errors: int = 0
    latency_ms_total: float = 0.0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


def rollups_write(records: Iterable[UsageRecord], *, cut: Callable[[str, str], str]) -> None:
    """Add a batch of finished requests to the minute and hour rollups (usage, and per deployment).

    `cut(value, field_name)` shortens strings to their log column, as the log rows themselves are cut.
    """
    usage: dict[tuple, UsageTotals] = defaultdict(UsageTotals)
    deployments: dict[tuple, _DeploymentTotals] = defaultdict(_DeploymentTotals)
    for record in records:
        failed = 0 if record.succeeded else 1
        key_id, team_id = cut(record.key_id, "key_id"), cut(record.team_id, "team_id")
        model_group = cut(record.model_group, "model_group")
        deployment_id = cut(record.deployment_id, "deployment_id")
        bucket = latency_bucket_index(record.latency_ms)
        for span, seconds in SPAN_SECONDS.items():
            start = record.started_at - record.started_at % seconds
            usage[(span, start, key_id, team_id, model_group)].add(record)
            if deployment_id:
                totals = deployments[(span, start, deployment_id, model_group)]
                totals.requests += 1
                totals.errors += failed
                totals.latency_ms_total += record.latency_ms
                totals.latency_counts[bucket] += 1
    adapt = connection.ops.adapt_datetimefield_value
    increment_upsert(
        UsageRollup, scope=("span", "start", "key_id", "team_id", "model_group"), added=USAGE_TOTAL_FIELDS,
        rows=[(span, adapt(_instant(start)), *rest, *entry.values())
              for (span, start, *rest), entry in sorted(usage.items())])
    increment_upsert(
        DeploymentRollup, scope=("span", "start", "deployment_id", "model_group"),
        added=("requests", "errors", "latency_ms_total", *LATENCY_COLUMNS),
        rows=[(span, adapt(_instant(start)), *rest, totals.requests, totals.errors, totals.latency_ms_total,
               *totals.latency_counts) for (span, start, *rest), totals in sorted(deployments.items())])


def _instant(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)
