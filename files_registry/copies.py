"""The provider side of managed files: copying one file to one deployment, deleting a copy, in parallel.

Nothing here writes to the database: these functions call adapters (each with the deployment's own
credentials) and report what happened; `services` records it. Copies run in a bounded pool of
threads, which are greenlets under gunicorn's gevent worker: the uploads wait on the network together
instead of one after another, and no thread touches the database (no connection leaks per thread).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from django.db import connections

from files_registry.batch_files import is_batch_input, rewritten_batch_input
from files_registry.batch_input import LineError
from files_registry.models import ManagedFile, ProviderFile
from files_registry.storage import stored_bytes_open
from models_registry.batch_engines import reads_batch_file
from models_registry.snapshot import RoutableDeployment, current_snapshot, routable_from_row
from providers.base import DeploymentTarget
from providers.errors import GatewayError, ProviderError
from providers.files import ProviderFileRef
from providers.http import Deadline

logger = logging.getLogger("gatehouse.files")

# Copies of one file made at once (a file named for three groups of four deployments: twelve copies).
MAX_PARALLEL_COPIES = 8
# One copy of a file of up to 512 MB may take minutes over a slow link.
COPY_TIMEOUT_SECONDS = 900.0
DELETE_TIMEOUT_SECONDS = 60.0
MAX_ERROR_CHARS = 1000

Result = TypeVar("Result")


class ProviderCopyFailedError(ProviderError):
    """A deployment could not get (or is unable to hold) a copy of a file; another deployment may.

    Wraps failures that are not already a `ProviderError` (an adapter without file support, a bug),
    so callers routing a request see one kind of failure and can fail over.
    """

    failover = True
    status_code = 502
    type = "api_error"
    code = "file_copy_failed"


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    deployment: RoutableDeployment
    ref: ProviderFileRef | None = None
    error: ProviderError | None = None


def copy_upload(*, deployment: RoutableDeployment, managed_file: ManagedFile, deadline: Deadline) -> ProviderFileRef:
    """Upload the stored bytes to `deployment` through its adapter, streaming from a handle of its own.

    A batch input going to a deployment that runs it natively is uploaded rewritten for it instead
    (`body.model` = its own model or Azure deployment name), under the user's filename.
    """
    if not deployment.adapter.supports_files:
        raise ProviderCopyFailedError(
            f"Deployment '{deployment.id}' ({deployment.provider}) cannot hold files.", code="files_not_supported")
    target = deployment.target()
    if is_batch_input(managed_file.purpose) and reads_batch_file(deployment):
        return _batch_copy_upload(deployment, target, managed_file, deadline)
    with stored_bytes_open(managed_file.stored_name) as handle:
        return _call(lambda: deployment.adapter.file_upload(
            target, content=handle, size=managed_file.bytes, filename=managed_file.filename,
            purpose=managed_file.purpose, mime_type=managed_file.mime_type, deadline=deadline))


def _batch_copy_upload(deployment: RoutableDeployment, target: DeploymentTarget, managed_file: ManagedFile,
                       deadline: Deadline) -> ProviderFileRef:
    try:
        with rewritten_batch_input(managed_file, model=deployment.provider_model) as (handle, size):
            return _call(lambda: deployment.adapter.file_upload(
                target, content=handle, size=size, filename=managed_file.filename, purpose=managed_file.purpose,
                mime_type=managed_file.mime_type, deadline=deadline))
    except LineError as error:
        raise ProviderCopyFailedError(f"File {managed_file.id} is not a valid batch input: {error.problem.message}",
                                      code="invalid_batch_input") from None


def copy_delete(*, deployment: RoutableDeployment, ref: ProviderFileRef, deadline: Deadline) -> None:
    """Delete `deployment`'s copy (the adapter treats the provider's 404 as already deleted)."""
    target = deployment.target()
    _call(lambda: deployment.adapter.file_delete(target, ref, deadline))


def _call(function: Callable[[], Result]) -> Result:
    try:
        return function()
    except ProviderError:
        raise
    except GatewayError as error:
        raise ProviderCopyFailedError(error.message) from error
    except Exception as error:
        logger.exception("file copy call failed")
        raise ProviderCopyFailedError(f"The copy failed with an internal error ({type(error).__name__}).") from error


def release_connections() -> None:
    """Give database connections back before minutes of network work (STACK.md, pitfall 3): the pool is
    small and other requests need it. One inside a transaction is the caller's to finish."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def copies_upload(*, deployments: Sequence[RoutableDeployment], managed_file: ManagedFile,
                  deadline: Deadline) -> list[CopyOutcome]:
    """Copy the file to every deployment at once; one outcome per deployment, in the same order."""
    release_connections()
    def job(deployment: RoutableDeployment) -> Callable[[], CopyOutcome]:
        def run() -> CopyOutcome:
            try:
                return CopyOutcome(deployment, ref=copy_upload(deployment=deployment, managed_file=managed_file,
                                                               deadline=deadline))
            except ProviderError as error:
                return CopyOutcome(deployment, error=error)
        return run
    return run_parallel([job(deployment) for deployment in deployments])


def copies_delete(*, pairs: Sequence[tuple[RoutableDeployment, ProviderFileRef]],
                  deadline: Deadline) -> list[ProviderError | None]:
    """Delete each (deployment, copy) at once; for each, None or the error that kept it alive."""
    release_connections()
    def job(deployment: RoutableDeployment, ref: ProviderFileRef) -> Callable[[], ProviderError | None]:
        def run() -> ProviderError | None:
            try:
                copy_delete(deployment=deployment, ref=ref, deadline=deadline)
            except ProviderError as error:
                return error
            return None
        return run
    return run_parallel([job(deployment, ref) for deployment, ref in pairs])


def run_parallel(jobs: list[Callable[[], Result]]) -> list[Result]:
    """Run jobs (which never raise) in a bounded pool and return their results in order."""
    if len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_COPIES, len(jobs)),
                            thread_name_prefix="gatehouse-file-copy") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


def deployment_for_copy(deployment_id: str) -> RoutableDeployment | None:
    """The deployment holding a copy, even if disabled since (its credentials are still needed to delete it)."""
    from models_registry.models import Deployment

    found = current_snapshot().by_id.get(deployment_id)
    if found is not None:
        return found
    row = Deployment.objects.filter(id=deployment_id).first()
    return routable_from_row(row) if row is not None else None


def ref_of(copy: ProviderFile) -> ProviderFileRef:
    expires = int(copy.expires_at.timestamp()) if copy.expires_at is not None else None
    return ProviderFileRef(file_id=copy.provider_file_id or None, uri=copy.uri or None,
                           mime_type=copy.mime_type, expires_at=expires)


def ref_fields(ref: ProviderFileRef) -> dict:
    """A `ProviderFileRef` as `ProviderFile` columns."""
    expires = datetime.fromtimestamp(ref.expires_at, UTC) if ref.expires_at is not None else None
    return {"provider_file_id": ref.file_id or "", "uri": ref.uri or "", "mime_type": ref.mime_type,
            "expires_at": expires}


def error_text(error: GatewayError) -> str:
    """What to record about a failure: the code and the message as a client would see it (never secrets:
    provider authentication failures are reported without the provider's text, see `providers.http`)."""
    text = f"{error.code}: {error.message}" if error.code else error.message
    return text[:MAX_ERROR_CHARS]
