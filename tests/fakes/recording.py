"""What every loopback provider fake shares: a quiet HTTP/1.1 handler that records each request.

A fake answers in its provider's wire format; how a request arrives and is kept for the test to
assert on (method, path, query, headers, JSON body or multipart parts, raw bytes) is the same for all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.fakes.multipart import FormPart, form_fields, read_multipart


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict | None
    raw: bytes  # empty for a multipart body larger than the fake keeps
    form: list[FormPart] | None = None  # the parts of a multipart body, in order


class RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY every answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        return

    def handle_one_request(self):
        # The gateway hanging up on a slow answer (a timeout test) is expected, not an error to print.
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def read_request(self, fake, *, multipart: bool = True) -> RecordedRequest:
        """Read the body (JSON, or multipart parsed as it arrives) and append the record to `fake.requests`.

        A malformed multipart body raises `MultipartError` before anything is recorded; the fake answers
        it in its own error format.
        """
        length = int(self.headers.get("Content-Length") or 0)
        parts = urlsplit(self.path)
        form = None
        if multipart and (self.headers.get("Content-Type") or "").startswith("multipart/form-data"):
            form, raw = read_multipart(self.rfile, length, self.headers["Content-Type"], fake.keep_file_bytes)
            body = form_fields(form)
        else:
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
        record = RecordedRequest(self.command, parts.path, parse_qs(parts.query),
                                 {key.lower(): value for key, value in self.headers.items()}, body, raw, form)
        with fake.lock:
            fake.requests.append(record)
        return record
