"""Managed files of purpose `batch`: checked line by line at upload, copied rewritten to the deployments
that read them.

A batch input names a model group in every line's `body.model`; a provider running the batch needs
its own model (or Azure deployment) name there instead. So a batch input is refused at upload when
any line is wrong (nothing stored, nothing copied), and each deployment that runs batches natively
from a file it holds (`models_registry.batch_engines.reads_batch_file`) gets a copy rewritten for it.
Other deployments get no copy: the gateway's own workers read the stored input. The bytes Gatehouse
keeps, and serves back through `files.content`, stay exactly what the client uploaded.

Both the check and the rewrite stream a line at a time through temporary files: an input may be
hundreds of megabytes.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from files_registry.batch_input import batch_input_check, batch_input_rewrite, batch_requests
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile
from files_registry.storage import stored_bytes_open
from keys.access import check_model_access
from keys.principal import Caller
from models_registry.batch_engines import reads_batch_file
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.errors import InvalidRequestError, PermissionDeniedError

# Problems quoted in the refusal's message; the count of the rest follows them.
MAX_PROBLEMS_LISTED = 20
MAX_NAME_CHARS = 64
# A rewritten copy stays in memory up to this size, then spills to a temporary file on disk.
REWRITE_SPOOL_BYTES = 1024 * 1024


def is_batch_input(purpose: str) -> bool:
    return purpose == FilePurpose.BATCH


def copy_wanted(deployment: RoutableDeployment, purpose: str) -> bool:
    """Whether a deployment of a named group gets its own copy of a file of this purpose at upload.

    Any file-capable deployment for ordinary files; for batch inputs only those that run batches
    natively from a file (OpenAI, Azure), since every other engine reads Gatehouse's stored bytes.
    """
    if not deployment.adapter.supports_files:
        return False
    return reads_batch_file(deployment) if is_batch_input(purpose) else True


def batch_model_problem(*, caller: Caller, target_groups: list[str]) -> Callable[[str], str | None]:
    """The judge of a line's `body.model`: why this caller may not name it in this upload, or None.

    The same rules as `target_model_names`: the key's aliases resolve the name, the key and its team
    must allow it, it must be a model group of the gateway; when groups were named at upload, it
    must resolve to one of them (the copies were made for those groups only).
    """
    snapshot = current_snapshot()
    key = caller.key

    def problem(model: str) -> str | None:
        shown = model[:MAX_NAME_CHARS]
        group = key.aliases.get(model, model) if key is not None else model
        if key is not None:
            try:
                check_model_access(key, model, group)
            except PermissionDeniedError as error:
                return error.message
        if not snapshot.group(group):
            return f"model '{shown}' is not a model group of this gateway."
        if target_groups and group not in target_groups:
            named = ", ".join(f"'{name}'" for name in target_groups)
            return f"model '{shown}' is not one of the target_model_names of this upload ({named})."
        return None

    return problem


def batch_upload_check(*, caller: Caller, content: BinaryIO, target_groups: list[str]) -> None:
    """Check every line of an uploaded batch input; raise a 400 (`invalid_batch_input`, param `file`)
    quoting the first problems with their line numbers. Leaves `content` at position 0 for storing."""
    content.seek(0)
    try:
        summary = batch_input_check(content, model_problem=batch_model_problem(caller=caller,
                                                                               target_groups=target_groups))
    finally:
        content.seek(0)
    if summary.ok:
        return
    listed = [problem.message for problem in summary.problems[:MAX_PROBLEMS_LISTED]]
    more = summary.problem_count - len(listed)
    if more > 0:
        listed.append(f"and {more} more problem{'s' if more > 1 else ''}")
    raise InvalidRequestError("; ".join(listed), param="file", code="invalid_batch_input")


@contextmanager
def rewritten_batch_input(managed_file: ManagedFile, *, model: str) -> Iterator[tuple[BinaryIO, int]]:
    """The stored batch input with every line's `body.model` set to `model`, as (handle at 0, size).

    Written a line at a time to a temporary file of the caller's own (copies run in parallel), which
    is gone when the block ends. Raises `batch_input.LineError` for a stored input that is not valid
    (one uploaded before inputs were checked).
    """
    with stored_bytes_open(managed_file.stored_name) as source, \
            tempfile.SpooledTemporaryFile(max_size=REWRITE_SPOOL_BYTES) as rewritten:
        size = batch_input_rewrite(batch_requests(source), rewritten, model=model)
        rewritten.seek(0)
        yield rewritten, size
