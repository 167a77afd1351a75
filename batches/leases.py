"""Who works on a batch part: one worker at a time, the holder of the part's lease.

A worker claims a part with one conditional UPDATE (free, expired, or already its own), renews the
lease while it works and gives it back when it stops. A worker that dies (SIGKILL, a lost machine)
simply stops renewing: once the lease has run out, the recovery sweep queues the part again and the
next worker claims it. Everything a part writes is written under `lease_locked`, which re-reads the
part's row with a lock and checks the lease is still ours, so a worker that was presumed dead (a long
pause) and comes back cannot write anything twice.
"""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from batches.choices import PART_UNFINISHED, PartStatus
from batches.models import BatchPart


class LeaseLostError(Exception):
    """The part's lease passed to another worker (ours ran out): stop working on it, write nothing."""


def worker_identity() -> str:
    """This worker's name in leases: host, process and a random tail (threads of one process differ)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(settings.GATEWAY_BATCH_LEASE_SECONDS)


def part_claim(*, part_id: int, owner: str) -> BatchPart | None:
    """Take the part's lease if it is free, expired or already `owner`'s; the part, or None if another
    worker holds it or it is finished."""
    now = timezone.now()
    claimed = BatchPart.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner),
        id=part_id, status__in=PART_UNFINISHED,
    ).update(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds()),
             status=PartStatus.RUNNING, updated_at=now)
    if not claimed:
        return None
    return BatchPart.objects.select_related("batch").get(id=part_id)


def lease_renew(*, part: BatchPart, owner: str) -> None:
    """Push the lease's end further; raises `LeaseLostError` when it is no longer ours."""
    now = timezone.now()
    renewed = BatchPart.objects.filter(id=part.id, lease_owner=owner).update(
        lease_expires_at=now + timedelta(seconds=lease_seconds()), updated_at=now)
    if not renewed:
        raise LeaseLostError(f"part {part.id} is no longer leased to {owner}")


def lease_release(*, part: BatchPart, owner: str) -> None:
    """Give the lease back at once (the part may be claimed again without waiting for it to run out)."""
    BatchPart.objects.filter(id=part.id, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


@contextmanager
def lease_locked(*, part: BatchPart, owner: str) -> Iterator[BatchPart]:
    """A transaction in which the part's row is locked and still leased to `owner` (else
    `LeaseLostError`): the only place a part's results and state are written."""
    with transaction.atomic():
        row = BatchPart.objects.select_for_update().get(id=part.id)
        if row.lease_owner != owner:
            raise LeaseLostError(f"part {part.id} is no longer leased to {owner}")
        yield row
