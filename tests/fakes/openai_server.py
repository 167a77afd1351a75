"""A real HTTP server on 127.0.0.1 that speaks OpenAI's (and Azure OpenAI's) wire format.

Tests point deployments at it and then assert what reached it. Behaviour is scripted per test:
queue faults (`fail_next`), slow it down (everything, or only paths containing a fragment, so that
deployments told apart by a path prefix answer at different speeds), make streams long or slow, or
make it hang. Every request is recorded with its method, path, query, headers and JSON body.
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict | None
    raw: bytes


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by the next matching request.

    kind: "status" (answer `status` with `body`/`headers`), "hang" (sleep `seconds` before answering
    normally), "reset" (close the socket without answering), "stream_break" (stream `after_chunks`
    chunks then drop the connection), "malformed" (200 with a non-JSON body), "no_done" (stream every
    chunk, then close the connection without the final `data: [DONE]`).
    """

    kind: str = "status"
    status: int = 500
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_chunks: int = 1
    path_contains: str = ""


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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _gzip(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(payload) + compressor.flush()


def _vector(text: str, dimensions: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [struct.unpack("<f", struct.pack("<f", ((seed * (i + 1)) % 97) / 97.0))[0] for i in range(dimensions)]


def _make_handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY every answer waits ~40 ms for
        # the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
            return

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
        def handle_one_request(self):
            # The gateway hanging up on a slow answer (a timeout test) is expected, not an error to print.
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            record = RecordedRequest(self.command, parts.path, parse_qs(parts.query),
                                     {k.lower(): v for k, v in self.headers.items()}, body, raw)
            with fake.lock:
                fake.requests.append(record)
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
            if path.endswith("/chat/completions"):
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

        # -- operations -----------------------------------------------------------------
        def _chat(self, body: dict, fault: Fault | None):
            model = body.get("model", "unknown")
            completion_id = f"chatcmpl-fake-{uuid.uuid4().hex[:12]}"
            tools = body.get("tools") or []
            usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            if tools and body.get("tool_choice") != "none":
                call = {"id": "call_fake_1", "type": "function",
                        "function": {"name": tools[0]["function"]["name"], "arguments": '{"city": "Paris"}'}}
                message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": fake.reply, "refusal": None}
                finish = "stop"
            if not body.get("stream"):
                self._send_json(200, {"id": completion_id, "object": "chat.completion", "created": 1700000000,
                                      "model": model, "choices": [{"index": 0, "message": message,
                                                                   "finish_reason": finish, "logprobs": None}],
                                      "usage": usage, "system_fingerprint": "fp_fake"})
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
            usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            if not body.get("stream"):
                self._send_json(200, {**base, "choices": [{"index": 0, "text": " " + fake.reply,
                                                           "finish_reason": "stop", "logprobs": None}], "usage": usage})
                return
            events = [{**base, "choices": [{"index": 0, "text": f"tok{i} ", "finish_reason": None, "logprobs": None}]}
                      for i in range(fake.stream_chunks)]
            events.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
            self._stream(events, fault)

        def _embeddings(self, body: dict):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            data = []
            for index, item in enumerate(inputs):
                vector = _vector(str(item), body.get("dimensions") or fake.embedding_dimensions)
                if body.get("encoding_format") == "base64":
                    encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                    data.append({"object": "embedding", "index": index, "embedding": encoded})
                else:
                    data.append({"object": "embedding", "index": index, "embedding": vector})
            self._send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})

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
