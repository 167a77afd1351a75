"""The batch work as `django.tasks` tasks, stored in the database and run by batch workers.

One task per step that matters, never one per line (each task costs tens of milliseconds):
`batch_start` validates a batch and creates its parts; `batch_part_run` works on one part (a gateway
part runs all its remaining lines; a native part makes one step, creating or polling the provider
batch, and queues its next poll for later with `run_after`); `batch_settle` writes the output files
once every part is over. Every task is safe to run twice or concurrently with itself: parts are
guarded by leases, and the batch's state changes are conditional updates. That is what lets the
recovery sweep (`batches.recovery`) queue work again whenever a worker may have died.

The runner does the work and says what comes next; only this module (and the services and the
recovery sweep above it) queues tasks.
"""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django_tasks import task

from batches.models import BatchPart
from batches.runner import batch_settle_run, batch_start_run, part_run

BATCH_QUEUE = "batches"


@task(queue_name=BATCH_QUEUE)
def batch_start(batch_id: str) -> None:
    for part_id in batch_start_run(batch_id):
        part_run_enqueue(part_id)


@task(queue_name=BATCH_QUEUE)
def batch_part_run(part_id: int) -> None:
    next_at = part_run(part_id)
    if next_at is not None:
        part_run_enqueue(part_id, run_after=next_at)


@task(queue_name=BATCH_QUEUE)
def batch_settle(batch_id: str) -> None:
    batch_settle_run(batch_id)


def batch_start_enqueue(batch_id: str) -> None:
    batch_start.enqueue(batch_id)


def part_run_enqueue(part_id: int, *, run_after: datetime | None = None) -> None:
    """Queue a part's next step (now, or at `run_after` for a native poll) and note when it was queued."""
    (batch_part_run.using(run_after=run_after) if run_after else batch_part_run).enqueue(part_id)
    BatchPart.objects.filter(id=part_id).update(enqueued_at=run_after or timezone.now())


def batch_settle_enqueue(batch_id: str) -> None:
    batch_settle.enqueue(batch_id)
