"""The production router through a real gateway with two gunicorn workers sharing Redis: a deployment's
rpm and a group's cooldown hold across both workers; refusals of their own kind fall back; the
retry/fallback headers LiteLLM scripts read. Clients are the official OpenAI SDK and `requests`.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import redis

from tests.e2e.helpers import post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, start_gateway

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/12"
USER = [{"role": "user", "content": "route me"}]
RPM = 4
COOLDOWN_SECONDS = 2


def _entry(group: str, fake: FakeOpenAI, prefix: str, **params) -> dict:
    return {"model_name": group, "model_info": {"id": prefix},
            "litellm_params": {"model": f"openai/{prefix}-model", "api_base": f"{fake.url}/{prefix}/v1",
                               "api_key": f"sk-{prefix}", **params}}


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake):
    redis.Redis.from_url(REDIS_URL).flushdb()
    config = {
        "model_list": [
            _entry("limited", fake, "lim", rpm=RPM, order=1),
            _entry("limited", fake, "overflow", order=2),
            _entry("cool", fake, "cool1", order=1),
            _entry("cool", fake, "cool2", order=2),
            _entry("pair", fake, "p1"),
            _entry("pair", fake, "p2"),
            _entry("duo", fake, "d1"),
            _entry("duo", fake, "d2"),
            _entry("primary", fake, "prim"),
            _entry("large", fake, "large"),
            _entry("lenient", fake, "lenient"),
        ],
        "router_settings": {"num_retries": 2, "allowed_fails": 3, "cooldown_time": COOLDOWN_SECONDS,
                            "context_window_fallbacks": [{"primary": ["large"]}],
                            "content_policy_fallbacks": [{"primary": ["lenient"]}]},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("routing"), config, workers=2, env={"REDIS_URL": REDIS_URL})
    yield process
    process.stop()
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def _reset_fake(fake):
    fake.reset()


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def _worker(request_id: str) -> str:
    """Request ids start with a random prefix drawn per worker process (`req_<16 hex><counter>`)."""
    return request_id[4:20]


def _prefixes(fake: FakeOpenAI) -> Counter:
    return Counter(request.path.split("/")[1] for request in fake.requests)


def test_a_deployments_rpm_holds_across_two_workers(gateway, fake):
    if time.time() % 60 > 50:  # the burst must fit in one rpm window
        time.sleep(60.5 - time.time() % 60)
    served_by_worker: Counter = Counter()
    answered: Counter = Counter()

    def call(_):
        response = post_json(f"{gateway.v1}/chat/completions", {"model": "limited", "messages": USER},
                             headers={"Connection": "close"})  # a new connection each time: both workers accept
        assert response.status_code == 200, response.text
        return _worker(response.headers["x-request-id"]), response.headers["x-gatehouse-deployment-id"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        for _ in range(5):  # until each worker has served enough to have let RPM through on its own
            for worker, deployment in pool.map(call, range(20)):
                served_by_worker[worker] += 1
                answered[deployment] += 1
            if len(served_by_worker) == 2 and min(served_by_worker.values()) > RPM:
                break

    assert len(served_by_worker) == 2 and min(served_by_worker.values()) > RPM, served_by_worker
    # Each worker alone would have let RPM through; together they let RPM through.
    assert answered["lim"] == RPM
    assert _prefixes(fake) == answered


def test_a_cooldown_started_on_one_worker_holds_on_both_then_ends(gateway, fake):
    fake.fail_next(status=401, path_contains="/cool1/")
    fake.fail_next(status=401, path_contains="/cool2/")
    first = post_json(f"{gateway.v1}/chat/completions", {"model": "cool", "messages": USER})
    assert first.status_code == 502  # both deployments refused their credentials: both now cool down
    refusals: Counter = Counter()

    def call(_):
        return post_json(f"{gateway.v1}/chat/completions", {"model": "cool", "messages": USER},
                         headers={"Connection": "close"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        for response in pool.map(call, range(16)):
            refusals[(response.status_code, response.headers.get("Retry-After"))] += 1
            assert response.json()["error"]["code"] == "no_deployment_available"

    assert set(refusals) <= {(429, "1"), (429, "2")}
    assert sum(refusals.values()) == 16
    assert _prefixes(fake) == {"cool1": 1, "cool2": 1}  # nothing was sent while the group cooled down

    time.sleep(COOLDOWN_SECONDS + 0.1)
    back = post_json(f"{gateway.v1}/chat/completions", {"model": "cool", "messages": USER})
    assert (back.status_code, back.headers["x-gatehouse-deployment-id"]) == (200, "cool1")


def test_all_cooling_reaches_the_sdk_as_a_rate_limit_error_with_retry_after(client, fake):
    fake.fail_next(status=429, headers={"Retry-After": "2"}, path_contains="/p1/")
    fake.fail_next(status=429, headers={"Retry-After": "2"}, path_contains="/p2/")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="pair", messages=USER)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="pair", messages=USER)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] in ("1", "2")
    assert caught.value.body == {
        "message": "No deployment of `pair` can take this request now: all 2 deployments are cooling down after "
                   f"failures. Try again in {caught.value.response.headers['retry-after']} seconds.",
        "type": "rate_limit_error", "param": None, "code": "no_deployment_available"}
    assert sum(_prefixes(fake).values()) == 2


def test_retry_and_fallback_headers_for_litellm_scripts(client, fake):
    fake.fail_next(status=500, path_contains="/chat/completions")

    retried = client.chat.completions.with_raw_response.create(model="duo", messages=USER)

    assert retried.status_code == 200
    assert {name: retried.headers[name] for name in ("x-gatehouse-attempts", "x-gatehouse-fallbacks",
                                                     "x-litellm-attempted-retries",
                                                     "x-litellm-attempted-fallbacks")} == {
        "x-gatehouse-attempts": "2", "x-gatehouse-fallbacks": "0", "x-litellm-attempted-retries": "1",
        "x-litellm-attempted-fallbacks": "0"}


@pytest.mark.parametrize(("error", "group"), [
    ({"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
      "param": "messages", "code": "context_length_exceeded"}, "large"),
    ({"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error",
      "param": None, "code": "content_policy_violation"}, "lenient"),
], ids=["context-window", "content-policy"])
def test_refusals_fall_back_to_their_own_kind_of_group(client, fake, error, group):
    fake.fail_next(status=400, body={"error": error}, path_contains="/prim/")

    raw = client.chat.completions.with_raw_response.create(model="primary", messages=USER)

    assert raw.parse().model == f"{group}-model"
    assert (raw.headers["x-gatehouse-model-group"], raw.headers["x-litellm-attempted-fallbacks"],
            raw.headers["x-litellm-attempted-retries"]) == (group, "1", "0")
    assert _prefixes(fake) == {"prim": 1, group: 1}
    assert fake.requests[1].body == {"model": f"{group}-model", "messages": USER}


def test_a_refusal_without_a_fallback_of_its_kind_is_the_providers_400(gateway, fake):
    fake.fail_next(status=400, path_contains="/large/", body={"error": {
        "message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error",
        "param": "messages", "code": "context_length_exceeded"}})

    response = post_json(f"{gateway.v1}/chat/completions", {"model": "large", "messages": USER})

    assert response.status_code == 400
    assert response.json() == {"error": {"message": "This model's maximum context length is 128000 tokens.",
                                         "type": "invalid_request_error", "param": "messages",
                                         "code": "context_length_exceeded"}}
    assert _prefixes(fake) == {"large": 1}
