"""A real HTTP server on 127.0.0.1 that speaks OpenAI's (and Azure OpenAI's) wire format.

Tests point deployments at it and then assert what reached it. Behaviour is scripted per test:
queue faults (`fail_next`), slow it down (everything, or only paths containing a fragment, so that
deployments told apart by a path prefix answer at different speeds), make streams long or slow, or
make it hang. Every request is recorded with its method, path, query, headers and JSON body.

Files: OpenAI's `POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`, `GET /v1/files/{id}/content` and
Azure's `/openai/files?api-version=...` equivalents. Uploads are read as they arrive (a streaming
multipart reader, so a 200 MB upload costs the test process little): each part's headers, size and
SHA-256 are recorded, and the bytes are kept up to `keep_file_bytes`. Every path prefix (`/v1`,
`/a/v1`, `/openai`) is its own account: a file uploaded under one is unknown under another. A chat
that quotes a `file_id` this account does not hold is refused, as OpenAI refuses it.

Batches: OpenAI's `/v1/batches` and Azure's `/openai/batches` (see `tests.fakes.openai_batches`), run
by the same chat, completions and embeddings answers as direct calls.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.fakes.multipart import (
    KEEP_FILE_BYTES,
    MultipartError,
    StoredFile,
)
from tests.fakes.openai_answers import (
    CHAT_USAGE,
    chat_completion,
    chat_message,
    embeddings_list,
    text_completion,
)
from tests.fakes.openai_batches import BATCHES_ROUTE, DEFAULT_BATCH_PLAN, FakeBatch, handle_batches
from tests.fakes.recording import RecordedRequest, RecordingHandler


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by the next matching request.

    kind: "status" (answer `status` with `body`/`headers`), "hang" (sleep `seconds` before answering
    normally), "reset" (close the socket without answering), "stream_break" (stream `after_chunks`
    chunks then drop the connection), "malformed" (200 with a non-JSON body), "no_done" (stream every
    chunk, then close the connection without the final `data: [DONE]`), "cut" (a file's content:
    announce its whole length, send its first `after_chunks` lines, then drop the connection).
    """

    kind: str = "status"
    status: int = 500
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_chunks: int = 1
    path_contains: str = ""


OPENAI_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
AZURE_PURPOSES = ("assistants", "batch", "fine-tune")
FILES_ROUTE = re.compile(r"^(?P<prefix>.*)/files(?:/(?P<file_id>[^/]+)(?P<content>/content)?)?$")


class FakeOpenAI:
    """The fake provider. `url` is its base URL (`http://127.0.0.1:<port>`); OpenAI routes live under `/v1`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.stream_chunks = 5
        self.stream_interval = 0.0
        self.latency = 0.0
        self.path_latency: dict[str, float] = {}  # path fragment -> extra seconds before answering
        self.reply = "Hello from the fake provider."
        self.disconnects = 0  # streams whose client (the gateway) hung up before the end
        self.completed_streams = 0
        self.embedding_dimensions = 8
        self.connections = 0  # TCP connections accepted (a pooled client reuses one for sequential calls)
        self.gzip_responses = False  # gzip every body when the client's Accept-Encoding allows it
        self.files: dict[str, StoredFile] = {}
        self.keep_file_bytes = KEEP_FILE_BYTES
        self.max_file_bytes: int | None = None  # uploads larger than this get OpenAI's 413
        self.validate_file_ids = True  # a chat quoting a file this account does not hold gets a 400
        self.batches: dict[str, FakeBatch] = {}
        self.batch_plan: list[str] = list(DEFAULT_BATCH_PLAN)  # statuses shown by create, then each retrieve
        self.batch_models: set[str] | None = None  # models a batch line may name (None: any)
        self.batch_errors: list[dict] | None = None  # errors.data of a batch whose plan ends in `failed`
        self.batch_lines_done: int | None = None  # lines done when a batch expires or is cancelled (None: half)
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- scripting ------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
        self.stream_chunks = 5
        self.stream_interval = 0.0
        self.latency = 0.0
        self.path_latency = {}
        self.reply = "Hello from the fake provider."
        self.disconnects = 0
        self.completed_streams = 0
        self.embedding_dimensions = 8
        self.connections = 0
        self.gzip_responses = False
        with self.lock:
            self.files.clear()
        self.keep_file_bytes = KEEP_FILE_BYTES
        self.max_file_bytes = None
        self.validate_file_ids = True
        with self.lock:
            self.batches.clear()
        self.batch_plan = list(DEFAULT_BATCH_PLAN)
        self.batch_models = None
        self.batch_errors = None
        self.batch_lines_done = None

    def files_under(self, prefix: str) -> list[StoredFile]:
        """The files one account holds (`"/v1"` for OpenAI at `<url>/v1`, `"/openai"` for Azure)."""
        with self.lock:
            return [stored for stored in self.files.values() if stored.prefix == prefix]

    def fail_next(self, count: int = 1, **fault) -> None:
        with self.lock:
            self.faults.extend(Fault(**fault) for _ in range(count))

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.path_contains in path:
                    return self.faults.pop(index)
        return None

    def latency_for(self, path: str) -> float:
        """Seconds to wait before answering `path`: the global latency plus that of every matching fragment."""
        return self.latency + sum(seconds for fragment, seconds in list(self.path_latency.items())
                                  if fragment in path)

    def requests_to(self, fragment: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if fragment in r.path]

    def batches_under(self, prefix: str) -> list[FakeBatch]:
        """The batches one account holds, oldest first."""
        with self.lock:
            return [batch for batch in self.batches.values() if batch.prefix == prefix]

    def answer(self, url: str, body: dict) -> dict:
        """What a direct, non-streamed call to `url` (`/v1/chat/completions`, ...) would answer (batch lines)."""
        if url.endswith("/chat/completions"):
            return chat_completion(self, body)
        if url.endswith("/completions"):
            return text_completion(self, body)
        return embeddings_list(self, body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _file_object(stored: StoredFile, azure: bool) -> dict:
    """A file as OpenAI (or Azure, which has no `expires_at`) describes it."""
    described = {"id": stored.id, "object": "file", "bytes": stored.size, "created_at": stored.created_at,
                 "filename": stored.filename, "purpose": stored.purpose, "status": "processed"}
    if not azure:
        described.update({"expires_at": None, "status_details": None})
    return described


def _gzip(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(payload) + compressor.flush()


def _make_handler(fake: FakeOpenAI):
    class Handler(RecordingHandler):
        def setup(self):
            super().setup()
            with fake.lock:
                fake.connections += 1

        def _gzip_allowed(self) -> bool:
            return fake.gzip_responses and "gzip" in (self.headers.get("Accept-Encoding") or "")

        def do_GET(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def do_DELETE(self):
            self._handle()

        # -- plumbing -------------------------------------------------------------------
        def _handle(self):
            try:
                record = self.read_request(fake)
            except MultipartError as error:
                self.close_connection = True
                self._send_json(400, {"error": {"message": f"Malformed multipart body: {error}",
                                                "type": "invalid_request_error", "param": None, "code": None}})
                return
            parts = urlsplit(self.path)
            body = record.body
            fault = fake.take_fault(parts.path)
            if fault is not None and fault.kind == "hang":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "reset":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.connection.close()
                return
            if fault is not None and fault.kind == "status":
                payload = fault.body if fault.body is not None else {
                    "error": {"message": f"fake failure {fault.status}", "type": "server_error", "param": None,
                              "code": None}}
                self._send_json(fault.status, payload, fault.headers)
                return
            if fault is not None and fault.kind == "malformed":
                self._send_raw(200, b"{this is not json", "application/json")
                return
            latency = fake.latency_for(parts.path)
            if latency:
                time.sleep(latency)
            path = parts.path
            body = body or {}
            files_route = FILES_ROUTE.match(path)
            batches_route = BATCHES_ROUTE.match(path)
            if files_route is not None:
                self._files(files_route, record, fault)
            elif batches_route is not None:
                handle_batches(self, fake, batches_route, body)
            elif path.endswith("/chat/completions"):
                if not self._file_ids_known(path, body):
                    return
                self._chat(body, fault)
            elif path.endswith("/completions"):
                self._completion(body, fault)
            elif path.endswith("/embeddings"):
                self._embeddings(body)
            elif path.endswith("/moderations"):
                self._moderations(body)
            else:
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                                "param": None, "code": None}})

        def _send_raw(self, status: int, payload: bytes, content_type: str, headers: dict | None = None):
            gzipped = self._gzip_allowed()
            if gzipped:
                payload = _gzip(payload)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _send_json(self, status: int, payload, headers: dict | None = None):
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self._send_raw(status, data, "application/json", headers)

        def _stream(self, events: list[dict], fault: Fault | None):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            compressor = zlib.compressobj(wbits=31) if self._gzip_allowed() else None
            if compressor is not None:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()

            def write(data: bytes) -> None:
                if compressor is not None:
                    data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
                self.wfile.write(data)
                self.wfile.flush()

            try:
                for index, event in enumerate(events):
                    if fault is not None and fault.kind == "stream_break" and index >= fault.after_chunks:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if index and fake.stream_interval:
                        time.sleep(fake.stream_interval)
                    write(b"data: " + json.dumps(event).encode() + b"\n\n")
                if fault is not None and fault.kind == "no_done":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                write(b"data: [DONE]\n\n")
                if compressor is not None:
                    self.wfile.write(compressor.flush())
                    self.wfile.flush()
                with fake.lock:
                    fake.completed_streams += 1
            except (BrokenPipeError, ConnectionResetError):
                with fake.lock:
                    fake.disconnects += 1
            self.close_connection = True

        # -- files ----------------------------------------------------------------------
        def _files(self, route: re.Match, record: RecordedRequest, fault: Fault | None = None):
            prefix, file_id = route.group("prefix"), route.group("file_id")
            azure = prefix.endswith("/openai")
            if self.command == "POST" and file_id is None:
                self._file_create(prefix, azure, record)
                return
            stored = fake.files.get(file_id or "")
            if file_id is not None and (stored is None or stored.prefix != prefix):
                self._file_missing(file_id, azure)
            elif self.command == "GET" and file_id is None:
                listed = [_file_object(f, azure) for f in fake.files_under(prefix)
                          if f.purpose == (record.query.get("purpose") or [f.purpose])[0]]
                self._send_json(200, {"object": "list", "data": listed, "has_more": False,
                                      "first_id": listed[0]["id"] if listed else None,
                                      "last_id": listed[-1]["id"] if listed else None})
            elif self.command == "GET" and route.group("content") and fault is not None and fault.kind == "cut":
                data = stored.data or b""
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(b"".join(data.splitlines(keepends=True)[: fault.after_chunks]))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            elif self.command == "GET" and route.group("content"):
                self._send_raw(200, stored.data or b"", "application/octet-stream")
            elif self.command == "GET":
                self._send_json(200, _file_object(stored, azure))
            elif self.command == "DELETE" and not route.group("content"):
                with fake.lock:
                    fake.files.pop(stored.id, None)
                self._send_json(200, {"id": stored.id, "object": "file", "deleted": True})
            else:
                self._send_json(405, {"error": {"message": f"{self.command} is not allowed here.",
                                                "type": "invalid_request_error", "param": None, "code": None}})

        def _file_create(self, prefix: str, azure: bool, record: RecordedRequest):
            fields = record.body if record.form is not None else {}
            purposes = AZURE_PURPOSES if azure else OPENAI_PURPOSES
            uploads = [part for part in record.form or [] if part.name == "file" and part.filename is not None]
            if not isinstance(fields.get("purpose"), str):
                self._invalid("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
            elif not uploads:
                self._invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter")
            elif fields["purpose"] not in purposes:
                self._invalid(f"'{fields['purpose']}' is not one of {list(purposes)} - 'purpose'", "purpose", None)
            elif fake.max_file_bytes is not None and uploads[0].size > fake.max_file_bytes:
                self._send_json(413, {"error": {"message": "File is too large.", "type": "invalid_request_error",
                                                "param": "file", "code": "file_too_large"}})
            else:
                upload = uploads[0]
                stored = StoredFile(id=f"file-{uuid.uuid4().hex[:24]}", prefix=prefix, filename=upload.filename,
                                    purpose=fields["purpose"],
                                    content_type=upload.headers.get("content-type", "application/octet-stream"),
                                    size=upload.size, sha256=upload.sha256, data=upload.data,
                                    created_at=int(time.time()))
                with fake.lock:
                    fake.files[stored.id] = stored
                # Azure answers 201 Created for a new file, OpenAI 200.
                self._send_json(201 if azure else 200, _file_object(stored, azure))

        def _file_missing(self, file_id: str, azure: bool):
            if azure:
                self._send_json(404, {"error": {"code": "NotFound",
                                                "message": f"File with id '{file_id}' was not found."}})
            else:
                self._send_json(404, {"error": {"message": f"No such File object: {file_id}",
                                                "type": "invalid_request_error", "param": "id", "code": None}})

        def _invalid(self, message: str, param: str | None, code: str | None):
            self._send_json(400, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                            "code": code}})

        def _file_ids_known(self, path: str, body: dict) -> bool:
            """Refuse, as OpenAI does, a chat quoting a file this account (path prefix) does not hold."""
            if not fake.validate_file_ids:
                return True
            prefix = path[: -len("/chat/completions")]
            if "/openai/deployments/" in prefix:
                prefix = prefix.split("/deployments/", 1)[0]
            held = {stored.id for stored in fake.files_under(prefix)}
            for message in body.get("messages") or []:
                content = message.get("content") if isinstance(message, dict) else None
                for part in content if isinstance(content, list) else []:
                    file = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
                    file_id = file.get("file_id") if isinstance(file, dict) else None
                    if file_id is not None and file_id not in held:
                        self._invalid(f"Invalid file id '{file_id}': no such file.", "messages", "invalid_file_id")
                        return False
            return True

        # -- operations -----------------------------------------------------------------
        def _chat(self, body: dict, fault: Fault | None):
            model = body.get("model", "unknown")
            completion_id = f"chatcmpl-fake-{uuid.uuid4().hex[:12]}"
            usage = dict(CHAT_USAGE)
            message, finish = chat_message(fake, body)
            if not body.get("stream"):
                self._send_json(200, chat_completion(fake, body, completion_id))
                return
            base = {"id": completion_id, "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None}]}]
            if finish == "tool_calls":
                call = message["tool_calls"][0]
                events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "id": call["id"], "type": "function",
                     "function": {"name": call["function"]["name"], "arguments": ""}}]}, "finish_reason": None}]})
                events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}, "finish_reason": None}]})
            else:
                for index in range(fake.stream_chunks):
                    events.append({**base, "choices": [{"index": 0, "delta": {"content": f"tok{index} "},
                                                        "finish_reason": None}]})
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**base, "choices": [], "usage": usage})
            self._stream(events, fault)

        def _completion(self, body: dict, fault: Fault | None):
            model = body.get("model", "unknown")
            base = {"id": f"cmpl-fake-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": 1700000000,
                    "model": model}
            if not body.get("stream"):
                self._send_json(200, text_completion(fake, body))
                return
            events = [{**base, "choices": [{"index": 0, "text": f"tok{i} ", "finish_reason": None, "logprobs": None}]}
                      for i in range(fake.stream_chunks)]
            events.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
            self._stream(events, fault)

        def _embeddings(self, body: dict):
            self._send_json(200, embeddings_list(fake, body))

        def _moderations(self, body: dict):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            categories = ["harassment", "hate", "self-harm", "sexual", "violence"]
            results = [{"flagged": "kill" in str(text), "categories": {c: c == "violence" and "kill" in str(text)
                                                                          for c in categories},
                        "category_scores": {c: 0.01 for c in categories},
                        "category_applied_input_types": {c: ["text"] for c in categories}} for text in inputs]
            self._send_json(200, {"id": "modr-fake", "model": body.get("model"), "results": results})

    return Handler
