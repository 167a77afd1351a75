"""The recovery sweep: queue again whatever a dead worker (or a lost task) left behind.

Every worker process runs `sweep()` every `GATEWAY_BATCH_SWEEP_SECONDS`. Tasks are cheap to queue and
safe to run twice (leases and conditional updates guard everything), so the sweep only has to be
sure nothing is forgotten, not that nothing is queued twice. It queues:

- a part run for each unfinished part whose lease is free or ran out, whose next poll is due, and
  that was not queued within the last lease period (a queued task not yet picked up is left alone);
- a start for each batch stuck in `validating` (created over a lease period ago and not started);
- a settle for each batch whose parts are all finished but which has no final status yet;
- and brings forward the polls of parts whose batch is cancelling or past its window, so the
  provider's cancel (or the expiry) happens now rather than at the next scheduled poll.

Each kind is bounded per sweep, so one sweep stays short however much is waiting.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from batches.choices import PART_UNFINISHED, BatchStatus
from batches.leases import lease_seconds
from batches.models import Batch, BatchPart
from batches.tasks import batch_settle_enqueue, batch_start_enqueue, part_run_enqueue

logger = logging.getLogger("gatehouse.batches")

SWEEP_LIMIT = 200
# A batch in one of these whose parts are all finished only waits for its settle.
STUCK_STATUSES = (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING, BatchStatus.FINALIZING)


def sweep(*, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """One pass; returns how many of each kind were queued (for logs and tests)."""
    now = timezone.now()
    recently = now - timedelta(seconds=lease_seconds())
    counts = {"polls_advanced": _polls_advance(now, limit), "parts": 0, "starts": 0, "settles": 0}
    parts = (BatchPart.objects.filter(status__in=PART_UNFINISHED)
             .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
             .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
             .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=recently))
             .order_by("updated_at").values_list("id", flat=True)[:limit])
    for part_id in list(parts):
        part_run_enqueue(part_id)
        counts["parts"] += 1
    # A start is queued when a batch is created; `updated_at` marks when the sweep last queued it again.
    stuck = (Batch.objects.filter(status=BatchStatus.VALIDATING, created_at__lt=recently, updated_at__lt=recently)
             .order_by("created_at").values_list("id", flat=True)[:limit])
    for batch_id in list(stuck):
        Batch.objects.filter(id=batch_id, status=BatchStatus.VALIDATING).update(updated_at=now)
        batch_start_enqueue(batch_id)
        counts["starts"] += 1
    unfinished = BatchPart.objects.filter(batch_id=OuterRef("pk"), status__in=PART_UNFINISHED)
    any_part = BatchPart.objects.filter(batch_id=OuterRef("pk"))
    settle = (Batch.objects.filter(status__in=STUCK_STATUSES).filter(Exists(any_part)).exclude(Exists(unfinished))
              .order_by("updated_at").values_list("id", flat=True)[:limit])
    for batch_id in list(settle):
        batch_settle_enqueue(batch_id)
        counts["settles"] += 1
    if any(counts.values()):
        logger.info("batch sweep queued %s", counts)
    return counts


def _polls_advance(now, limit: int) -> int:
    """Parts waiting for a later poll whose batch is cancelling or past its window: poll them now."""
    urgent = (BatchPart.objects.filter(status__in=PART_UNFINISHED, next_poll_at__gt=now)
              .filter(Q(batch__status=BatchStatus.CANCELLING) | Q(batch__expires_at__lt=now))
              .values_list("id", flat=True)[:limit])
    ids = list(urgent)
    if ids:
        BatchPart.objects.filter(id__in=ids).update(next_poll_at=now, enqueued_at=None)
    return len(ids)
