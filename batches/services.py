"""Writes of managed batches requested by clients: creating one, cancelling one.

`batch_create` is `POST /v1/batches`. It checks what can be checked at once (endpoint, window,
metadata, the input file is the caller's and a batch input, the caller's budget), records the batch
as `validating` and queues its start for a worker: reading every line, choosing deployments and
engines, and starting the parts happen there (`batches.runner`), as with OpenAI, whose batches also
validate after creation. The task is queued when the transaction commits, so a worker never looks
for a batch that is not there yet.
"""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from batches.choices import PART_UNFINISHED, BatchStatus
from batches.models import Batch, BatchPart
from batches.tasks import batch_start_enqueue, part_run_enqueue
from files_registry.batch_input import BATCH_ENDPOINTS, LineError, batch_requests
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile
from files_registry.selectors import managed_file_get_for_caller
from files_registry.storage import stored_bytes_open
from keys.access import budget_check
from keys.durations import parse_duration
from keys.principal import Caller
from providers.errors import InvalidRequestError

# OpenAI accepts only `24h`; Gatehouse enforces any window from a minute to a week (`30m`, `2h`, `7d`)
# itself, since its own workers can honour it.
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 7 * 86400
# OpenAI's metadata limits: 16 pairs, keys up to 64 characters, values up to 512.
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


def completion_window_seconds(value: object) -> int:
    """The window in seconds, or a 400 naming `completion_window`."""
    try:
        duration = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        duration = None
    seconds = duration.approximate_seconds if duration is not None and duration.unit != "mo" else 0
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise InvalidRequestError(
            f"'completion_window' must be a duration from 1m to 7d, such as '24h'; got {str(value)[:32]!r}.",
            param="completion_window", code="invalid_value")
    return seconds


def metadata_check(metadata: object) -> dict[str, str] | None:
    """OpenAI's metadata rules: a map of up to 16 strings, or null."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequestError("'metadata' must be an object of strings.", param="metadata", code="invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequestError(f"'metadata' may hold at most {MAX_METADATA_PAIRS} pairs.", param="metadata",
                                  code="invalid_value")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidRequestError(f"metadata keys may be at most {MAX_METADATA_KEY_CHARS} characters.",
                                      param="metadata", code="invalid_value")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequestError(
                f"metadata values must be strings of at most {MAX_METADATA_VALUE_CHARS} characters.",
                param="metadata", code="invalid_value")
    return dict(metadata)


def _first_model(input_file: ManagedFile) -> str:
    """The model the input's first request names, so the batch shows its `model` at once; the worker
    checks every line (an unreadable first line simply shows no model until then)."""
    try:
        with stored_bytes_open(input_file.stored_name) as handle:
            first = next(batch_requests(handle), None)
    except (LineError, OSError):
        return ""
    return first.model[:255] if first is not None else ""


def batch_create(*, caller: Caller, input_file_id: object, endpoint: object, completion_window: object,
                 metadata: object = None) -> Batch:
    """Record a batch (status `validating`) and queue its start; raises 400/404 envelopes for bad input."""
    if not isinstance(input_file_id, str) or not input_file_id:
        raise InvalidRequestError("'input_file_id' is required.", param="input_file_id",
                                  code="missing_required_parameter")
    if endpoint not in BATCH_ENDPOINTS:
        allowed = ", ".join(BATCH_ENDPOINTS)
        raise InvalidRequestError(f"'endpoint' must be one of {allowed}.", param="endpoint", code="invalid_value")
    window = completion_window_seconds(completion_window)
    checked_metadata = metadata_check(metadata)
    input_file = managed_file_get_for_caller(caller=caller, file_id=input_file_id)
    if input_file.purpose != FilePurpose.BATCH:
        raise InvalidRequestError(f"File {input_file.id} has purpose '{input_file.purpose}'; a batch needs a file "
                                  "uploaded with purpose 'batch'.", param="input_file_id", code="invalid_file_purpose")
    budget_check(caller)
    key = caller.key
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(
            owner_key_id=key.id if key else "", owner_team_id=(key.team_id or "") if key else "",
            input_file=input_file, endpoint=endpoint, completion_window=str(completion_window),
            requested_model=_first_model(input_file),
            status=BatchStatus.VALIDATING, metadata=checked_metadata, created_at=now,
            expires_at=now + timedelta(seconds=window))
        transaction.on_commit(lambda: batch_start_enqueue(batch.id))
    return batch


def batch_cancel(*, batch: Batch) -> Batch:
    """Cancel a batch as OpenAI does: at once while it is still `validating`; otherwise `cancelling`, with
    every unfinished part queued now so that native parts send the provider's cancel and gateway parts
    stop starting lines (the lines in flight finish and the partial output is written when they do).
    Cancelling a batch already cancelling or cancelled changes nothing; a finished one is a 400."""
    now = timezone.now()
    with transaction.atomic():
        if Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
                status=BatchStatus.CANCELLED, cancelling_at=now, cancelled_at=now, updated_at=now):
            batch.refresh_from_db()
            return batch
        if Batch.objects.filter(id=batch.id, status=BatchStatus.IN_PROGRESS).update(
                status=BatchStatus.CANCELLING, cancelling_at=now, updated_at=now):
            part_ids = list(BatchPart.objects.filter(batch_id=batch.id, status__in=PART_UNFINISHED)
                            .values_list("id", flat=True))
            transaction.on_commit(lambda: [part_run_enqueue(part_id) for part_id in part_ids])
            batch.refresh_from_db()
            return batch
    batch.refresh_from_db()
    if batch.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
        return batch
    raise InvalidRequestError(f"Batch {batch.id} cannot be cancelled: its status is '{batch.status}'.",
                              code="batch_not_cancellable")
