"""Batches in progress, as the operator dashboard lists them: newest first, with live counts for a progress bar.

Two queries whatever the number of batches: the active batches (an indexed status filter), and the running
native parts whose provider-reported counts are newer than the recorded ones (`native_progress`).
"""
from __future__ import annotations

from datetime import UTC
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse

from batches.choices import BATCH_ACTIVE
from batches.models import Batch
from batches.selectors import native_progress

ACTIVE_BATCHES_SHOWN = 20
BATCH_FIELDS = ("id", "status", "endpoint", "requested_model", "model_group", "owner_key_id", "owner_team_id",
                "total", "completed", "failed", "created_at")


def batch_list_in_progress(*, limit: int = ACTIVE_BATCHES_SHOWN) -> list[dict[str, Any]]:
    """Up to `limit` batches still validating, running, finalizing or cancelling, newest first.

    `completed` and `failed` include what running native parts' providers report beyond the recorded
    lines, as the API's batch object does; `percent` is the share of lines over (succeeded or failed), or
    None while the batch is validating and its size is unknown.
    """
    batches = list(Batch.objects.filter(status__in=BATCH_ACTIVE).only(*BATCH_FIELDS)
                   .order_by("-created_at", "-id")[:limit])
    progress = native_progress(batches)
    listed = []
    for batch in batches:
        running_completed, running_failed = progress.get(batch.id, (0, 0))
        completed = batch.completed + running_completed
        failed = batch.failed + running_failed
        listed.append({
            "id": batch.id,
            "status": batch.status,
            "endpoint": batch.endpoint,
            "model": batch.requested_model or batch.model_group or None,
            "owner_key_id": batch.owner_key_id or None,
            "owner_team_id": batch.owner_team_id or None,
            "created_at": batch.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "total": batch.total,
            "completed": completed,
            "failed": failed,
            "percent": round(100 * min(completed + failed, batch.total) / batch.total, 1) if batch.total else None,
            "admin_url": reverse("admin:batches_batch_change", args=[quote(batch.id)]),
        })
    return listed
