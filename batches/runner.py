"""The batch work itself, as the tasks of `batches.tasks` run it: start, run a part, settle.

- `batch_start_run` validates a `validating` batch against its owner's key as it is now (every line
  checked, with its line number in the errors), plans its parts (`batches.planner`) and starts them.
- `part_run` takes a part's lease and works on it: a gateway part runs its remaining lines
  (`batches.gateway_engine`); a native part makes one step (`batches.native`) and says when to poll
  next. The last part to finish settles the batch.

Nothing here queues tasks: each function tells its task (`batches.tasks`) what to queue next, so
the work depends on nothing above it.
- `batch_settle_run` writes the output and error files and gives the batch its final status, once.

Every function may run twice, or concurrently with itself, without harm: the batch's own state only
moves through conditional updates and row locks, parts through their leases. That is what lets the
recovery sweep queue anything again whenever a worker may have died.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from batches import output
from batches.choices import BATCH_TERMINAL, PART_FINISHED, BatchStatus, Engine, PartStatus
from batches.gateway_engine import gateway_part_run
from batches.leases import LeaseLostError, lease_release, part_claim, worker_identity
from batches.models import Batch, BatchPart
from batches.native import native_part_step
from batches.planner import parts_plan
from batches.results import batch_owner
from files_registry.batch_input import BATCH_ENDPOINTS, batch_input_check
from files_registry.storage import stored_bytes_open
from keys.access import check_model_access
from keys.key_cache import key_view_from_row
from keys.principal import KeyView
from keys.selectors import virtual_key_find
from models_registry.counters import counter_add
from models_registry.snapshot import current_snapshot
from providers.errors import GatewayError

logger = logging.getLogger("gatehouse.batches")

# Batches started on each group, counted in the shared counters (Redis when configured): concurrent
# starts each get their own number, so successive batches rotate over the group's deployments.
ROTATION_COUNTER = "batches:started:"
ROTATION_TTL_SECONDS = 7 * 86400


def batch_start_run(batch_id: str) -> list[int]:
    """Validate and plan a batch still `validating`; anything wrong fails the batch. Returns the ids of
    the parts created, for the caller to queue (none when the batch failed or was not to be started)."""
    batch = Batch.objects.select_related("input_file").filter(id=batch_id).first()
    if batch is None or batch.status != BatchStatus.VALIDATING:
        return []
    try:
        key = _owner_key(batch)
    except GatewayError as error:
        _fail(batch, [{"code": error.code or "invalid_key", "message": error.message, "param": None, "line": None}])
        return []
    resolved: dict[str, str] = {}
    snapshot = current_snapshot()

    def model_problem(model: str) -> str | None:
        group = key.aliases.get(model, model) if key is not None else model
        if not snapshot.group(group):
            return f"model '{model[:64]}' is not a model of this gateway."
        if key is not None:
            try:
                check_model_access(key, model, group)
            except GatewayError as error:
                return error.message
        resolved[model] = group
        return None

    try:
        with stored_bytes_open(batch.input_file.stored_name) as handle:
            summary = batch_input_check(handle, endpoint=batch.endpoint, model_problem=model_problem)
    except OSError:
        logger.exception("batch %s: its input file cannot be read", batch.id)
        _fail(batch, [{"code": "invalid_file", "message": f"The input file {batch.input_file_id} cannot be read.",
                       "param": "input_file_id", "line": None}])
        return []
    if not summary.ok:
        _fail(batch, [problem.as_error() for problem in summary.problems])
        return []
    model = summary.models[0]
    group = resolved[model]
    try:
        planned = parts_plan(group=group, operation=BATCH_ENDPOINTS[batch.endpoint], total=summary.total,
                             batches_on_group=counter_add(f"{ROTATION_COUNTER}{group}", ttl=ROTATION_TTL_SECONDS) - 1)
    except GatewayError as error:
        _fail(batch, [{"code": error.code, "message": error.message, "param": error.param, "line": None}])
        return []
    now = timezone.now()
    with transaction.atomic():
        started = Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
            status=BatchStatus.IN_PROGRESS, in_progress_at=now, model_group=group, requested_model=model,
            total=summary.total, updated_at=now)
        if not started:
            return []  # cancelled meanwhile, or another worker started it
        BatchPart.objects.bulk_create([
            BatchPart(batch_id=batch.id, index=plan.index, deployment_id=plan.deployment.id, model_group=group,
                      provider=plan.deployment.provider, engine=plan.engine, first_line=plan.first_line,
                      line_count=plan.line_count)
            for plan in planned])
        part_ids = list(BatchPart.objects.filter(batch_id=batch.id).values_list("id", flat=True))
    logger.info("batch %s started on %s: %d lines in %d parts", batch.id, group, summary.total, len(planned))
    return part_ids


def _owner_key(batch: Batch) -> KeyView | None:
    """The batch's key as it is now (None for the master key); a key deleted since fails the batch."""
    if not batch.owner_key_id:
        return None
    row = virtual_key_find(batch.owner_key_id)
    if row is None:
        raise GatewayError("The key that created this batch no longer exists.", code="invalid_key")
    return key_view_from_row(row)


def _fail(batch: Batch, errors: list[dict]) -> None:
    now = timezone.now()
    Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
        status=BatchStatus.FAILED, failed_at=now, errors=errors, updated_at=now)
    logger.info("batch %s failed validation: %d problems", batch.id, len(errors))


def part_run(part_id: int) -> datetime | None:
    """Work on one part while holding its lease; a part leased by another worker is left to it.

    Returns when the part must run again (a native part's next poll; now, for a gateway part stopped
    by the worker's shutdown), for the caller to queue, or None when nothing is left to queue.
    """
    owner = worker_identity()
    part = part_claim(part_id=part_id, owner=owner)
    if part is None:
        return None
    charge_to = batch_owner(part.batch)
    try:
        if part.engine == Engine.GATEWAY:
            if not gateway_part_run(part=part, owner=owner, charge_to=charge_to):
                return timezone.now()
        else:
            next_at = native_part_step(part, owner, charge_to)
            if next_at is not None:
                lease_release(part=part, owner=owner)
                return next_at
    except LeaseLostError:
        logger.info("batch part %s: lease lost, another worker has it", part_id)
        return None
    settle_if_finished(part.batch_id)
    return None


def settle_if_finished(batch_id: str) -> bool:
    """Settle the batch now when none of its parts is left to run; True when it was settled here."""
    if BatchPart.objects.filter(batch_id=batch_id).exclude(status__in=PART_FINISHED).exists():
        return False
    return batch_settle_run(batch_id)


def batch_settle_run(batch_id: str) -> bool:
    """Write the output and error files and set the final status, once every part is finished.

    The batch first shows `finalizing`; the files and the final status are then written in one
    transaction holding the batch's row, so a concurrent settle waits and then finds it done (never two
    output files). Returns True when this call gave the batch its final status.
    """
    if BatchPart.objects.filter(batch_id=batch_id).exclude(status__in=PART_FINISHED).exists():
        return False
    now = timezone.now()
    Batch.objects.filter(id=batch_id, status__in=(BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING)).update(
        status=BatchStatus.FINALIZING, finalizing_at=now, updated_at=now)
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(id=batch_id).first()
        if batch is None or batch.status in BATCH_TERMINAL or batch.status != BatchStatus.FINALIZING:
            return False
        output_file, error_file = output.output_files_write(batch)
        parts = list(BatchPart.objects.filter(batch_id=batch_id))
        status, errors = _final_status(batch, parts)
        now = timezone.now()
        stamp = {BatchStatus.CANCELLED: "cancelled_at", BatchStatus.EXPIRED: "expired_at",
                 BatchStatus.FAILED: "failed_at", BatchStatus.COMPLETED: "completed_at"}[status]
        changes = {"status": status, stamp: now, "output_file": output_file, "error_file": error_file,
                   "updated_at": now}
        if errors is not None:
            changes["errors"] = errors
        Batch.objects.filter(id=batch_id).update(**changes)
    logger.info("batch %s settled: %s", batch_id, status)
    return True


def _final_status(batch: Batch, parts: list[BatchPart]) -> tuple[str, list[dict] | None]:
    if batch.cancelling_at is not None:
        return BatchStatus.CANCELLED, None
    if any(part.status == PartStatus.EXPIRED for part in parts):
        return BatchStatus.EXPIRED, None
    if parts and all(part.status == PartStatus.FAILED for part in parts) and batch.completed == 0:
        errors = [{"code": "batch_failed", "message": part.error or f"The batch failed on {part.deployment_id}.",
                   "param": None, "line": None} for part in parts]
        return BatchStatus.FAILED, errors
    return BatchStatus.COMPLETED, None
