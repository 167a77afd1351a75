"""Reads of managed batches: who may see which batch, listing pages, and the live counts of native parts.

Visibility follows the files' rule: the master key and `proxy_admin` keys see every batch; any other
key sees the batches it created and those of its team. Anything else (an unknown id, a malformed id,
someone else's batch) is the same 404, so ids cannot be probed.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from batches.choices import BATCH_ACTIVE, PART_UNFINISHED, BatchStatus, Engine
from batches.models import Batch, BatchPart, is_batch_id
from files_registry.selectors import owned_by
from keys.principal import Caller
from providers.errors import InvalidRequestError, NotFoundError

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100


class BatchNotFoundError(NotFoundError):
    code = "batch_not_found"


def batch_not_found(batch_id: object) -> BatchNotFoundError:
    """OpenAI's message for an unknown batch; an absurd id is not echoed back."""
    shown = batch_id if isinstance(batch_id, str) and len(batch_id) <= 100 else "(invalid id)"
    return BatchNotFoundError(f"No batch found with id '{shown}'.", param="batch_id")


def batch_visible_to(caller: Caller) -> QuerySet[Batch]:
    """The batches this caller may read, cancel and list."""
    return Batch.objects.filter(_owned_by(caller))


def _owned_by(caller: Caller) -> Q:
    """Like files, plus `proxy_admin` keys, which administer every batch."""
    return Q() if caller.is_admin else owned_by(caller)


def batch_get_for_caller(*, caller: Caller, batch_id: str) -> Batch:
    """The caller's batch, or the `batch_not_found` 404 (the id's shape is checked before any query)."""
    if not is_batch_id(batch_id):
        raise batch_not_found(batch_id)
    found = batch_visible_to(caller).filter(id=batch_id).first()
    if found is None:
        raise batch_not_found(batch_id)
    return found


@dataclass(frozen=True, slots=True)
class BatchPage:
    batches: list[Batch]
    has_more: bool


def model_names_for_caller(caller: Caller, names: Iterable[str]) -> set[str]:
    """The names asked for, plus the groups the caller's key aliases them to (a key may call a group by an
    alias, and its batches are recorded under both the name used and the group)."""
    wanted = {name for name in names if name}
    aliases = caller.key.aliases if caller.key is not None else {}
    return wanted | {aliases[name] for name in wanted if name in aliases}


def batch_list_for_caller(*, caller: Caller, limit: int = DEFAULT_LIST_LIMIT, after: str | None = None,
                          model_names: Iterable[str] = ()) -> BatchPage:
    """One page of the caller's batches, newest first (OpenAI's cursor: `after` is the last id seen).

    With `model_names`, only batches whose model group or requested model is one of them (or, for a batch
    still validating, whose input file was uploaded for one of them). Ties on
    `created_at` are broken by id, so a page boundary never skips or repeats a batch.
    """
    batches = batch_visible_to(caller)
    names = model_names_for_caller(caller, model_names)
    if names:
        on_group = Q(model_group__in=names) | Q(requested_model__in=names)
        batches = batches.filter(on_group | Q(id__in=_validating_for(batches, names)))
    if after is not None:
        cursor = _cursor(caller, after)
        batches = batches.filter(Q(created_at__lt=cursor.created_at) | Q(created_at=cursor.created_at,
                                                                          id__lt=cursor.id))
    rows = list(batches.order_by("-created_at", "-id")[: limit + 1])
    return BatchPage(batches=rows[:limit], has_more=len(rows) > limit)


def _validating_for(batches: QuerySet[Batch], names: set[str]) -> list[str]:
    """Batches not validated yet have no group: they match by the groups their input file was uploaded for
    (its `target_model_names`). Only batches still validating are read, a handful at any time."""
    pending = batches.filter(status=BatchStatus.VALIDATING, model_group="").values_list(
        "id", "input_file__target_model_names")
    return [batch_id for batch_id, targets in pending if names.intersection(targets or ())]


def _cursor(caller: Caller, after: str) -> Batch:
    found = None
    if is_batch_id(after):
        found = batch_visible_to(caller).filter(id=after).only("id", "created_at").first()
    if found is None:
        raise InvalidRequestError(f"'after' must be the id of one of your batches; '{after[:100]}' is not.",
                                  param="after", code="invalid_value")
    return found


def part_running_counts(part: BatchPart) -> tuple[int, int]:
    """(completed, failed) a native part's provider reports beyond the lines Gatehouse has recorded for it:
    a native part's lines are recorded only when the provider's output is downloaded, and until then the
    provider's own counts are the live ones. Finished parts and gateway parts add nothing."""
    if part.engine != Engine.NATIVE or part.status not in PART_UNFINISHED:
        return 0, 0
    return max(part.provider_completed - part.completed, 0), max(part.provider_failed - part.failed, 0)


def native_progress(batches: Iterable[Batch]) -> dict[str, tuple[int, int]]:
    """For each active batch, what its running native parts add to its recorded counts (`part_running_counts`):
    {batch id: (completed, failed)}. One query, none when no batch is active."""
    active = [batch.id for batch in batches if batch.status in BATCH_ACTIVE]
    if not active:
        return {}
    parts = BatchPart.objects.filter(batch_id__in=active, engine=Engine.NATIVE, status__in=PART_UNFINISHED).only(
        "batch_id", "engine", "status", "completed", "failed", "provider_completed", "provider_failed")
    progress: dict[str, tuple[int, int]] = {}
    for part in parts:
        completed, failed = part_running_counts(part)
        done, broken = progress.get(part.batch_id, (0, 0))
        progress[part.batch_id] = (done + completed, broken + failed)
    return progress
