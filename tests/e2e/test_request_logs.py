"""Every request through a real gunicorn server becomes one request log row: 500 in a burst are 500 rows,
written in the background while it runs, and every pending row is written on a graceful stop."""
from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from openai import OpenAI

from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, GatewayProcess, gateway_database_execute, start_gateway

pytestmark = pytest.mark.e2e

BURST = 500
STREAMED_EVERY = 10  # one request in ten is streamed
CONCURRENCY = 16
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def burst_config() -> dict:
    return {
        "model_list": [{"model_name": "mock-chat", "litellm_params": {"model": "mock/mock-gpt"},
                        "model_info": {"id": "mock-chat-1", "input_cost_per_token": 1e-06,
                                       "output_cost_per_token": 2e-06}}],
        "general_settings": {"master_key": MASTER_KEY},
    }


def send_burst(gateway: GatewayProcess, count: int) -> set[str]:
    """`count` chat calls through the SDK, some streamed, `CONCURRENCY` at a time; their request ids."""

    def one(index: int) -> str:
        messages = [{"role": "user", "content": f"request number {index}"}]
        if index % STREAMED_EVERY == 0:
            with sdk.chat.completions.with_streaming_response.create(model="mock-chat", messages=messages,
                                                                     stream=True) as response:
                chunks = list(response.parse())
                assert chunks[-1].choices[0].finish_reason == "stop"
                return response.headers["x-request-id"]
        raw = sdk.chat.completions.with_raw_response.create(model="mock-chat", messages=messages,
                                                           metadata={"burst": str(index)})
        assert raw.parse().choices[0].message.content == f"This is a mock response to: request number {index}"
        return raw.headers["x-request-id"]

    with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as sdk, \
            ThreadPoolExecutor(CONCURRENCY) as pool:
        ids = list(pool.map(one, range(count)))
    assert len(set(ids)) == count
    return set(ids)


def logged_ids(gateway: GatewayProcess) -> list[str]:
    response = requests.get(f"{gateway.url}/spend/logs", params={"limit": 10_000}, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return [entry["request_id"] for entry in response.json()]


def test_a_burst_of_500_requests_is_500_rows_written_while_running(tmp_path):
    gateway = start_gateway(tmp_path / "burst", burst_config(), workers=2)
    try:
        sent = send_burst(gateway, BURST)
        assert wait_until(lambda: len(logged_ids(gateway)) >= BURST, seconds=15, interval=0.25)
        logged = logged_ids(gateway)
        assert len(logged) == BURST
        assert set(logged) == sent

        today = datetime.now(UTC).date().isoformat()
        days = requests.get(f"{gateway.url}/spend/logs", params={"start_date": today, "end_date": today},
                            headers=AUTH, timeout=30).json()
        assert [(day["startTime"], day["requests"], day["errors"]) for day in days] == [(today, BURST, 0)]
        tokens = gateway_database_execute(gateway, "SELECT SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                                                 "FROM keys_requestlog")[0]
        assert days[0]["models"]["mock-chat"] == pytest.approx(tokens[0] * 1e-06 + tokens[1] * 2e-06)
        assert days[0]["spend"] == pytest.approx(tokens[2])
        streamed = gateway_database_execute(gateway, "SELECT COUNT(*) FROM keys_requestlog WHERE streamed "
                                                   "AND time_to_first_token_ms IS NOT NULL AND completion_tokens > 0")
        assert streamed == [(BURST // STREAMED_EVERY,)]
    finally:
        gateway.stop()


def test_a_graceful_stop_writes_every_pending_row(tmp_path):
    """The flush interval is an hour: the rows reach the database through the workers' exit flush."""
    gateway = start_gateway(tmp_path / "stop", burst_config(), workers=2, env={"GATEWAY_LOG_FLUSH_SECONDS": "3600"})
    try:
        sent = send_burst(gateway, BURST)
        # Nothing flushed by time (a worker that alone reached a full batch of 500 could have flushed early).
        assert len(logged_ids(gateway)) < BURST

        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=30) == 0

        rows = gateway_database_execute(gateway, "SELECT request_id, status, model_group, metadata "
                                               "FROM keys_requestlog")
        assert len(rows) == BURST
        assert {row[0] for row in rows} == sent
        assert {(row[1], row[2]) for row in rows} == {("ok", "mock-chat")}
        daily = gateway_database_execute(gateway, "SELECT SUM(requests), SUM(errors) FROM keys_dailyspend")
        assert daily == [(BURST, 0)]
        assert "request log rows could not be written" not in gateway.logs()
    finally:
        gateway.stop()
