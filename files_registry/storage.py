"""Where a managed file's bytes live: Django's storage API under the `managed_files` alias.

Local disk under the state directory by default; any Django storage backend (S3, GCS, Azure Blob via
django-storages) when the operator sets `GATEWAY_FILE_STORAGE` (see settings). Bytes always move in
chunks: a stored name is derived from the Gatehouse id only, never from the user's filename.
"""
from __future__ import annotations

import mimetypes
import re
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import Storage, storages

STORAGE_ALIAS = "managed_files"
DEFAULT_MIME_TYPE = "application/octet-stream"
# Types Python's table does not know, but providers want named (Gemini and Vertex reject a vague type).
EXTRA_MIME_TYPES = {".jsonl": "application/jsonl", ".md": "text/markdown", ".webp": "image/webp"}
MIME_TYPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def file_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def stored_name_for(file_id: str) -> str:
    """`ab/file-ab…`: spread over subdirectories by two characters of the (random) id."""
    return f"{file_id[5:7]}/{file_id}"


def stored_bytes_save(*, name: str, content: BinaryIO) -> str:
    """Store `content` under `name` (the backend may adjust it) and return the name it got.

    An upload Django spooled to a temporary file is moved (or copied chunk by chunk) by the storage:
    the file is never read into memory whole.
    """
    wrapped = content if isinstance(content, File) else File(content)
    return file_storage().save(name, wrapped)


def stored_bytes_open(name: str) -> File:
    """A fresh read handle on the stored bytes, positioned at 0 (one per reader: copies run in parallel)."""
    return file_storage().open(name, "rb")


def stored_bytes_delete(name: str) -> None:
    """Delete the stored bytes; already gone is fine."""
    if name:
        file_storage().delete(name)


def mime_type_for(content_type: str | None, filename: str) -> str:
    """The upload's own content type when it names one, else a guess from the filename's extension."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared != DEFAULT_MIME_TYPE and MIME_TYPE_PATTERN.fullmatch(declared):
        return declared
    lowered = filename.lower()
    for extension, mime_type in EXTRA_MIME_TYPES.items():
        if lowered.endswith(extension):
            return mime_type
    guessed, _ = mimetypes.guess_type(lowered, strict=False)
    return guessed or DEFAULT_MIME_TYPE
