"""Retention of raw usage data: request logs older than N days, minute rollups older than N hours.

The request log is the one table that grows with traffic; what dashboards and `/spend` read (`DailySpend`,
hour rollups) is aggregated as rows are written, so pruning raw rows loses no totals. Those aggregates
are never pruned here.

Rows go in bounded chunks: select up to `chunk_rows` ids through the time index, delete exactly those,
repeat. Each chunk is its own short transaction, so the log flusher and the API never wait long behind a
prune, and a prune stopped half-way has done part of its work and nothing else. Two prunes running at
once (two batch workers, or the command beside a worker) delete the same old rows: the second finds
them gone, which costs a query and nothing more.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from keys.choices import RollupSpan
from keys.models import DeploymentRollup, RequestLog, UsageRollup

logger = logging.getLogger("gatehouse.retention")

DEFAULT_CHUNK_ROWS = 5000
# The batch worker prunes at most this often; a backlog bigger than one run's budget is worked off in
# the following sweeps instead (see `RetentionSchedule`).
PRUNE_INTERVAL_SECONDS = 3600.0
# After a failed run (the database unreachable, say), the next try.
RETRY_SECONDS = 60.0
# Chunks one scheduled run deletes before giving the worker's sweep its turn again.
SCHEDULED_RUN_CHUNKS = 20


def _delete_in_chunks(queryset: QuerySet, *, order_by: str, chunk_rows: int,
                      max_chunks: int | None) -> tuple[int, bool]:
    """Delete what `queryset` selects, `chunk_rows` rows per transaction, oldest first.

    Returns (rows deleted, whether rows may remain: the chunk budget ran out first).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    model: type[Model] = queryset.model
    deleted = chunks = 0
    while max_chunks is None or chunks < max_chunks:
        ids = list(queryset.order_by(order_by).values_list("pk", flat=True)[:chunk_rows])
        if not ids:
            return deleted, False
        with transaction.atomic():
            count, _ = model.objects.filter(pk__in=ids).delete()
        deleted += count
        chunks += 1
        if len(ids) < chunk_rows:
            return deleted, False
    return deleted, True


def request_logs_prune(*, older_than_days: int, chunk_rows: int = DEFAULT_CHUNK_ROWS, now: datetime | None = None,
                       max_chunks: int | None = None) -> int:
    """Delete request logs created more than `older_than_days` days ago; the number deleted.

    `DailySpend` and the rollups keep their totals. `max_chunks` bounds one call's work (None: until done).
    """
    return _request_logs_prune(older_than_days=older_than_days, chunk_rows=chunk_rows, now=now,
                               max_chunks=max_chunks)[0]


def _request_logs_prune(*, older_than_days: int, chunk_rows: int, now: datetime | None,
                        max_chunks: int | None) -> tuple[int, bool]:
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1 (0 means: keep request logs forever)")
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    return _delete_in_chunks(RequestLog.objects.filter(created_at__lt=cutoff), order_by="created_at",
                             chunk_rows=chunk_rows, max_chunks=max_chunks)


def minute_rollups_prune(*, older_than_hours: int, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                         now: datetime | None = None) -> int:
    """Delete minute rollups (usage and deployment) of minutes that began more than `older_than_hours` ago.

    Only the last hours' charts read minutes; hour rollups and daily spend stay.
    """
    if older_than_hours < 1:
        raise ValueError("older_than_hours must be at least 1 (0 means: keep minute rollups forever)")
    cutoff = (now or timezone.now()) - timedelta(hours=older_than_hours)
    deleted = 0
    for model in (UsageRollup, DeploymentRollup):
        old = model.objects.filter(span=RollupSpan.MINUTE, start__lt=cutoff)
        deleted += _delete_in_chunks(old, order_by="start", chunk_rows=chunk_rows, max_chunks=None)[0]
    return deleted


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run removed; `backlog` when request logs past their age may remain."""

    request_logs: int = 0
    minute_rollups: int = 0
    backlog: bool = False


def retention_apply(*, log_days: int | None = None, rollup_hours: int | None = None,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS, max_chunks: int | None = None,
                    now: datetime | None = None) -> RetentionResult:
    """Apply both retentions, from the settings unless given (`GATEWAY_LOG_RETENTION_DAYS`,
    `GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS`); 0 keeps that data forever."""
    log_days = settings.GATEWAY_LOG_RETENTION_DAYS if log_days is None else log_days
    rollup_hours = settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS if rollup_hours is None else rollup_hours
    now = now or timezone.now()
    logs, backlog = 0, False
    if log_days > 0:
        logs, backlog = _request_logs_prune(older_than_days=log_days, chunk_rows=chunk_rows, now=now,
                                            max_chunks=max_chunks)
    rollups = minute_rollups_prune(older_than_hours=rollup_hours, chunk_rows=chunk_rows, now=now) \
        if rollup_hours > 0 else 0
    return RetentionResult(request_logs=logs, minute_rollups=rollups, backlog=backlog)


class RetentionSchedule:
    """When a long-running process (the batch worker's sweep) applies retention: at start, then hourly.

    One run deletes at most `max_chunks` chunks of request logs, so a first prune of a large table never
    holds up the sweep for long; while old rows remain, the next sweep continues where this one stopped
    instead of waiting an hour.
    """

    def __init__(self, *, interval_seconds: float = PRUNE_INTERVAL_SECONDS, max_chunks: int = SCHEDULED_RUN_CHUNKS,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.interval_seconds = interval_seconds
        self.max_chunks = max_chunks
        self.chunk_rows = chunk_rows
        self.next_run = 0.0  # monotonic seconds; the first call runs

    def run_if_due(self, *, clock: float | None = None) -> RetentionResult | None:
        """Apply retention if it is due; what it removed (logged), or None when it was not due or failed."""
        clock = time.monotonic() if clock is None else clock
        if clock < self.next_run:
            return None
        try:
            result = retention_apply(chunk_rows=self.chunk_rows, max_chunks=self.max_chunks)
        except Exception:
            self.next_run = clock + RETRY_SECONDS
            logger.exception("retention: pruning old request logs failed; trying again in %.0f s", RETRY_SECONDS)
            return None
        self.next_run = clock if result.backlog else clock + self.interval_seconds
        if result.request_logs or result.minute_rollups:
            logger.info("retention: deleted %d request logs older than %d days and %d minute rollups older than "
                        "%d hours%s", result.request_logs, settings.GATEWAY_LOG_RETENTION_DAYS,
                        result.minute_rollups, settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS,
                        "; more to delete in the next sweep" if result.backlog else "",
                        extra={"request_logs_deleted": result.request_logs,
                               "minute_rollups_deleted": result.minute_rollups, "backlog": result.backlog})
        return result
