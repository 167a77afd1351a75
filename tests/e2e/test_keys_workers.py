"""Two gunicorn workers sharing Redis: a key limited to N requests a minute gets N through in all, not N per
worker; a block or a model change made through either worker is enforced by both within a second."""
from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.e2e.helpers import key_issue as issue
from tests.e2e.helpers import post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/13"
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    params = {"api_base": f"{upstream.url}/v1", "api_key": "sk-upstream-workers"}
    config = {
        "model_list": [
            {"model_name": "gpt-fake", "litellm_params": {"model": "openai/gpt-4o-mini", **params}},
            {"model_name": "other-fake", "litellm_params": {"model": "openai/gpt-4o", **params}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    gateway = start_gateway(tmp_path_factory.mktemp("two-workers"), config, workers=2, env={"REDIS_URL": REDIS_URL})
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def _reset_upstream(upstream) -> None:
    upstream.reset()


def call(gateway: GatewayProcess, key: str, model: str = "gpt-fake") -> requests.Response:
    # A new connection per call, so the kernel hands calls to either worker.
    return requests.post(f"{gateway.v1}/chat/completions", json={**CHAT, "model": model}, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"})


def burst(gateway: GatewayProcess, key: str, count: int, model: str = "gpt-fake") -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(gateway, key, model), range(count)))


def worker_of(response: requests.Response) -> str:
    """Request ids carry a per-process random prefix: it tells which worker answered."""
    return response.headers["x-request-id"][4:20]


def warm_both_workers(gateway: GatewayProcess, key: str, upstream: FakeOpenAI) -> None:
    """Make both workers serve (and cache) `key`; fail if the two could not be told apart."""
    upstream.latency = 0.1  # calls overlap, so both workers accept some
    seen: set[str] = set()
    try:
        for _ in range(10):
            seen |= {worker_of(response) for response in burst(gateway, key, 8) if response.status_code == 200}
            if len(seen) == 2:
                return
    finally:
        upstream.latency = 0.0
    pytest.fail(f"calls reached {len(seen)} worker(s) only")




def test_an_rpm_limit_holds_across_both_workers(two_workers, upstream):
    warm_both_workers(two_workers, issue(two_workers)["key"], upstream)
    if time.time() % 60 > 50:  # the whole burst must fall in one fixed minute
        time.sleep(60 - time.time() % 60 + 0.05)
    limited = issue(two_workers, rpm_limit=5, key_alias="shared-rpm")
    upstream.reset()
    upstream.latency = 0.05
    try:
        statuses = sorted(response.status_code for response in burst(two_workers, limited["key"], 16))
    finally:
        upstream.latency = 0.0
    assert statuses == [200] * 5 + [429] * 11
    assert len(upstream.requests) == 5


def test_a_block_reaches_both_workers_within_a_second(two_workers, upstream):
    issued = issue(two_workers)
    warm_both_workers(two_workers, issued["key"], upstream)
    assert post_json(f"{two_workers.url}/key/block", {"key": issued["token"]}).status_code == 200
    time.sleep(1.0)
    upstream.reset()
    statuses = {response.status_code for response in burst(two_workers, issued["key"], 12)}
    assert statuses == {401}
    assert upstream.requests == []


def test_a_model_change_reaches_both_workers_within_a_second(two_workers, upstream):
    issued = issue(two_workers, models=["gpt-fake", "other-fake"])
    warm_both_workers(two_workers, issued["key"], upstream)
    response = post_json(f"{two_workers.url}/key/update", {"key": issued["token"], "models": ["other-fake"]})
    assert response.status_code == 200
    time.sleep(1.0)
    upstream.reset()
    refused = burst(two_workers, issued["key"], 12)
    assert {response.status_code for response in refused} == {403}
    assert {response.json()["error"]["type"] for response in refused} == {"key_model_access_denied"}
    assert {response.status_code for response in burst(two_workers, issued["key"], 6, "other-fake")} == {200}
    assert all(request.body["model"] == "gpt-4o" for request in upstream.requests)
