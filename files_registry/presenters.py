"""Managed files as the API shows them: OpenAI's `file` object, plus Gatehouse's `provider_copies`."""
from __future__ import annotations

from files_registry.choices import ProviderFileStatus
from files_registry.models import ManagedFile, ProviderFile

# Copies worth showing a client: the deployments holding the file, and those that failed to take it.
SHOWN_COPY_STATUSES = (ProviderFileStatus.PENDING, ProviderFileStatus.UPLOADED, ProviderFileStatus.FAILED)


def _epoch(moment) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def file_object(managed_file: ManagedFile, copies: list[ProviderFile] | None = None) -> dict:
    """OpenAI's file object. With `copies`, `provider_copies` says which deployments hold the file and
    which failed to take it (and why), so a partial failure is never silent."""
    shown = {
        "id": managed_file.id,
        "object": "file",
        "bytes": managed_file.bytes,
        "created_at": _epoch(managed_file.created_at),
        "expires_at": _epoch(managed_file.expires_at),
        "filename": managed_file.filename,
        "purpose": managed_file.purpose,
        "status": managed_file.status,
        "status_details": managed_file.status_details or None,
    }
    if copies is not None:
        shown["target_model_names"] = list(managed_file.target_model_names)
        shown["provider_copies"] = [copy_object(copy) for copy in copies if copy.status in SHOWN_COPY_STATUSES]
    return shown


def copy_object(copy: ProviderFile) -> dict:
    return {"deployment_id": copy.deployment_id, "model_group": copy.model_group, "provider": copy.provider,
            "status": copy.status, "error": copy.error or None}


def file_deleted_object(file_id: str) -> dict:
    return {"id": file_id, "object": "file", "deleted": True}
