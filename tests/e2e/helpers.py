"""Small assertions shared by the e2e tests."""
from __future__ import annotations

import orjson
import requests

from tests.fakes.openai_server import FakeOpenAI, RecordedRequest
from tests.support.server import MASTER_KEY

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def only_request(fake: FakeOpenAI, fragment: str = "") -> RecordedRequest:
    """The one request `fake` received (whose path contains `fragment`); fails if there were more or none."""
    received = fake.requests_to(fragment)
    assert len(received) == 1, [(r.method, r.path) for r in received]
    assert len(fake.requests) == 1, [(r.method, r.path) for r in fake.requests]
    return received[0]


def envelope(message: str, *, type: str, code: str | None, param: str | None = None) -> dict:  # noqa: A002
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def post_json(url: str, body, *, headers: dict | None = None, **kwargs) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    merged = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    return requests.post(url, data=data, headers=merged, timeout=30, **kwargs)


def key_issue(gateway, **fields) -> dict:
    """`POST /key/generate` with the master key; the answer (its `key` is the plaintext)."""
    response = post_json(f"{gateway.url}/key/generate", fields)
    assert response.status_code == 200, response.text
    return response.json()


def sse_frames(response: requests.Response) -> list[bytes]:
    """The `data:` payloads of a whole SSE body, in order."""
    frames = []
    for event in response.content.split(b"\n\n"):
        if event.strip():
            assert event.startswith(b"data: "), event
            frames.append(event[len(b"data: "):])
    return frames
