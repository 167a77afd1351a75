"""SIGTERM stops the gateway gracefully: a stream in flight completes in full and the process exits 0."""
from __future__ import annotations

import signal
import time

import orjson
import pytest
import requests

from tests.e2e.helpers import AUTH
from tests.support.server import MASTER_KEY, start_gateway

pytestmark = pytest.mark.e2e

CHUNKS = 20
INTERVAL_MS = 100  # a two-second stream


@pytest.fixture
def own_gateway(tmp_path):
    """A gateway of this test's own, since the test stops it."""
    config = {
        "model_list": [{"model_name": "slow-stream",
                        "litellm_params": {"model": "mock/slow", "mock_chunk_count": CHUNKS,
                                           "mock_chunk_interval_ms": INTERVAL_MS}}],
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path / "graceful", config)
    yield process
    process.stop(timeout=5)


def test_sigterm_lets_the_in_flight_stream_finish_and_exits_zero(own_gateway):
    prompt = "finish what you started, please!"  # 60 characters of reply: 20 chunks of 3
    # `Connection: close`: once the stream is done no idle keep-alive connection holds the worker open
    # (gunicorn's gevent worker waits for those too, up to graceful_timeout).
    response = requests.post(f"{own_gateway.v1}/chat/completions", headers={**AUTH, "Connection": "close"},
                             stream=True, timeout=15,
                             json={"model": "slow-stream", "messages": [{"role": "user", "content": prompt}],
                                   "stream": True})
    assert response.status_code == 200
    lines = response.iter_lines()
    first = next(line for line in lines if line)
    assert orjson.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["role"] == "assistant"

    own_gateway.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    rest = [line.removeprefix(b"data: ") for line in lines if line]
    response.close()

    assert rest[-1] == b"[DONE]"
    chunks = [orjson.loads(data) for data in rest[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == f"This is a mock response to: {prompt}"
    assert len(chunks) == CHUNKS + 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # The stream kept going after the signal (it was not cut short, nor answered before it).
    assert time.monotonic() - signalled > (CHUNKS - 2) * INTERVAL_MS / 1000 * 0.8
    assert own_gateway.process.wait(timeout=15) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{own_gateway.url}/health/liveliness", timeout=2)
