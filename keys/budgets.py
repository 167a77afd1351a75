"""Running spend of keys and teams per budget period, shared by every worker through the counters.

Money is counted in micro-dollars (counters hold integers), in one counter per scope and period:
`spend:<scope>:<id>:<period end>`. A new period therefore starts at zero by itself, with no job and no
write: the period is computed in memory from the cached `budget_reset_at` and `budget_duration`.
The stored `spend` column (written in bulk off the hot path) is a floor for the current period, so a
restart that loses local counters never forgets what was spent.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from keys.durations import Duration, next_reset_after, parse_duration
from keys.principal import Caller, LimitScope
from models_registry.counters import counter_add, counter_get_many, counter_set

logger = logging.getLogger("gatehouse.keys")

MICRO_DOLLARS = 1_000_000
SPEND_TTL_SECONDS = 40 * 24 * 3600
# A period's counter outlives the period by this much, so a request that ends just after a boundary
# can still be read back for reporting.
PERIOD_COUNTER_GRACE_SECONDS = 3600


def spend_counter_key(scope: str, scope_id: str, period_end: int = 0) -> str:
    """The counter of one scope's spend in the period ending at `period_end` (epoch; 0 = no period)."""
    return f"spend:{scope}:{scope_id}:{period_end}"


def current_period_end(limit: LimitScope, now: datetime) -> datetime | None:
    """The end of the budget period holding `now`, rolled forward in memory past a stale `budget_reset_at`."""
    if limit.budget_duration is None or limit.budget_reset_at is None:
        return None
    return next_reset_after(limit.budget_reset_at, limit.budget_duration, now)


def spend_counter(limit: LimitScope, now: datetime) -> tuple[str, int]:
    """(counter key, time to live) of `limit`'s current period."""
    end = current_period_end(limit, now)
    if end is None:
        return spend_counter_key(limit.scope, limit.id), SPEND_TTL_SECONDS
    ttl = max(1, int((end - now).total_seconds())) + PERIOD_COUNTER_GRACE_SECONDS
    return spend_counter_key(limit.scope, limit.id, int(end.timestamp())), ttl


def rolled_over(limit: LimitScope, now: datetime) -> bool:
    """The stored period has ended: its `spend` column no longer counts and a database reset is due."""
    return limit.budget_reset_at is not None and limit.budget_duration is not None and limit.budget_reset_at <= now


def current_spends(limits: tuple[LimitScope, ...] | list[LimitScope], now: datetime | None = None) -> list[float]:
    """The spend (USD) of each scope in its current period: one counter read for all of them."""
    now = now or timezone.now()
    counters = [spend_counter(limit, now)[0] for limit in limits]
    counted = counter_get_many(counters) if counters else {}
    spends = []
    for limit, counter in zip(limits, counters, strict=True):
        stored = 0.0 if rolled_over(limit, now) else limit.spend
        spends.append(max(stored, counted.get(counter, 0) / MICRO_DOLLARS))
    return spends


def spend_record(*, caller: Caller, cost: float) -> None:
    """Add a finished request's cost to its key's and its team's spend in their current periods."""
    key = caller.key
    if key is None or cost <= 0:
        return
    micros = round(cost * MICRO_DOLLARS)
    if micros <= 0:
        return
    now = timezone.now()
    for limit in key.scopes:
        counter, ttl = spend_counter(limit, now)
        counter_add(counter, micros, ttl=ttl)


def spend_counter_set(*, limit: LimitScope, spend: float) -> None:
    """Make the current period's counter say `spend` (an operator set the spend through the API)."""
    counter, ttl = spend_counter(limit, timezone.now())
    counter_set(counter, round(spend * MICRO_DOLLARS), ttl=ttl)


def duration_from_row(value: str, *, row_id: str) -> Duration | None:
    """A stored `budget_duration`; a malformed one (edited by hand) disables the period, with an error log."""
    if not value:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        logger.error("budget_duration %r of %s is not a duration; its budget never resets", value, row_id)
        return None


def limit_scope(row, *, scope: str, label: str) -> LimitScope:
    """The `LimitScope` of a `VirtualKey` or `Team` row."""
    return LimitScope(
        scope=scope, id=row.id, label=label, max_budget=row.max_budget,
        budget_duration=duration_from_row(row.budget_duration, row_id=row.id), budget_reset_at=row.budget_reset_at,
        spend=row.spend or 0.0, rpm_limit=row.rpm_limit, tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
    )
