"""Managed batches as the API shows them: OpenAI's `batch` object, field for field.

The counts are live. Gateway-executed lines are counted as each is recorded; a native part's lines are
recorded only when the provider's output is downloaded, so while it runs the provider's own counts
(polled by the worker) are added in (`selectors.native_progress`).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from batches.models import Batch
from batches.selectors import native_progress

ERROR_FIELDS = ("code", "message", "param", "line")


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def batch_errors_object(errors: object) -> dict | None:
    """OpenAI's `errors`: null, or a list object whose items each carry code, message, param and line."""
    if not errors:
        return None
    items = errors if isinstance(errors, list) else [errors]
    data = [{field: item.get(field) for field in ERROR_FIELDS} for item in items if isinstance(item, dict)]
    return {"object": "list", "data": data}


def batch_usage_object(batch: Batch) -> dict:
    """Tokens of the lines recorded so far (Gatehouse does not split out cached or reasoning tokens)."""
    return {
        "input_tokens": batch.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": batch.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": batch.prompt_tokens + batch.completion_tokens,
    }


def batch_object(batch: Batch, *, progress: dict[str, tuple[int, int]] | None = None) -> dict:
    """OpenAI's batch object. `progress` is `native_progress` for this batch (and maybe others); without it
    the parts are read here (one query, only while the batch is active)."""
    if progress is None:
        progress = native_progress([batch])
    running_completed, running_failed = progress.get(batch.id, (0, 0))
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.requested_model or batch.model_group or None,
        "errors": batch_errors_object(batch.errors),
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": _epoch(batch.created_at),
        "in_progress_at": _epoch(batch.in_progress_at),
        "expires_at": _epoch(batch.expires_at),
        "finalizing_at": _epoch(batch.finalizing_at),
        "completed_at": _epoch(batch.completed_at),
        "failed_at": _epoch(batch.failed_at),
        "expired_at": _epoch(batch.expired_at),
        "cancelling_at": _epoch(batch.cancelling_at),
        "cancelled_at": _epoch(batch.cancelled_at),
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed + running_completed,
            "failed": batch.failed + running_failed,
        },
        "metadata": batch.metadata,
        "usage": batch_usage_object(batch),
    }


def batch_list_objects(batches: Sequence[Batch]) -> list[dict]:
    """Several batch objects with one query for the live counts of all of them."""
    progress = native_progress(batches)
    return [batch_object(batch, progress=progress) for batch in batches]
