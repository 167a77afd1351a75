"""The native engine: a batch part run by its deployment's own batch API (OpenAI, Azure, Anthropic ...).

The runner calls `native_part_step` with the part's lease held; each call does one step and says when
to call again, so no worker sleeps on a provider that takes hours:

1. No provider batch yet: give the provider its input (the deployment's rewritten copy of the whole
   file, a shard of it uploaded for this part alone, or the requests themselves for inline APIs) and
   create the provider batch. Failures a later try may get past are retried with backoff, a few
   times; a refusal fails every line of the part with the provider's reason.
2. Provider batch running: poll it, keep its live counts for the admin, pass on a cancellation, and
   cancel it when Gatehouse's own completion window has passed. Polls back off from
   `GATEWAY_BATCH_POLL_SECONDS` to `GATEWAY_BATCH_POLL_MAX_SECONDS`.
3. Provider batch finished: stream its results into `BatchLineResult`s (each line at the deployment's
   batch price), give every line it did not answer the failure its end explains, set the part's final
   status, and delete the provider's files. A worker that dies mid-download leaves nothing to undo: the
   next one downloads again and `line_results_write` skips the lines already recorded.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.utils import timezone

from batches.choices import BatchStatus, PartStatus
from batches.leases import LeaseLostError, lease_locked, lease_renew
from batches.models import Batch, BatchLineResult, BatchPart
from batches.results import BatchOwner, LineOutcome, batch_request_id, failure_line, line_results_write
from files_registry.batch_input import BATCH_ENDPOINTS, BatchRequest, batch_input_rewrite, batch_requests
from files_registry.copies import COPY_TIMEOUT_SECONDS
from files_registry.services import provider_copy_ensure
from files_registry.storage import stored_bytes_open
from keys.usage import NO_USAGE, usage_from_body
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.base import DeploymentTarget
from providers.batches import BATCH_INPUT_INLINE, ProviderBatch
from providers.errors import GatewayError
from providers.files import ProviderFileRef
from providers.http import Deadline

logger = logging.getLogger("gatehouse.batches")

MAX_CREATE_ATTEMPTS = 5
# Polls that fail in a row (provider unreachable, batch unknown) before the part is given up.
MAX_POLL_FAILURES = 10
RESULTS_CHUNK = 500
CALL_TIMEOUT_SECONDS = 120.0
RESULTS_TIMEOUT_SECONDS = 3600.0
# How long after our window a provider that ignores the cancel is still waited for.
EXPIRY_GRACE = timedelta(hours=1)
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
# The request log's status for lines that never got an answer of their own.
NO_ANSWER_STATUS = {"batch_expired": 408, "provider_batch_cancelled": 499, "deployment_removed": 503}
CANCELLING = frozenset({BatchStatus.CANCELLING, BatchStatus.CANCELLED})


def native_part_step(part: BatchPart, owner: str, charge_to: BatchOwner) -> datetime | None:
    """One step of a native part whose lease `owner` holds: when to call again, or None once the part
    is finished (its status, `finished_at` and every line of its range recorded)."""
    batch = Batch.objects.select_related("input_file").get(id=part.batch_id)
    deployment = current_snapshot().by_id.get(part.deployment_id)
    if deployment is None:
        _lines_fail(part, batch, owner, charge_to, code="deployment_removed",
                    message=f"Deployment '{part.deployment_id}' was removed before its batch part finished.")
        _part_end(part, owner, PartStatus.FAILED, error="The deployment was removed.")
        return None
    if not part.provider_batch_id:
        return _start(part, batch, deployment, owner, charge_to)
    return _poll(part, batch, deployment, owner, charge_to)


# --- 1. creating the provider batch ------------------------------------------------------------------
def _start(part: BatchPart, batch: Batch, deployment: RoutableDeployment, owner: str,
           charge_to: BatchOwner) -> datetime | None:
    """Create the provider batch (nothing is created for a batch already cancelling or out of time)."""
    if batch.status in CANCELLING:
        _part_end(part, owner, PartStatus.CANCELLED)
        _files_delete(deployment, [part.provider_input_file_id])
        return None
    if timezone.now() >= batch.expires_at:
        _lines_fail(part, batch, owner, charge_to, code="batch_expired", message=EXPIRED_MESSAGE)
        _part_end(part, owner, PartStatus.EXPIRED)
        _files_delete(deployment, [part.provider_input_file_id])
        return None
    try:
        target = deployment.target()
        input_file, requests = _input_for(part, batch, deployment, target, owner)
        lease_renew(part=part, owner=owner)
        created = deployment.adapter.batch_create(
            target, endpoint=batch.endpoint, input_file=input_file, requests=requests,
            metadata={"gatehouse_batch_id": batch.id, "gatehouse_part": str(part.index)},
            deadline=Deadline.after(CALL_TIMEOUT_SECONDS))
    except GatewayError as error:
        return _create_failed(part, batch, deployment, owner, charge_to, error)
    interval = _base_interval()
    next_poll = timezone.now() + timedelta(seconds=interval)
    try:
        _part_save(part, owner, provider_batch_id=created.id, provider_status=created.raw_status or created.status,
                   provider_completed=created.completed, provider_failed=created.failed, attempts=0, error="",
                   poll_interval=interval, next_poll_at=next_poll)
    except LeaseLostError:
        # Another worker has the part now and will make its own: ours would run (and cost) for nothing.
        _cancel_quietly(deployment, target, created.id)
        raise
    return next_poll


def _input_for(part: BatchPart, batch: Batch, deployment: RoutableDeployment, target: DeploymentTarget,
               owner: str) -> tuple[ProviderFileRef | None, list[dict] | None]:
    """What the provider batch reads: (its input file, None) or, for inline APIs, (None, the requests)."""
    model = deployment.provider_model
    if deployment.adapter.batch_input == BATCH_INPUT_INLINE:
        return None, [{"custom_id": request.custom_id, "method": "POST", "url": request.url,
                       "body": {**request.body, "model": model}} for request in _part_requests(batch, part)]
    if part.first_line == 0 and part.line_count == batch.total:
        return provider_copy_ensure(managed_file=batch.input_file, deployment=deployment,
                                    deadline=Deadline.after(COPY_TIMEOUT_SECONDS)), None
    if part.provider_input_file_id:  # uploaded by an earlier try
        return ProviderFileRef(file_id=part.provider_input_file_id, uri=None, mime_type="application/jsonl"), None
    with tempfile.TemporaryFile() as shard:
        size = batch_input_rewrite(_part_requests(batch, part), shard, model=model)
        shard.seek(0)
        ref = deployment.adapter.file_upload(
            target, content=shard, size=size, filename=f"{batch.id}_part{part.index}.jsonl", purpose="batch",
            mime_type="application/jsonl", deadline=Deadline.after(COPY_TIMEOUT_SECONDS))
    _part_save(part, owner, provider_input_file_id=ref.file_id or ref.uri or "")
    return ref, None


def _create_failed(part: BatchPart, batch: Batch, deployment: RoutableDeployment, owner: str, charge_to: BatchOwner,
                   error: GatewayError) -> datetime | None:
    """Retry later what another try may get past (5xx, timeouts, rate limits, a copy not made); fail the
    part's lines on a refusal (a plain `GatewayError`, such as an endpoint the API does not take, is one)."""
    attempts = part.attempts + 1
    logger.warning("native batch part %s: creating the provider batch failed (attempt %d): %s", part.id, attempts,
                   error.message, extra={"batch_id": batch.id, "deployment_id": deployment.id})
    if getattr(error, "failover", False) and attempts < MAX_CREATE_ATTEMPTS:
        delay = max(getattr(error, "retry_after", None) or 0.0, _backoff(attempts))
        next_try = timezone.now() + timedelta(seconds=delay)
        _part_save(part, owner, attempts=attempts, error=_error_text(error), next_poll_at=next_try)
        return next_try
    _lines_fail(part, batch, owner, charge_to, code="provider_batch_failed", message=error.message)
    _part_end(part, owner, PartStatus.FAILED, error=_error_text(error), attempts=attempts)
    _files_delete(deployment, [part.provider_input_file_id])
    return None


# --- 2. polling -------------------------------------------------------------------------------------
def _poll(part: BatchPart, batch: Batch, deployment: RoutableDeployment, owner: str,
          charge_to: BatchOwner) -> datetime | None:
    try:
        target = deployment.target()
        provider = deployment.adapter.batch_retrieve(target, part.provider_batch_id,
                                                     Deadline.after(CALL_TIMEOUT_SECONDS))
    except GatewayError as error:
        return _poll_failed(part, batch, deployment, owner, charge_to, error)
    now = timezone.now()
    window_passed = now >= batch.expires_at
    cancel_sent = False
    if not provider.finished and (batch.status in CANCELLING or window_passed) and provider.status != "cancelling":
        provider = _cancel_quietly(deployment, target, provider.id) or provider
        cancel_sent = True
    if provider.finished:
        return _collect(part, batch, deployment, target, provider, owner, charge_to)
    if window_passed and now >= batch.expires_at + EXPIRY_GRACE:
        # The provider never finished cancelling: what it did is lost to us, the rest has expired.
        _lines_fail(part, batch, owner, charge_to, code="batch_expired", message=EXPIRED_MESSAGE)
        _part_end(part, owner, PartStatus.EXPIRED, provider_status=provider.raw_status or provider.status)
        _files_delete(deployment, [part.provider_input_file_id], target)
        return None
    interval = _base_interval() if cancel_sent or not part.poll_interval else min(
        part.poll_interval * 2, float(settings.GATEWAY_BATCH_POLL_MAX_SECONDS))
    next_poll = now + timedelta(seconds=interval)
    _part_save(part, owner, provider_status=provider.raw_status or provider.status,
               provider_completed=provider.completed, provider_failed=provider.failed, attempts=0,
               poll_interval=interval, next_poll_at=next_poll)
    return next_poll


def _poll_failed(part: BatchPart, batch: Batch, deployment: RoutableDeployment, owner: str, charge_to: BatchOwner,
                 error: GatewayError) -> datetime | None:
    """Poll again later (results already recorded stay); give the part up after too many failures in a row."""
    attempts = part.attempts + 1
    logger.warning("native batch part %s: polling provider batch %s failed (%d in a row): %s", part.id,
                   part.provider_batch_id, attempts, error.message, extra={"batch_id": batch.id})
    if attempts >= MAX_POLL_FAILURES:
        _lines_fail(part, batch, owner, charge_to, code="provider_batch_failed", message=error.message)
        _part_end(part, owner, PartStatus.FAILED, error=_error_text(error), attempts=attempts)
        return None
    interval = min(max(part.poll_interval, _base_interval()) * 2, float(settings.GATEWAY_BATCH_POLL_MAX_SECONDS))
    next_poll = timezone.now() + timedelta(seconds=max(interval, getattr(error, "retry_after", None) or 0.0))
    _part_save(part, owner, attempts=attempts, error=_error_text(error), poll_interval=interval,
               next_poll_at=next_poll)
    return next_poll


# --- 3. collecting the results ---------------------------------------------------------------------------
def _collect(part: BatchPart, batch: Batch, deployment: RoutableDeployment, target: DeploymentTarget,
             provider: ProviderBatch, owner: str, charge_to: BatchOwner) -> datetime | None:
    line_of = {request.custom_id: request.index for request in _part_requests(batch, part)}
    operation = BATCH_ENDPOINTS.get(batch.endpoint, "chat")
    try:
        results = deployment.adapter.batch_results(target, provider, Deadline.after(RESULTS_TIMEOUT_SECONDS))
        _results_write(part, owner, charge_to, (_outcome(result, line_of, deployment, operation)
                                                for result in results))
    except GatewayError as error:
        return _poll_failed(part, batch, deployment, owner, charge_to, error)
    status, code, message = _ending(batch, provider)
    if code is not None:
        _lines_fail(part, batch, owner, charge_to, code=code, message=message)
    error = message if status == PartStatus.FAILED else ""
    _part_end(part, owner, status, error=error, provider_status=provider.raw_status or provider.status,
              provider_completed=provider.completed, provider_failed=provider.failed)
    _files_delete(deployment, [part.provider_input_file_id, provider.output_file_id, provider.error_file_id], target)
    return None


def _ending(batch: Batch, provider: ProviderBatch) -> tuple[str, str | None, str]:
    """The part's final status, and the failure (code, message) of the lines the provider did not answer."""
    if batch.status in CANCELLING:
        # OpenAI leaves the lines it never ran out of a cancelled batch; so does Gatehouse.
        return (PartStatus.DONE if provider.status == "completed" else PartStatus.CANCELLED), None, ""
    if provider.status == "completed":
        return PartStatus.DONE, "missing_result", "The provider's batch finished without a result for this request."
    if provider.status == "failed":
        return PartStatus.FAILED, "provider_batch_failed", _failure_reason(provider)
    if provider.status == "expired" or timezone.now() >= batch.expires_at:
        return PartStatus.EXPIRED, "batch_expired", EXPIRED_MESSAGE
    return PartStatus.FAILED, "provider_batch_cancelled", "The provider's batch was cancelled outside Gatehouse."


def _failure_reason(provider: ProviderBatch) -> str:
    reasons = []
    for entry in provider.errors[:3]:
        text = str(entry.get("message") or entry.get("code") or "")
        reasons.append(f"Line {entry['line']}: {text}" if entry.get("line") and "Line" not in text else text)
    return "; ".join(reason for reason in reasons if reason) or "The provider's batch failed."


def _outcome(result: dict, line_of: dict[str, int], deployment: RoutableDeployment,
             operation: str) -> LineOutcome | None:
    """One provider result line as a `LineOutcome` (None for a custom_id this part does not hold)."""
    custom_id = result.get("custom_id")
    line = line_of.get(custom_id) if isinstance(custom_id, str) else None
    if line is None:
        logger.warning("a provider batch result names a custom_id outside its part; ignored",
                       extra={"deployment_id": deployment.id})
        return None
    response = result.get("response") if isinstance(result.get("response"), dict) else None
    error = result.get("error") or None
    status_code = response.get("status_code") if response else None
    body = response.get("body") if response and isinstance(response.get("body"), dict) else {}
    succeeded = isinstance(status_code, int) and 200 <= status_code < 300 and error is None
    usage = usage_from_body(body) if succeeded else NO_USAGE
    output = {**result, "id": result.get("id") or batch_request_id(), "response": response, "error": error}
    error_type = ""
    if not succeeded:
        body_error = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_code = error.get("code") if isinstance(error, dict) else None
        error_type = str(body_error.get("type") or error_code or "batch_error")[:64]
    return LineOutcome(
        line=line, custom_id=custom_id, succeeded=succeeded, output=output, operation=operation,
        status_code=status_code if isinstance(status_code, int) and 0 <= status_code < 1000 else 502,
        error_type=error_type, deployment_id=deployment.id, provider=deployment.provider,
        provider_model=str(body.get("model") or deployment.provider_model), prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost=deployment.batch_prices.cost(usage.prompt_tokens, usage.completion_tokens), started_at=time.time(),
        attempts=1)


# --- helpers ----------------------------------------------------------------------------------------
def _part_requests(batch: Batch, part: BatchPart) -> Iterable[BatchRequest]:
    """The part's range of the input's requests, read a line at a time from storage."""
    with stored_bytes_open(batch.input_file.stored_name) as handle:
        yield from islice(batch_requests(handle), part.first_line, part.first_line + part.line_count)


def _results_write(part: BatchPart, owner: str, charge_to: BatchOwner,
                   outcomes: Iterable[LineOutcome | None]) -> None:
    """Record outcomes `RESULTS_CHUNK` at a time, renewing the lease between chunks."""
    chunk: list[LineOutcome] = []
    for outcome in outcomes:
        if outcome is not None:
            chunk.append(outcome)
        if len(chunk) >= RESULTS_CHUNK:
            line_results_write(part=part, owner=owner, outcomes=chunk, charge_to=charge_to)
            lease_renew(part=part, owner=owner)
            chunk = []
    line_results_write(part=part, owner=owner, outcomes=chunk, charge_to=charge_to)


def _lines_fail(part: BatchPart, batch: Batch, owner: str, charge_to: BatchOwner, *, code: str,
                message: str) -> None:
    """Every line of the part without a result yet becomes a failure line (`code`, `message`)."""
    recorded = set(BatchLineResult.objects.filter(
        batch_id=part.batch_id, line__gte=part.first_line, line__lt=part.first_line + part.line_count,
    ).values_list("line", flat=True))
    if len(recorded) >= part.line_count:
        return
    status_code = NO_ANSWER_STATUS.get(code, 502)
    outcomes = (LineOutcome(line=request.index, custom_id=request.custom_id, succeeded=False,
                            output=failure_line(custom_id=request.custom_id, code=code, message=message),
                            operation=BATCH_ENDPOINTS.get(batch.endpoint, "chat"), status_code=status_code,
                            error_type=code, deployment_id=part.deployment_id, provider=part.provider,
                            started_at=time.time())
                for request in _part_requests(batch, part) if request.index not in recorded)
    _results_write(part, owner, charge_to, outcomes)


def _part_save(part: BatchPart, owner: str, **fields) -> None:
    """Write some of the part's fields under its lease (and onto `part`, which the caller goes on using)."""
    with lease_locked(part=part, owner=owner) as row:
        for name, value in fields.items():
            setattr(row, name, value)
            setattr(part, name, value)
        row.save(update_fields=[*fields, "updated_at"])


def _part_end(part: BatchPart, owner: str, status: str, **fields) -> None:
    _part_save(part, owner, status=status, finished_at=timezone.now(), next_poll_at=None, **fields)


def _cancel_quietly(deployment: RoutableDeployment, target: DeploymentTarget, batch_id: str) -> ProviderBatch | None:
    """Ask the provider to cancel; a refusal (it just finished, it is unreachable) is seen at the next poll."""
    try:
        return deployment.adapter.batch_cancel(target, batch_id, Deadline.after(CALL_TIMEOUT_SECONDS))
    except GatewayError as error:
        logger.warning("cancelling provider batch %s on %s failed: %s", batch_id, deployment.id, error.message)
        return None


def _files_delete(deployment: RoutableDeployment, file_ids: list[str | None],
                  target: DeploymentTarget | None = None) -> None:
    """Delete the provider's copies of a part's files, best effort (a file left behind costs storage only)."""
    for file_id in file_ids:
        if not file_id:
            continue
        try:
            deployment.adapter.batch_file_delete(target or deployment.target(), file_id,
                                                 Deadline.after(CALL_TIMEOUT_SECONDS))
        except GatewayError as error:
            logger.warning("could not delete batch file %s on %s: %s", file_id, deployment.id, error.message)


def _base_interval() -> float:
    return max(float(settings.GATEWAY_BATCH_POLL_SECONDS), 0.0)


def _backoff(attempts: int) -> float:
    return min(_base_interval() * (2 ** attempts), float(settings.GATEWAY_BATCH_POLL_MAX_SECONDS))


def _error_text(error: GatewayError) -> str:
    return (f"{error.code}: {error.message}" if error.code else error.message)[:1000]
