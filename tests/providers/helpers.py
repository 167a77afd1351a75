"""Shared builders for the provider tests: targets, the exact headers `requests` adds, a raw SSE server."""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import orjson
import requests

from providers.base import DeploymentTarget, UpstreamStream
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest

UPSTREAM_KEY = "sk-upstream-secret-1234"


def target_for(fake_url: str | None, *, provider: str = "openai", model: str = "gpt-4o-mini",
               api_key: str | None = UPSTREAM_KEY, **fields: Any) -> DeploymentTarget:
    """A deployment pointed at `fake_url` (OpenAI routes live under `/v1`, as on api.openai.com)."""
    api_base = fields.pop("api_base", f"{fake_url}/v1" if fake_url else None)
    return DeploymentTarget(deployment_id=fields.pop("deployment_id", "dep-1"),
                            model_group=fields.pop("model_group", "gateway-group"), provider=provider, model=model,
                            api_base=api_base, api_key=api_key, **fields)


def transport_headers(fake: FakeOpenAI, recorded: RecordedRequest) -> dict[str, str]:
    """The headers every call carries that no adapter chooses: host, the client's defaults, the length."""
    defaults = requests.utils.default_headers()
    return {
        "host": f"127.0.0.1:{fake.port}",
        "user-agent": defaults["User-Agent"],
        "accept-encoding": defaults["Accept-Encoding"],
        "accept": defaults["Accept"],
        "connection": defaults["Connection"],
        "content-length": str(len(recorded.raw)),
    }


def only_request(fake: FakeOpenAI) -> RecordedRequest:
    """The single request the fake received (asserting there was exactly one)."""
    assert len(fake.requests) == 1, [(r.method, r.path) for r in fake.requests]
    return fake.requests[0]


def fake_bytes(payload: Any) -> bytes:
    """A JSON payload serialised the way the fake serialises it (the standard library's `json.dumps`)."""
    return json.dumps(payload).encode()


def drain(stream: UpstreamStream) -> list[bytes]:
    """Every chunk of a stream, closing it afterwards as the relay does."""
    try:
        return list(stream.chunks)
    finally:
        stream.close()


def parsed_chunks(stream: UpstreamStream) -> list[dict]:
    return [orjson.loads(chunk) for chunk in drain(stream)]


class ScriptedServer:
    """A loopback TCP server that answers every connection with `head` then `pieces`, one send each.

    A pause between sends makes each piece arrive in its own socket read, so a test can cut an SSE
    body exactly where it wants (inside a CRLF, between two events, inside a data line). The
    connection is closed after the last piece, which ends a close-delimited body.
    """

    def __init__(self) -> None:
        self.head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        self.pieces: list[bytes] = []
        self.pause = 0.02
        self.received: list[bytes] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def script(self, pieces: list[bytes], *, head: bytes | None = None, pause: float = 0.02) -> None:
        self.pieces = list(pieces)
        self.pause = pause
        if head is not None:
            self.head = head

    def close(self) -> None:
        self.closing = True
        self.listener.close()

    def _serve(self) -> None:
        while not self.closing:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            head, _, body = request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                body += connection.recv(65536)
            self.received.append(request)
            try:
                connection.sendall(self.head)
                for piece in self.pieces:
                    time.sleep(self.pause)
                    connection.sendall(piece)
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                return
