"""Writes of managed files: upload with fan-out to deployments, lazy replication, deletion, retries.

`managed_file_upload` is `POST /v1/files`: it checks what the caller sent, stores the bytes, then gives
every deployment of every named group its own copy at once. A group where no copy succeeded fails the
upload (every copy already made is deleted, nothing is kept); one where some copies failed does not,
and the failures stay recorded for the admin to retry. `provider_copy_ensure` is the request path's
lazy replication: a deployment without a copy gets one on first use. `managed_file_delete` hides the
file at once and deletes every copy; copies a provider would not delete are retried in the background
(`files_registry.maintenance`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from files_registry.batch_files import batch_upload_check, copy_wanted, is_batch_input
from files_registry.choices import PROVIDER_FILE_LIVE, UPLOADABLE_PURPOSES, FileStatus, ProviderFileStatus
from files_registry.copies import (
    COPY_TIMEOUT_SECONDS,
    DELETE_TIMEOUT_SECONDS,
    CopyOutcome,
    ProviderCopyFailedError,
    copies_delete,
    copies_upload,
    copy_upload,
    deployment_for_copy,
    error_text,
    ref_fields,
    ref_of,
    release_connections,
)
from files_registry.models import ManagedFile, ProviderFile, new_file_id
from files_registry.selectors import (
    EXPIRY_MARGIN,
    file_not_found,
    managed_file_get_for_caller,
    provider_copies_ready,
)
from files_registry.storage import stored_bytes_delete, stored_bytes_save, stored_name_for
from keys.access import check_model_access
from keys.principal import Caller
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.errors import GatewayError, InvalidRequestError, PermissionDeniedError, ProviderError
from providers.files import ProviderFileRef
from providers.http import Deadline

logger = logging.getLogger("gatehouse.files")

EXPIRES_AFTER_MIN_SECONDS = 3600
EXPIRES_AFTER_MAX_SECONDS = 30 * 24 * 3600


class FileTooLargeError(GatewayError):
    status_code = 413
    type = "invalid_request_error"
    code = "file_too_large"


class FileUploadFailedError(GatewayError):
    """No deployment of a named group could take a copy: the upload is refused, nothing kept."""

    status_code = 502
    type = "api_error"
    code = "file_upload_failed"


@dataclass(frozen=True, slots=True)
class FileUpload:
    """An uploaded file as the view received it: a readable binary file (spooled to disk by Django)."""

    content: BinaryIO
    size: int
    filename: str
    mime_type: str


def managed_file_upload(*, caller: Caller, upload: FileUpload, purpose: str, target_model_names: list[str],
                        expires_after_seconds: int | None, max_bytes: int) -> ManagedFile:
    """Check an upload, store it, and copy it to every deployment of every named group (`POST /v1/files`).
    A batch input with any bad line is refused whole, before anything is stored or copied."""
    if purpose not in UPLOADABLE_PURPOSES:
        allowed = ", ".join(str(value) for value in UPLOADABLE_PURPOSES)
        raise InvalidRequestError(f"'{purpose[:64]}' is not a valid purpose; expected one of: {allowed}.",
                                  param="purpose", code="invalid_value")
    if upload.size <= 0:
        raise InvalidRequestError("The file is empty.", param="file", code="empty_file")
    if upload.size > max_bytes:
        raise FileTooLargeError(f"The file is {upload.size} bytes; the largest accepted is {max_bytes} bytes.",
                                param="file")
    if expires_after_seconds is not None and not (
            EXPIRES_AFTER_MIN_SECONDS <= expires_after_seconds <= EXPIRES_AFTER_MAX_SECONDS):
        raise InvalidRequestError(
            f"'expires_after[seconds]' must be from {EXPIRES_AFTER_MIN_SECONDS} to {EXPIRES_AFTER_MAX_SECONDS}.",
            param="expires_after", code="invalid_value")
    groups = target_groups_check(caller=caller, names=target_model_names)
    if is_batch_input(purpose):
        batch_upload_check(caller=caller, content=upload.content, target_groups=groups)
    now = timezone.now()
    key = caller.key
    return managed_file_create(
        owner_key_id=key.id if key else "", owner_team_id=(key.team_id or "") if key else "",
        content=upload.content, size=upload.size, filename=upload.filename, mime_type=upload.mime_type,
        purpose=purpose, target_model_names=groups,
        expires_at=now + timedelta(seconds=expires_after_seconds) if expires_after_seconds else None)


def target_groups_check(*, caller: Caller, names: list[str]) -> list[str]:
    """The model groups `names` resolve to (the key's aliases applied), each one the caller may use and
    one that has deployments; the first that fails is refused (403 access, 400 unknown)."""
    snapshot = current_snapshot()
    groups: list[str] = []
    for name in names:
        group = caller.key.aliases.get(name, name) if caller.key else name
        if caller.key is not None:
            try:
                check_model_access(caller.key, name, group)
            except PermissionDeniedError as error:
                raise PermissionDeniedError(error.message, param="target_model_names", type=error.type,
                                            code=error.code) from None
        if not snapshot.group(group):
            raise InvalidRequestError(f"'{name}' in target_model_names is not a model group of this gateway.",
                                      param="target_model_names", code="model_not_found")
        if group not in groups:
            groups.append(group)
    return groups


def managed_file_create(*, owner_key_id: str, owner_team_id: str, content: BinaryIO, size: int, filename: str,
                        mime_type: str, purpose: str, target_model_names: list[str],
                        expires_at: datetime | None = None) -> ManagedFile:
    """Store the bytes and record the file, then copy it to every file-capable deployment of each group.

    Raises `FileUploadFailedError` (nothing kept) when some group has file-capable deployments and none
    of them took a copy. Deployments whose adapter cannot hold files get nothing now: requests to them
    carry the file another way (see `providers.base.Provider.file_part` and the relay). A batch input
    goes only to deployments that run batches from a file, each copy rewritten for it (`copy_wanted`).
    """
    file_id = new_file_id()
    stored_name = stored_bytes_save(name=stored_name_for(file_id), content=content)
    snapshot = current_snapshot()
    deployments = [deployment for group in target_model_names for deployment in snapshot.group(group)
                   if copy_wanted(deployment, purpose)]
    try:
        with transaction.atomic():
            managed_file = ManagedFile.objects.create(
                id=file_id, owner_key_id=owner_key_id, owner_team_id=owner_team_id, purpose=purpose,
                filename=filename, bytes=size, mime_type=mime_type, target_model_names=list(target_model_names),
                stored_name=stored_name, status=FileStatus.UPLOADED if deployments else FileStatus.PROCESSED,
                expires_at=expires_at)
            ProviderFile.objects.bulk_create([
                ProviderFile(managed_file=managed_file, deployment_id=deployment.id, model_group=deployment.model_name,
                             provider=deployment.provider) for deployment in deployments])
    except Exception:
        stored_bytes_delete(stored_name)
        raise
    if not deployments:
        return managed_file
    outcomes = copies_upload(deployments=deployments, managed_file=managed_file,
                             deadline=Deadline.after(COPY_TIMEOUT_SECONDS))
    failed_groups = [group for group in target_model_names
                     if any(o.deployment.model_name == group for o in outcomes)
                     and not any(o.deployment.model_name == group and o.ref is not None for o in outcomes)]
    if failed_groups:
        _abandon(managed_file, outcomes)
        raise FileUploadFailedError(_failure_message(failed_groups, outcomes), param="target_model_names")
    _record_outcomes(managed_file, outcomes)
    managed_file.status = FileStatus.PROCESSED
    managed_file.save(update_fields=["status"])
    return managed_file


def _record_outcomes(managed_file: ManagedFile, outcomes: list[CopyOutcome]) -> None:
    now = timezone.now()
    with transaction.atomic():
        for outcome in outcomes:
            if outcome.ref is not None:
                fields = {**ref_fields(outcome.ref), "status": ProviderFileStatus.UPLOADED, "error": "",
                          "uploaded_at": now}
            else:
                fields = {"status": ProviderFileStatus.FAILED, "error": error_text(outcome.error)}
            ProviderFile.objects.filter(managed_file=managed_file, deployment_id=outcome.deployment.id).update(
                attempts=1, updated_at=now, **fields)


def _abandon(managed_file: ManagedFile, outcomes: list[CopyOutcome]) -> None:
    """Undo a refused upload: delete the copies that were made, the bytes and the rows."""
    made = [(outcome.deployment, outcome.ref) for outcome in outcomes if outcome.ref is not None]
    errors = copies_delete(pairs=made, deadline=Deadline.after(DELETE_TIMEOUT_SECONDS)) if made else []
    stored_bytes_delete(managed_file.stored_name)
    left = [(deployment, ref, error) for (deployment, ref), error in zip(made, errors, strict=True) if error]
    if not left:
        managed_file.delete()
        return
    # A copy the provider would not delete now stays recorded, so the background retries until it is gone.
    now = timezone.now()
    with transaction.atomic():
        ManagedFile.objects.filter(id=managed_file.id).update(deleted_at=now, status=FileStatus.ERROR)
        ProviderFile.objects.filter(managed_file=managed_file).update(status=ProviderFileStatus.DELETED, deleted_at=now)
        for deployment, ref, error in left:
            ProviderFile.objects.filter(managed_file=managed_file, deployment_id=deployment.id).update(
                status=ProviderFileStatus.DELETE_FAILED, error=error_text(error), deleted_at=None,
                **ref_fields(ref))


def _failure_message(groups: list[str], outcomes: list[CopyOutcome]) -> str:
    reasons = "; ".join(f"{o.deployment.id}: {error_text(o.error)}" for o in outcomes
                        if o.error is not None and o.deployment.model_name in groups)
    named = ", ".join(f"'{group}'" for group in groups)
    return f"No deployment of model group {named} accepted a copy of the file, so nothing was stored ({reasons})."


def provider_copy_ensure(*, managed_file: ManagedFile, deployment: RoutableDeployment,
                         deadline: Deadline) -> ProviderFileRef:
    """This deployment's copy of the file: the one it holds, or one uploaded now (lazy replication; a batch
    input's copy rewritten for the deployment, as at upload: `copies.copy_upload`).

    Raises a `ProviderError` (failover allowed) when the copy cannot be made, so the router may try
    another deployment; the failure is recorded on the copy's row for the admin.
    """
    if managed_file.deleted_at is not None:
        raise ProviderCopyFailedError(f"File {managed_file.id} was deleted.", code="file_not_found")
    existing = ProviderFile.objects.filter(managed_file=managed_file, deployment_id=deployment.id).first()
    if existing is not None and _usable(existing):
        return ref_of(existing)
    release_connections()
    try:
        ref = copy_upload(deployment=deployment, managed_file=managed_file, deadline=deadline)
    except ProviderError as error:
        _copy_failed(managed_file, deployment, error)
        raise
    return _copy_made(managed_file, deployment, ref)


def _usable(copy: ProviderFile) -> bool:
    return copy.status == ProviderFileStatus.UPLOADED and (
        copy.expires_at is None or copy.expires_at > timezone.now() + EXPIRY_MARGIN)


def _copy_row(managed_file: ManagedFile, deployment: RoutableDeployment) -> ProviderFile:
    """The (file, deployment) row, locked; created when missing (a concurrent creator wins the race)."""
    lookup = {"managed_file": managed_file, "deployment_id": deployment.id}
    row = ProviderFile.objects.select_for_update().filter(**lookup).first()
    if row is None:
        try:
            with transaction.atomic():
                ProviderFile.objects.create(**lookup, model_group=deployment.model_name, provider=deployment.provider)
        except IntegrityError:
            pass
        row = ProviderFile.objects.select_for_update().get(**lookup)
    return row


def _copy_made(managed_file: ManagedFile, deployment: RoutableDeployment, ref: ProviderFileRef) -> ProviderFileRef:
    with transaction.atomic():
        row = _copy_row(managed_file, deployment)
        winner = ref_of(row) if _usable(row) else None
        if winner is None:
            for name, value in ref_fields(ref).items():
                setattr(row, name, value)
            row.status, row.error, row.uploaded_at = ProviderFileStatus.UPLOADED, "", timezone.now()
            row.model_group, row.provider, row.deleted_at = deployment.model_name, deployment.provider, None
            row.attempts += 1
            row.save()
    if winner is not None:
        # Another request copied it at the same time: keep theirs, drop ours.
        copies_delete(pairs=[(deployment, ref)], deadline=Deadline.after(DELETE_TIMEOUT_SECONDS))
        return winner
    return ref


def _copy_failed(managed_file: ManagedFile, deployment: RoutableDeployment, error: ProviderError) -> None:
    with transaction.atomic():
        row = _copy_row(managed_file, deployment)
        if row.status != ProviderFileStatus.UPLOADED:
            row.status = ProviderFileStatus.FAILED
        row.error = error_text(error)
        row.attempts += 1
        row.save()


def provider_copies_retry(*, managed_file: ManagedFile) -> dict[str, str | None]:
    """Give every deployment of the file's groups that takes a copy of it (`copy_wanted`), and every failed
    copy's deployment, a copy.

    Returns deployment id -> None when it holds a copy now, else the error (the admin's retry action).
    """
    snapshot = current_snapshot()
    wanted: dict[str, RoutableDeployment] = {}
    for group in managed_file.target_model_names:
        for deployment in snapshot.group(group):
            if copy_wanted(deployment, managed_file.purpose):
                wanted[deployment.id] = deployment
    for copy in ProviderFile.objects.filter(managed_file=managed_file, status=ProviderFileStatus.FAILED):
        deployment = snapshot.by_id.get(copy.deployment_id)
        if deployment is not None:
            wanted[deployment.id] = deployment
    results: dict[str, str | None] = {}
    for deployment_id, deployment in wanted.items():
        try:
            provider_copy_ensure(managed_file=managed_file, deployment=deployment,
                                 deadline=Deadline.after(COPY_TIMEOUT_SECONDS))
            results[deployment_id] = None
        except ProviderError as error:
            results[deployment_id] = error_text(error)
    return results


def managed_file_delete(*, managed_file: ManagedFile) -> None:
    """Delete a file: gone from the API at once, its bytes removed, every provider copy deleted now.

    A copy the provider would not delete is marked `delete_failed` and retried in the background;
    the row is purged once no copy is left.
    """
    now = timezone.now()
    ManagedFile.objects.filter(id=managed_file.id, deleted_at__isnull=True).update(deleted_at=now)
    managed_file.deleted_at = managed_file.deleted_at or now
    stored_bytes_delete(managed_file.stored_name)
    provider_copies_delete(managed_file_ids=[managed_file.id])
    managed_file_purge(managed_file_ids=[managed_file.id])


def provider_copies_delete(*, managed_file_ids: list[str] | None = None, limit: int = 500) -> dict[str, int]:
    """Delete the copies still alive of deleted files (all deleted files when no ids are given).

    Returns counts of copies `deleted` and `failed` (left `delete_failed` for the next run).
    """
    live = ProviderFile.objects.filter(managed_file__deleted_at__isnull=False, status__in=PROVIDER_FILE_LIVE)
    if managed_file_ids is not None:
        live = live.filter(managed_file_id__in=managed_file_ids)
    copies = list(live.order_by("updated_at")[:limit])
    now = timezone.now()
    pairs, waiting = [], []
    for copy in copies:
        ref = ref_of(copy)
        deployment = deployment_for_copy(copy.deployment_id)
        if ref.file_id is None and ref.uri is None:
            _copy_deleted(copy, now, "")  # never uploaded: nothing on the provider
        elif deployment is None:
            logger.warning("deployment %s no longer exists: its copy of %s is written off", copy.deployment_id,
                           copy.managed_file_id)
            _copy_deleted(copy, now, "The deployment no longer exists; its copy could not be deleted.")
        else:
            pairs.append((deployment, ref))
            waiting.append(copy)
    errors = copies_delete(pairs=pairs, deadline=Deadline.after(DELETE_TIMEOUT_SECONDS)) if pairs else []
    counts = {"deleted": len(copies) - len(waiting), "failed": 0}
    for copy, error in zip(waiting, errors, strict=True):
        if error is None:
            _copy_deleted(copy, now, "")
            counts["deleted"] += 1
        else:
            ProviderFile.objects.filter(pk=copy.pk).update(
                status=ProviderFileStatus.DELETE_FAILED, error=error_text(error), attempts=copy.attempts + 1,
                updated_at=now)
            counts["failed"] += 1
            logger.warning("could not delete the copy of %s on %s; retrying later", copy.managed_file_id,
                           copy.deployment_id)
    return counts


def _copy_deleted(copy: ProviderFile, now: datetime, note: str) -> None:
    ProviderFile.objects.filter(pk=copy.pk).update(status=ProviderFileStatus.DELETED, deleted_at=now,
                                                   error=note, updated_at=now)


def managed_file_purge(*, managed_file_ids: list[str] | None = None) -> int:
    """Drop the rows of deleted files none of whose copies is left on a provider; returns how many."""
    deleted = ManagedFile.objects.filter(deleted_at__isnull=False).exclude(
        provider_copies__status__in=PROVIDER_FILE_LIVE)
    if managed_file_ids is not None:
        deleted = deleted.filter(id__in=managed_file_ids)
    purged = 0
    for managed_file in deleted.distinct()[:500]:
        try:
            managed_file.delete()
            purged += 1
        except ProtectedError:
            pass  # still referenced (a batch's input or output): kept, invisible, until that goes
    return purged


def managed_files_expire(*, limit: int = 100) -> int:
    """Delete files whose `expires_after` has passed, as if their owner deleted them; returns how many."""
    expired = ManagedFile.objects.filter(deleted_at__isnull=True, expires_at__lte=timezone.now())
    count = 0
    for managed_file in expired.order_by("expires_at")[:limit]:
        managed_file_delete(managed_file=managed_file)
        count += 1
    return count


__all__ = [
    "FileTooLargeError", "FileUpload", "FileUploadFailedError", "file_not_found", "managed_file_create",
    "managed_file_delete", "managed_file_get_for_caller", "managed_file_purge", "managed_file_upload",
    "managed_files_expire", "provider_copies_delete", "provider_copies_ready", "provider_copies_retry",
    "provider_copy_ensure", "target_groups_check",
]
