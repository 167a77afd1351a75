"""Streams under stress: an upstream that breaks mid-way, a client that hangs up, and 200 at once."""
from __future__ import annotations

import asyncio
import time
import uuid

import openai
import orjson
import pytest
import requests
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from tests.e2e.conftest import STREAM_CHUNK_INTERVAL_MS, STREAM_CHUNKS
from tests.e2e.helpers import AUTH, only_request, post_json, sse_frames
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "stream please"}]
BROKEN = {"message": "The upstream stream ended before it was complete.", "type": "api_error", "param": None,
          "code": "upstream_connection_error"}
CONCURRENT_STREAMS = 200


def test_upstream_break_mid_stream_ends_with_an_error_event_in_the_sdk(client, fake_a):
    fake_a.fail_next(kind="stream_break", after_chunks=3)

    stream = client.chat.completions.create(model="gpt-fake", messages=USER, stream=True)
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)

    # The role chunk and two content chunks arrived before the break, then one error event.
    assert [chunk.choices[0].delta.content for chunk in received] == ["", "tok0 ", "tok1 "]
    assert caught.value.message == BROKEN["message"]
    assert caught.value.body == BROKEN
    assert caught.value.code == "upstream_connection_error"
    assert len(fake_a.requests) == 1  # a stream that already started is never retried


def test_upstream_break_mid_stream_on_the_wire(gateway, fake_a):
    fake_a.fail_next(kind="stream_break", after_chunks=2)

    response = post_json(f"{gateway.v1}/chat/completions", {"model": "gpt-fake", "messages": USER, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    frames = sse_frames(response)
    assert [orjson.loads(frame)["choices"][0]["delta"] for frame in frames[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "tok0 "}]
    assert orjson.loads(frames[-1]) == {"error": BROKEN}
    assert b"[DONE]" not in response.content


def test_client_disconnect_mid_stream_closes_the_upstream_call(gateway, fake_a):
    fake_a.stream_chunks = 200
    fake_a.stream_interval = 0.02  # four seconds of stream if nobody hangs up

    response = requests.post(f"{gateway.v1}/chat/completions", headers=AUTH, stream=True, timeout=10,
                             json={"model": "gpt-fake", "messages": USER, "stream": True})
    assert response.status_code == 200
    frames = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            frames.append(orjson.loads(line[len(b"data: "):]))
        if len(frames) == 3:
            break
    response.close()

    assert [frame["choices"][0]["delta"].get("content") for frame in frames] == ["", "tok0 ", "tok1 "]
    assert wait_until(lambda: fake_a.disconnects == 1, seconds=5)
    assert fake_a.completed_streams == 0
    assert len(fake_a.requests) == 1
    # The gateway is still healthy and serving.
    assert requests.get(f"{gateway.url}/health/liveliness", timeout=5).status_code == 200


def test_concurrent_streams_complete_intact_and_never_cross(gateway):
    prompts = [f"prompt-{index:03d}-{uuid.uuid4().hex}" for index in range(CONCURRENT_STREAMS)]

    async def one(sdk: AsyncOpenAI, prompt: str) -> tuple[list[str], set[str], list]:
        stream = await sdk.chat.completions.create(model="mock-stream", stream=True,
                                                   messages=[{"role": "user", "content": prompt}])
        pieces, ids, finishes = [], set(), []
        async for chunk in stream:
            ids.add(chunk.id)
            pieces.append(chunk.choices[0].delta.content or "")
            finishes.append(chunk.choices[0].finish_reason)
        return pieces, ids, finishes

    async def all_streams():
        async with AsyncOpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as sdk:
            return await asyncio.wait_for(asyncio.gather(*(one(sdk, prompt) for prompt in prompts)), timeout=60)

    started = time.monotonic()
    results = asyncio.run(all_streams())
    elapsed = time.monotonic() - started

    assert len(results) == CONCURRENT_STREAMS
    # One after another they would take 200 x 8 x 20 ms = 32 s: the streams really ran side by side.
    assert elapsed < CONCURRENT_STREAMS * STREAM_CHUNKS * STREAM_CHUNK_INTERVAL_MS / 1000 / 2
    seen_ids: set[str] = set()
    for prompt, (pieces, ids, finishes) in zip(prompts, results, strict=True):
        assert "".join(pieces) == f"This is a mock response to: {prompt}"
        # The role chunk, the configured number of content chunks, the finish chunk.
        assert len(pieces) == STREAM_CHUNKS + 2
        assert finishes == [None] * (STREAM_CHUNKS + 1) + ["stop"]
        assert len(ids) == 1
        seen_ids |= ids
    assert len(seen_ids) == CONCURRENT_STREAMS


def test_stream_accepts_an_event_stream_accept_header(gateway, fake_a):
    response = post_json(f"{gateway.url}/chat/completions", {"model": "gpt-fake", "messages": USER, "stream": True},
                         headers={"Accept": "text/event-stream"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    frames = sse_frames(response)
    assert frames[-1] == b"[DONE]"
    assert "".join(orjson.loads(frame)["choices"][0]["delta"].get("content") or ""
                   for frame in frames[:-1]) == "tok0 tok1 tok2 tok3 tok4 "
    assert only_request(fake_a).body["stream"] is True
