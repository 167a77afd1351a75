"""A settled batch's output and error files, written from its line results in input order.

Each `BatchLineResult` already holds its output line exactly as the file must read; writing a file is
streaming those rows (`.iterator()`, a chunk at a time: a batch may hold 50,000 lines) into a
temporary file, then storing it as a managed file owned by the batch's owner, so `files.content`
serves it like any other. No lines of a kind, no file: the batch's `output_file_id` or
`error_file_id` stays null, as with OpenAI.
"""
from __future__ import annotations

import tempfile

from batches.models import Batch, BatchLineResult
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile
from files_registry.services import managed_file_create

OUTPUT_MIME_TYPE = "application/jsonl"
ROWS_PER_CHUNK = 2000


def output_files_write(batch: Batch) -> tuple[ManagedFile | None, ManagedFile | None]:
    """(output file, error file) of `batch`, each None when it has no such lines."""
    written = _lines_file(batch, succeeded=True, suffix="output")
    errors = _lines_file(batch, succeeded=False, suffix="error")
    return written, errors


def _lines_file(batch: Batch, *, succeeded: bool, suffix: str) -> ManagedFile | None:
    rows = (BatchLineResult.objects.filter(batch_id=batch.id, succeeded=succeeded).order_by("line")
            .values_list("output", flat=True))
    with tempfile.TemporaryFile() as handle:
        size = 0
        for line in rows.iterator(chunk_size=ROWS_PER_CHUNK):
            data = line.encode() + b"\n"
            handle.write(data)
            size += len(data)
        if size == 0:
            return None
        handle.seek(0)
        return managed_file_create(owner_key_id=batch.owner_key_id, owner_team_id=batch.owner_team_id,
                                   content=handle, size=size, filename=f"{batch.id}_{suffix}.jsonl",
                                   mime_type=OUTPUT_MIME_TYPE, purpose=FilePurpose.BATCH_OUTPUT,
                                   target_model_names=[])
