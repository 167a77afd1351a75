"""A real HTTP server on 127.0.0.1 that speaks Anthropic's Messages API wire format.

`POST /v1/messages` answers a message object, or with `"stream": true` Anthropic's event sequence
(`message_start`, `content_block_start`, `ping`, `content_block_delta` with `text_delta` /
`input_json_delta`, `content_block_stop`, `message_delta`, `message_stop`), each frame written
separately. `POST /v1/messages/count_tokens` answers `{"input_tokens": n}`. Errors use Anthropic's
body `{"type": "error", "error": {"type", "message"}}`.

Files API (beta, as the real one: every call needs `anthropic-beta: files-api-2025-04-14`):
`POST /v1/files` (multipart, read as it arrives), `GET /v1/files`, `GET/DELETE /v1/files/{id}`. A
message quoting a file (`source: {"type": "file", "file_id"}`) needs the beta header too, and the file
must exist.

Message Batches (`/v1/messages/batches`, its cancel and results routes) live in `anthropic_batches.py`
and are reached through `FakeAnthropic.batches`.

Tests script the next answers (`reply_with`), queue faults (`fail_next`: a status with an Anthropic
error body and headers, a hang, an `error` event mid-stream, a dropped connection mid-stream), and
assert every recorded request (method, path, headers, JSON body).
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.fakes.anthropic_batches import FakeMessageBatches
from tests.fakes.multipart import (
    KEEP_FILE_BYTES,
    FormPart,
    MultipartError,
    StoredFile,
)
from tests.fakes.recording import RecordedRequest, RecordingHandler

DEFAULT_TEXT = "Hello from the fake Anthropic."
DEFAULT_USAGE = {"input_tokens": 12, "output_tokens": 6}
COUNT_TOKENS = 42
FILES_BETA = "files-api-2025-04-14"
FILE_ROUTE = re.compile(r"^/v1/files/(?P<file_id>[^/]+)$")


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by the next request whose path contains `path_contains`.

    kind: "status" (answer `status` with an Anthropic error of `error_type`/`message`, plus `headers`),
    "hang" (sleep `seconds`, then answer normally), "stream_error" (stream `after_events` events, then an
    `error` event of `error_type`), "stream_break" (stream `after_events` events, then drop the connection).
    """

    kind: str = "status"
    status: int = 500
    error_type: str = "api_error"
    message: str = "Internal server error"
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_events: int = 1
    path_contains: str = ""


def text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def tool_use_block(tool_id: str, name: str, arguments: dict) -> dict:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}


def error_body(error_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}


class FakeAnthropic:
    """The fake provider. `url` is its base URL (`http://127.0.0.1:<port>`); routes live under `/v1`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.replies: list[dict] = []
        self.lock = threading.Lock()
        self.json_piece = 8  # characters of tool input per `input_json_delta`
        self.message_counter = 0
        self.files: dict[str, StoredFile] = {}
        self.keep_file_bytes = KEEP_FILE_BYTES
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.batches = FakeMessageBatches(base_url=self.url)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.replies.clear()
            self.files.clear()
        self.batches.reset()
        self.json_piece = 8
        self.keep_file_bytes = KEEP_FILE_BYTES

    def reply_with(self, *content: dict, stop_reason: str = "end_turn", usage: dict | None = None) -> None:
        """Queue the next answer: its content blocks, stop reason and usage (the default answer is one text)."""
        with self.lock:
            self.replies.append({"content": list(content), "stop_reason": stop_reason,
                                 "usage": usage or dict(DEFAULT_USAGE)})

    def fail_next(self, count: int = 1, **fault) -> None:
        with self.lock:
            self.faults.extend(Fault(**fault) for _ in range(count))

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.path_contains in path:
                    return self.faults.pop(index)
        return None

    def take_reply(self) -> dict:
        with self.lock:
            self.message_counter += 1
            if self.replies:
                return self.replies.pop(0)
        return {"content": [text_block(DEFAULT_TEXT)], "stop_reason": "end_turn", "usage": dict(DEFAULT_USAGE)}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stream_events(message_id: str, model: str, reply: dict, json_piece: int) -> list[tuple[str, dict]]:
    """The event sequence Anthropic streams for `reply`, in its order and shapes."""
    usage = reply["usage"]
    start_usage = {key: value for key, value in usage.items() if key != "output_tokens"}
    events = [("message_start", {"type": "message_start", "message": {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {**start_usage, "output_tokens": 1}}})]
    for index, block in enumerate(reply["content"]):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [{"type": "text_delta", "text": word if not position else " " + word}
                      for position, word in enumerate(words)]
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            encoded = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": encoded[cut:cut + json_piece]}
                for cut in range(0, len(encoded), json_piece)]
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": opening}))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                   for delta in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": reply["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": usage.get("output_tokens", 0)}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _file_metadata(stored: StoredFile) -> dict:
    created = datetime.fromtimestamp(stored.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return {"type": "file", "id": stored.id, "filename": stored.filename, "mime_type": stored.content_type,
            "size_bytes": stored.size, "created_at": created, "downloadable": False}


def _quoted_file_ids(messages) -> list[str]:
    """The `file_id` of every block (tool results' nested blocks included) whose source is a file."""
    found: list[str] = []

    def walk(blocks) -> None:
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "file":
                found.append(str(source.get("file_id")))
            walk(block.get("content"))

    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            walk(message.get("content"))
    return found


def frame(name: str, payload: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _make_handler(fake: FakeAnthropic):
    class Handler(RecordingHandler):
        def do_POST(self):
            self._handle()

        def do_GET(self):
            self._handle()

        def do_DELETE(self):
            self._handle()

        def _handle(self):
            try:
                record = self.read_request(fake)
            except MultipartError as error:
                self.close_connection = True
                self._send_json(400, error_body("invalid_request_error", f"Malformed multipart body: {error}"))
                return
            parts = urlsplit(self.path)
            body, form = record.body, record.form
            fault = fake.take_fault(parts.path)
            if fault is not None and fault.kind == "hang":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "status":
                self._send_json(fault.status, error_body(fault.error_type, fault.message), fault.headers)
                return
            body = body if isinstance(body, dict) else {}
            if fake.batches.handle(self, self.command, parts.path, body, fake.take_reply):
                return
            route = FILE_ROUTE.match(parts.path)
            if parts.path == "/v1/files" or route is not None:
                self._files(route.group("file_id") if route else None, form)
            elif self.command != "POST":
                self._send_json(405, error_body("invalid_request_error", f"{self.command} is not allowed here."))
            elif parts.path == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": COUNT_TOKENS})
            elif parts.path == "/v1/messages":
                if self._file_sources_ok(body):
                    self._messages(body, fault)
            else:
                self._send_json(404, error_body("not_found_error", f"Not found: {parts.path}"))

        # -- files ----------------------------------------------------------------------
        def _has_files_beta(self) -> bool:
            flags = [flag.strip() for flag in (self.headers.get("anthropic-beta") or "").split(",")]
            return FILES_BETA in flags

        def _files(self, file_id: str | None, form: list[FormPart] | None):
            if not self.headers.get("x-api-key"):
                self._send_json(401, error_body("authentication_error", "x-api-key header is required"))
                return
            if not self._has_files_beta():
                self._send_json(400, error_body("invalid_request_error",
                                                f"The Files API is in beta: send 'anthropic-beta: {FILES_BETA}'."))
                return
            if file_id is None and self.command == "POST":
                uploads = [part for part in form or [] if part.name == "file" and part.filename is not None]
                if len(uploads) != 1 or len(form or []) != 1:
                    self._send_json(400, error_body("invalid_request_error", "Expected exactly one part: 'file'."))
                    return
                upload = uploads[0]
                stored = StoredFile(id=f"file_011C{uuid.uuid4().hex[:20]}", prefix="/v1", filename=upload.filename,
                                    purpose="", content_type=upload.headers.get("content-type", "application/pdf"),
                                    size=upload.size, sha256=upload.sha256, data=upload.data,
                                    created_at=int(time.time()))
                with fake.lock:
                    fake.files[stored.id] = stored
                self._send_json(200, _file_metadata(stored))
                return
            if file_id is None and self.command == "GET":
                listed = [_file_metadata(stored) for stored in list(fake.files.values())]
                self._send_json(200, {"data": listed, "has_more": False,
                                      "first_id": listed[0]["id"] if listed else None,
                                      "last_id": listed[-1]["id"] if listed else None})
                return
            stored = fake.files.get(file_id or "")
            if stored is None:
                self._send_json(404, error_body("not_found_error", f"File not found: {file_id}"))
            elif self.command == "GET":
                self._send_json(200, _file_metadata(stored))
            elif self.command == "DELETE":
                with fake.lock:
                    fake.files.pop(stored.id, None)
                self._send_json(200, {"id": stored.id, "type": "file_deleted"})
            else:
                self._send_json(405, error_body("invalid_request_error", f"{self.command} is not allowed here."))

        def _file_sources_ok(self, body: dict) -> bool:
            """A message quoting a Files API file needs the beta header and a file that exists."""
            quoted = _quoted_file_ids(body.get("messages"))
            if quoted and not self._has_files_beta():
                self._send_json(400, error_body("invalid_request_error",
                                                f"File sources need the beta header 'anthropic-beta: {FILES_BETA}'."))
                return False
            for file_id in quoted:
                if file_id not in fake.files:
                    self._send_json(404, error_body("not_found_error", f"File not found: {file_id}"))
                    return False
            return True

        def _send_json(self, status: int, payload: dict, headers: dict | None = None):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _messages(self, body: dict, fault: Fault | None):
            for required in ("model", "max_tokens", "messages"):
                if required not in body:
                    self._send_json(400, error_body("invalid_request_error", f"{required}: Field required"))
                    return
            reply = fake.take_reply()
            message_id = f"msg_fake_{fake.message_counter:04d}"
            if not body.get("stream"):
                self._send_json(200, {"id": message_id, "type": "message", "role": "assistant",
                                      "model": body["model"], "content": reply["content"],
                                      "stop_reason": reply["stop_reason"], "stop_sequence": None,
                                      "usage": reply["usage"]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            events = stream_events(message_id, body["model"], reply, fake.json_piece)
            try:
                for index, (name, payload) in enumerate(events):
                    if fault is not None and index >= fault.after_events:
                        if fault.kind == "stream_error":
                            self.wfile.write(frame("error", error_body(fault.error_type, fault.message)))
                            self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        break
                    self.wfile.write(frame(name, payload))
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Handler
