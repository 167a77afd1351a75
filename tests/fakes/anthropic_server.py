"""A real HTTP server on 127.0.0.1 that speaks Anthropic's Messages API wire format.

`POST /v1/messages` answers a message object, or with `"stream": true` Anthropic's event sequence
(`message_start`, `content_block_start`, `ping`, `content_block_delta` with `text_delta` /
`input_json_delta`, `content_block_stop`, `message_delta`, `message_stop`), each frame written
separately. `POST /v1/messages/count_tokens` answers `{"input_tokens": n}`. Errors use Anthropic's
body `{"type": "error", "error": {"type", "message"}}`.

Tests script the next answers (`reply_with`), queue faults (`fail_next`: a status with an Anthropic
error body and headers, a hang, an `error` event mid-stream, a dropped connection mid-stream), and
assert every recorded request (method, path, headers, JSON body).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fakes.openai_server import RecordedRequest

DEFAULT_TEXT = "Hello from the fake Anthropic."
DEFAULT_USAGE = {"input_tokens": 12, "output_tokens": 6}
COUNT_TOKENS = 42


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
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.replies.clear()
        self.json_piece = 8

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


def frame(name: str, payload: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _make_handler(fake: FakeAnthropic):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
            return

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_POST(self):
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
            if fault is not None and fault.kind == "status":
                self._send_json(fault.status, error_body(fault.error_type, fault.message), fault.headers)
                return
            body = body if isinstance(body, dict) else {}
            if parts.path == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": COUNT_TOKENS})
            elif parts.path == "/v1/messages":
                self._messages(body, fault)
            else:
                self._send_json(404, error_body("not_found_error", f"Not found: {parts.path}"))

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
