"""Writing what requests used: request log rows, spend on keys and teams, daily aggregates.

Called by the log buffer's flush with a batch of finished requests, never on the request path.
One transaction per batch: the rows, one `UPDATE ... SET spend = spend + x` per key and per team
that spent something, and one upsert per (day, key, team, model group). The upsert increments in
the database (`ON CONFLICT ... DO UPDATE SET requests = requests + excluded.requests`), so several
workers and instances flushing at once never lose each other's counts; SQLite (3.24+) and
PostgreSQL share the syntax. The same flush adds to the minute and hour rollups (`keys.rollups`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.db.models import F

from keys.models import DailySpend, RequestLog, Team, VirtualKey
from keys.rollups import USAGE_TOTAL_FIELDS, UsageTotals, increment_upsert, rollups_write
from keys.usage import UsageRecord

SMALL_INTEGER_MAX = 32767
INTEGER_MAX = 2_147_483_647


def usage_records_write(*, records: Sequence[UsageRecord]) -> None:
    """Persist a batch of finished requests: logs, key and team spend, daily aggregates, atomically."""
    if not records:
        return
    with transaction.atomic():
        _request_logs_insert(records)
        _spend_add(VirtualKey, _totals_by(records, "key_id"))
        _spend_add(Team, _totals_by(records, "team_id"))
        _daily_spend_upsert(records)
        rollups_write(records, cut=_cut)


# The columns a log row is written with, in order (the id is the database's).
LOG_COLUMNS = ("request_id", "created_at", "key_id", "key_alias", "team_id", "user_id", "operation", "model_group",
               "deployment_id", "provider", "provider_model", "streamed", "status", "status_code", "error_type",
               "prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms", "time_to_first_token_ms",
               "attempts", "fallbacks", "metadata")


def _request_logs_insert(records: Sequence[UsageRecord]) -> None:
    """One prepared INSERT run over the whole batch.

    `bulk_create` builds and validates a model instance per row and cost about a third of the worker's
    CPU at a few hundred requests a second; the rows here are plain tuples, adapted once per value.
    """
    quote = connection.ops.quote_name
    columns = ", ".join(quote(RequestLog._meta.get_field(name).column) for name in LOG_COLUMNS)
    statement = (f"INSERT INTO {quote(RequestLog._meta.db_table)} ({columns}) "  # noqa: S608 - names from the model
                 f"VALUES ({', '.join(['%s'] * len(LOG_COLUMNS))})")
    metadata_field = RequestLog._meta.get_field("metadata")
    empty_metadata = metadata_field.get_db_prep_save({}, connection)
    adapt_datetime = connection.ops.adapt_datetimefield_value
    rows = []
    for record in records:
        metadata = record.metadata if isinstance(record.metadata, dict) else {}
        rows.append((
            _cut(record.request_id, "request_id"),
            adapt_datetime(datetime.fromtimestamp(record.started_at, tz=UTC)),
            _cut(record.key_id, "key_id"),
            _cut(record.key_alias, "key_alias"),
            _cut(record.team_id, "team_id"),
            _cut(record.user_id, "user_id"),
            _cut(record.operation, "operation"),
            _cut(record.model_group, "model_group"),
            _cut(record.deployment_id, "deployment_id"),
            _cut(record.provider, "provider"),
            _cut(record.provider_model, "provider_model"),
            record.streamed,
            record.status,
            min(max(record.status_code, 0), SMALL_INTEGER_MAX),
            _cut(record.error_type, "error_type"),
            min(record.prompt_tokens, INTEGER_MAX),
            min(record.completion_tokens, INTEGER_MAX),
            min(record.total_tokens, INTEGER_MAX),
            record.cost,
            record.latency_ms,
            record.time_to_first_token_ms,
            min(record.attempts, SMALL_INTEGER_MAX),
            min(record.fallbacks, SMALL_INTEGER_MAX),
            metadata_field.get_db_prep_save(metadata, connection) if metadata else empty_metadata,
        ))
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


def _cut(value: str, field_name: str) -> str:
    """Strings cut to their column, so that one odd request (a 10 000-character model name) can never make
    a whole batch fail."""
    limit = RequestLog._meta.get_field(field_name).max_length
    return value if len(value) <= limit else value[:limit]


def _totals_by(records: Iterable[UsageRecord], attribute: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        scope_id = getattr(record, attribute)
        if scope_id and record.cost > 0:
            totals[scope_id] += record.cost
    return totals


def _spend_add(model: type[VirtualKey] | type[Team], totals: dict[str, float]) -> None:
    """One UPDATE per key (or team) per batch, adding in the database so concurrent flushes add up.

    `update()` leaves `updated_at` alone: spending is not an operator's change to the key.
    """
    for scope_id, amount in sorted(totals.items()):  # a stable order: concurrent flushes lock rows alike
        model.objects.filter(id=scope_id).update(spend=F("spend") + amount)


def daily_spend_date(record: UsageRecord) -> date:
    """The UTC day a request belongs to (the day it started)."""
    return datetime.fromtimestamp(record.started_at, tz=UTC).date()


def _daily_spend_upsert(records: Iterable[UsageRecord]) -> None:
    totals: dict[tuple[date, str, str, str], UsageTotals] = defaultdict(UsageTotals)
    for record in records:
        totals[(daily_spend_date(record), _cut(record.key_id, "key_id"), _cut(record.team_id, "team_id"),
                _cut(record.model_group, "model_group"))].add(record)
    adapt_date = connection.ops.adapt_datefield_value
    increment_upsert(
        DailySpend, scope=("date", "key_id", "team_id", "model_group"), added=USAGE_TOTAL_FIELDS,
        rows=[(adapt_date(scope[0]), *scope[1:], *entry.values()) for scope, entry in sorted(totals.items())])
