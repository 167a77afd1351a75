"""Reads of managed files: who may see which file, listing pages, which deployments hold a copy.

Visibility is the one rule every read shares: the master key sees every file; a virtual key sees the
files it uploaded and those of its team. Anything else (an unknown id, a deleted or expired file, a
malformed id, someone else's file) is the same 404, so ids cannot be probed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from files_registry.choices import ProviderFileStatus
from files_registry.models import ManagedFile, ProviderFile, is_file_id
from keys.principal import Caller
from providers.errors import InvalidRequestError, NotFoundError

MAX_LIST_LIMIT = 10_000
# A copy about to expire (Gemini forgets files after 48 h) is replaced rather than handed to a request.
EXPIRY_MARGIN = timedelta(minutes=15)


class ManagedFileNotFoundError(NotFoundError):
    code = "file_not_found"


def file_not_found(file_id: object) -> ManagedFileNotFoundError:
    shown = file_id if isinstance(file_id, str) and len(file_id) <= 100 else "(invalid id)"
    return ManagedFileNotFoundError(f"No such File object: {shown}", param="file_id")


def managed_file_visible_to(caller: Caller) -> QuerySet[ManagedFile]:
    """The live (not deleted, not expired) files this caller may see."""
    now = timezone.now()
    live = Q(deleted_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    return ManagedFile.objects.filter(live, owned_by(caller))


def owned_by(caller: Caller) -> Q:
    """What a caller owns: its key's rows and its team's (everything for the master key)."""
    key = caller.key
    if key is None:
        return Q()
    owned = Q(owner_key_id=key.id)
    if key.team_id:
        owned |= Q(owner_team_id=key.team_id)
    return owned


def managed_file_get_for_caller(*, caller: Caller, file_id: str) -> ManagedFile:
    """The caller's file, or the `file_not_found` 404 (the id's shape is checked before any query)."""
    if not is_file_id(file_id):
        raise file_not_found(file_id)
    found = managed_file_visible_to(caller).filter(id=file_id).first()
    if found is None:
        raise file_not_found(file_id)
    return found


@dataclass(frozen=True, slots=True)
class FilePage:
    files: list[ManagedFile]
    has_more: bool


def managed_file_list_for_caller(*, caller: Caller, purpose: str | None = None, limit: int = MAX_LIST_LIMIT,
                                 after: str | None = None, order: str = "desc") -> FilePage:
    """One page of the caller's files by creation time (OpenAI's cursor: `after` is the last id seen).

    Ties on `created_at` are broken by id, so a page boundary never skips or repeats a file.
    """
    files = managed_file_visible_to(caller)
    if purpose:
        files = files.filter(purpose=purpose)
    descending = order == "desc"
    if after is not None:
        cursor = _cursor(caller, after)
        moment, last_id = cursor.created_at, cursor.id
        if descending:
            files = files.filter(Q(created_at__lt=moment) | Q(created_at=moment, id__lt=last_id))
        else:
            files = files.filter(Q(created_at__gt=moment) | Q(created_at=moment, id__gt=last_id))
    files = files.order_by("-created_at", "-id") if descending else files.order_by("created_at", "id")
    rows = list(files[: limit + 1])
    return FilePage(files=rows[:limit], has_more=len(rows) > limit)


def _cursor(caller: Caller, after: str) -> ManagedFile:
    """The file `after` names: one of the caller's, possibly deleted since (a cursor outlives its file)."""
    found = None
    if is_file_id(after):
        found = ManagedFile.objects.filter(owned_by(caller), id=after).only("id", "created_at").first()
    if found is None:
        raise InvalidRequestError(f"'after' must be the id of one of your files; '{after[:100]}' is not.",
                                  param="after", code="invalid_value")
    return found


def provider_copies_ready(*, managed_file_ids: list[str]) -> dict[str, set[str]]:
    """For each file id, the deployments holding an uploaded copy that has not expired (ids without one: absent)."""
    if not managed_file_ids:
        return {}
    fresh_until = timezone.now() + EXPIRY_MARGIN
    rows = ProviderFile.objects.filter(
        managed_file_id__in=list(managed_file_ids), managed_file__deleted_at__isnull=True,
        status=ProviderFileStatus.UPLOADED,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=fresh_until)).values_list("managed_file_id", "deployment_id")
    ready: dict[str, set[str]] = {}
    for file_id, deployment_id in rows:
        ready.setdefault(file_id, set()).add(deployment_id)
    return ready


def provider_copy_list_for_file(*, managed_file: ManagedFile) -> list[ProviderFile]:
    return list(ProviderFile.objects.filter(managed_file=managed_file).order_by("model_group", "deployment_id"))
