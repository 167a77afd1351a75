"""A multipart/form-data reader for the loopback fakes, and the file records they keep.

Uploads can be hundreds of megabytes: the reader parses the body as it arrives, in 64 KB pieces,
keeping each part's size and SHA-256 and its bytes only up to a limit, so a large upload costs the
test process (which also runs the gateway under test) little memory.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

KEEP_FILE_BYTES = 64 * 1024 * 1024
TEXT_FIELD_BYTES = 1024 * 1024


@dataclass
class FormPart:
    """One part of a multipart body: its headers (lower-case names), name, filename, and what it held."""

    headers: dict[str, str]
    name: str
    filename: str | None
    size: int = 0
    sha256: str = ""
    data: bytes | None = b""  # None once the part outgrew the fake's `keep_file_bytes`


@dataclass
class StoredFile:
    """A file the fake holds for one account (path prefix)."""

    id: str
    prefix: str
    filename: str
    purpose: str
    content_type: str
    size: int
    sha256: str
    data: bytes | None
    created_at: int


class MultipartError(ValueError):
    pass


def read_multipart(rfile, length: int, content_type: str, keep_bytes: int) -> tuple[list[FormPart], bytes]:
    """Parse a `multipart/form-data` body of `length` bytes as it is read, in 64 KB pieces.

    Returns the parts and the raw body (empty when the body is larger than `keep_bytes`). A file
    part's bytes are kept up to `keep_bytes` (text fields up to 1 MB); size and SHA-256 always.
    Malformed bodies raise `MultipartError`.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not match:
        raise MultipartError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    needle = b"\r\n" + delimiter
    kept_raw = bytearray() if length <= keep_bytes else None
    remaining = length
    buffer = b""

    def fill() -> None:
        nonlocal remaining, buffer
        if remaining <= 0:
            raise MultipartError("multipart body ended early")
        block = rfile.read(min(65536, remaining))
        if not block:
            raise MultipartError("connection closed inside the body")
        remaining -= len(block)
        if kept_raw is not None:
            kept_raw.extend(block)
        buffer += block

    while delimiter not in buffer:
        fill()
    buffer = buffer[buffer.index(delimiter) + len(delimiter):]
    parts: list[FormPart] = []
    while True:
        while len(buffer) < 2:
            fill()
        if buffer.startswith(b"--"):
            break
        if not buffer.startswith(b"\r\n"):
            raise MultipartError("garbage after a boundary")
        buffer = buffer[2:]
        while b"\r\n\r\n" not in buffer:
            fill()
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        part = _form_part(head)
        digest = hashlib.sha256()
        kept = bytearray()
        # Text fields are always kept (a purpose, a name); file parts up to `keep_bytes`.
        limit = keep_bytes if part.filename is not None else max(keep_bytes, TEXT_FIELD_BYTES)

        def add(data: bytes, part=part, digest=digest, kept=kept, limit=limit) -> None:
            part.size += len(data)
            digest.update(data)
            if part.size <= limit:
                kept.extend(data)

        while True:
            cut = buffer.find(needle)
            if cut >= 0:
                add(buffer[:cut])
                buffer = buffer[cut + len(needle):]
                break
            safe = len(buffer) - len(needle)
            if safe > 0:
                add(buffer[:safe])
                buffer = buffer[safe:]
            fill()
        part.sha256 = digest.hexdigest()
        part.data = bytes(kept) if part.size <= limit else None
        parts.append(part)
    while remaining > 0:  # the epilogue, if any
        fill()
        buffer = b""
    return parts, bytes(kept_raw) if kept_raw is not None else b""


def _form_part(head: bytes) -> FormPart:
    headers = {}
    for line in head.decode("utf-8").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition", "")
    name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
    filename = re.search(r'(?:^|;)\s*filename="([^"]*)"', disposition)
    if not disposition.startswith("form-data") or not name:
        raise MultipartError(f"bad part headers: {headers!r}")
    return FormPart(headers=headers, name=name.group(1), filename=filename.group(1) if filename else None)


def form_fields(parts: list[FormPart]) -> dict:
    """A multipart body as a JSON-like summary: text fields as strings, files as their metadata."""
    summary: dict = {}
    for part in parts:
        if part.filename is None:
            summary[part.name] = (part.data or b"").decode("utf-8", "replace")
        else:
            summary[part.name] = {"filename": part.filename, "content_type": part.headers.get("content-type"),
                                  "bytes": part.size, "sha256": part.sha256}
    return summary
