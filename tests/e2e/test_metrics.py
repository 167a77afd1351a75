"""`GET /metrics` on a real gateway with two gunicorn workers and its embedded batch worker (Prometheus
multiprocess mode): exact request, error, token, spend and histogram counts summed over both workers, the
in-flight gauge around a stream the client abandons, a cooldown after an upstream 429, batch lines, the
master-key protection, and counts that survive killed workers. Upstreams are the loopback FakeOpenAI and the
mock provider; cooldowns are shared through Redis, as a several-worker deployment shares them."""
from __future__ import annotations

import math
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import requests
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import envelope, key_issue
from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
# Cooldowns must be seen by whichever worker answers the scrape: the workers share them through Redis.
REDIS_URL = "redis://127.0.0.1:6379/11"
# Deployment ids are unique to this run: the Redis database may hold an earlier run's cooldowns.
RUN = secrets.token_hex(3)
INPUT_PRICE, OUTPUT_PRICE = 2e-06, 8e-06
FAKE_PROMPT, FAKE_COMPLETION = 11, 7  # FakeOpenAI's usage for every chat completion
USER = [{"role": "user", "content": "count me"}]
REFUSAL = {"error": {"message": "Prompt refused by the upstream.", "type": "invalid_request_error",
                     "param": "messages", "code": "prompt_refused"}}
SLOW_LIMIT = 10.0


def dep(name: str) -> str:
    return f"{name}-{RUN}"


def deployment(group: str, name: str, fake: FakeOpenAI, provider: str = "openai") -> dict:
    return {"model_name": group,
            "model_info": {"id": dep(name), "input_cost_per_token": INPUT_PRICE, "output_cost_per_token": OUTPUT_PRICE},
            "litellm_params": {"model": f"{provider}/house-{name}", "api_base": f"{fake.url}/{dep(name)}/v1",
                               "api_key": "sk-upstream-metrics"}}


def scrape(gateway: GatewayProcess, headers: dict | None = None) -> dict[tuple, float]:
    """The page as {(sample name, sorted labels): value}, asserting its status and content type."""
    response = requests.get(f"{gateway.url}/metrics", headers=AUTH if headers is None else headers, timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def sample(samples: dict[tuple, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def key(name: str, **labels: str) -> tuple:
    return name, tuple(sorted(labels.items()))


def settled(gateway: GatewayProcess, expected: dict[tuple, float], seconds: float = 10) -> dict:
    """Scrape until every sample in `expected` (`key(...)`: value) shows its value, floats to 1e-9; the page.

    Each worker writes what it finished at its next tick (every 0.2 s here), one metric after another, so
    a page is read again until all of them agree rather than trusting the first one that moved.
    """
    pages = []

    def shown() -> dict:
        return {name: pages[-1].get(name) for name in expected}

    def reached() -> bool:
        pages.append(scrape(gateway))
        return all(value is not None and math.isclose(value, expected[name], rel_tol=1e-9, abs_tol=1e-12)
                   for name, value in shown().items())

    assert wait_until(reached, seconds=seconds, interval=0.1), shown()
    return pages[-1]


def settles(gateway: GatewayProcess, name: str, expected: float, seconds: float = 10, **labels: str) -> dict:
    """`settled` for one sample."""
    return settled(gateway, {key(name, **labels): expected}, seconds=seconds)


def fresh_client(gateway: GatewayProcess, key: str = MASTER_KEY) -> OpenAI:
    """A client of its own (its own connection), so that successive requests reach either worker."""
    return OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(fake) -> None:
    fake.reset()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    config = {
        "model_list": [
            deployment("counted", "c1", fake),
            deployment("slow", "w1", fake),
            deployment("cooled", "k1", fake),
            deployment("cooled", "k2", fake),
            deployment("kept", "d1", fake),
            deployment("like-batch", "b1", fake, provider="openai_like"),  # no batch API: the gateway runs it
            {"model_name": "mock-batch", "model_info": {"id": dep("m1")},
             "litellm_params": {"model": "mock/mock-m1", "mock_response": "mock answer"}},
        ],
        # No retries: a failure reaches the client as it was, and the 429 cools exactly one deployment.
        "router_settings": {"num_retries": 0, "cooldown_time": 60},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("metrics"), config, workers=2, batch_worker=True,
                            env={"GATEWAY_LOG_FLUSH_SECONDS": "0.2", "REDIS_URL": REDIS_URL,
                                 "GATEWAY_BATCH_SWEEP_SECONDS": "0.5"})
    yield process
    process.stop()


def test_requests_tokens_spend_and_histograms_are_summed_over_both_workers(gateway, fake):
    for _ in range(4):
        with fresh_client(gateway) as client:
            answer = client.chat.completions.create(model="counted", messages=USER)
        assert answer.usage.prompt_tokens == FAKE_PROMPT
    with fresh_client(gateway) as client:
        chunks = list(client.chat.completions.create(model="counted", messages=USER, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == \
        "tok0 tok1 tok2 tok3 tok4 "
    fake.fail_next(2, status=400, body=REFUSAL, path_contains=f"/{dep('c1')}/")
    for _ in range(2):
        with fresh_client(gateway) as client, pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="counted", messages=USER)
    with fresh_client(gateway) as client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"nobody-serves-{RUN}", messages=USER)
    assert len(fake.requests_to(f"/{dep('c1')}/v1/chat/completions")) == 7

    pair = {"model_group": "counted", "deployment": dep("c1")}
    page = settled(gateway, {
        key("gatehouse_requests_total", operation="chat", status="200", **pair): 5,
        key("gatehouse_requests_total", operation="chat", status="400", **pair): 2,
        key("gatehouse_request_errors_total", error_type="invalid_request_error", **pair): 2,
        key("gatehouse_tokens_total", model_group="counted", type="prompt"): 5 * FAKE_PROMPT,
        key("gatehouse_tokens_total", model_group="counted", type="completion"): 5 * FAKE_COMPLETION,
        key("gatehouse_spend_usd_total", model_group="counted"):
            5 * (FAKE_PROMPT * INPUT_PRICE + FAKE_COMPLETION * OUTPUT_PRICE),
        key("gatehouse_request_duration_seconds_count", **pair): 7,
        key("gatehouse_request_duration_seconds_bucket", le="+Inf", **pair): 7,
        key("gatehouse_time_to_first_token_seconds_count", **pair): 1,
        key("gatehouse_time_to_first_token_seconds_bucket", le="+Inf", **pair): 1,
        # The unknown model is counted under no group: its name (the client's to choose) is not a label.
        key("gatehouse_requests_total", operation="chat", model_group="", deployment="", status="404"): 1,
        key("gatehouse_in_flight_requests"): 0,
    })

    assert 0 < sample(page, "gatehouse_request_duration_seconds_sum", **pair) < 7 * SLOW_LIMIT
    assert not [key for key in page if ("model_group", f"nobody-serves-{RUN}") in key[1]]


def test_an_abandoned_stream_is_in_flight_until_the_client_hangs_up(gateway, fake):
    fake.stream_chunks = 200
    fake.stream_interval = 0.05
    response = requests.post(f"{gateway.v1}/chat/completions", headers=AUTH, stream=True, timeout=30,
                             json={"model": "slow", "messages": USER, "stream": True})
    try:
        assert response.status_code == 200
        chunks = response.iter_content(chunk_size=None)  # kept: a dropped iterator would close the stream
        assert next(chunks).startswith(b"data: ")
        settles(gateway, "gatehouse_in_flight_requests", 1)
        assert next(chunks).startswith(b"data: ")  # still streaming while it was counted
    finally:
        response.close()

    assert wait_until(lambda: fake.disconnects == 1, seconds=10)
    settled(gateway, {
        key("gatehouse_in_flight_requests"): 0,
        key("gatehouse_requests_total", operation="chat", model_group="slow", deployment=dep("w1"), status="499"): 1,
        key("gatehouse_request_errors_total", model_group="slow", deployment=dep("w1"),
            error_type="client_disconnected"): 1,
    })


def test_a_deployment_answering_429_shows_its_cooldown(gateway, fake):
    fake.fail_next(status=429, body={"error": {"message": "Slow down.", "type": "rate_limit_error", "param": None,
                                               "code": "rate_limit_exceeded"}})
    with fresh_client(gateway) as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="cooled", messages=USER)
    [limited] = [name for name in ("k1", "k2") if fake.requests_to(f"/{dep(name)}/")]
    [other] = {"k1", "k2"} - {limited}

    page = scrape(gateway)

    assert 50 < sample(page, "gatehouse_deployment_cooldown_seconds", model_group="cooled",
                       deployment=dep(limited)) <= 60
    assert sample(page, "gatehouse_deployment_cooldown_seconds", model_group="cooled", deployment=dep(other)) == 0
    assert sample(page, "gatehouse_deployment_cooldown_seconds", model_group="counted", deployment=dep("c1")) == 0
    settled(gateway, {
        key("gatehouse_requests_total", operation="chat", model_group="cooled", deployment=dep(limited),
            status="429"): 1,
        key("gatehouse_request_errors_total", model_group="cooled", deployment=dep(limited),
            error_type="rate_limit_error"): 1,
    })


def test_only_an_admin_key_may_read_the_metrics(gateway):
    missing = requests.get(f"{gateway.url}/metrics", timeout=10)
    assert missing.status_code == 401
    assert missing.json() == envelope(
        "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
        type="authentication_error", code="invalid_api_key")
    plain = key_issue(gateway)["key"]
    refused = requests.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {plain}"}, timeout=10)
    assert refused.status_code == 403
    assert refused.json() == envelope("Only the master key or a proxy_admin key may call GET /metrics.",
                                      type="permission_denied", code="admin_only")
    admin = key_issue(gateway, role="proxy_admin")["key"]
    assert sample(scrape(gateway, {"Authorization": f"Bearer {admin}"}), "gatehouse_log_buffer_rows") is not None
    assert sample(scrape(gateway), "gatehouse_log_buffer_rows") is not None


def submit_batch(gateway: GatewayProcess, group: str, count: int) -> str:
    data = b"".join(orjson.dumps({"custom_id": f"{group}-{index}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": group, "messages": USER}}) + b"\n" for index in range(count))
    with fresh_client(gateway) as client:
        uploaded = client.files.create(file=("lines.jsonl", data, "application/jsonl"), purpose="batch",
                                       extra_body={"target_model_names": group})
        return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                     completion_window="24h").id


def batch_counts(gateway: GatewayProcess, batch_id: str, seconds: float = 60) -> tuple[str, int, int]:
    with fresh_client(gateway) as client:
        assert wait_until(lambda: client.batches.retrieve(batch_id).status in ("completed", "failed"),
                          seconds=seconds, interval=0.2)
        batch = client.batches.retrieve(batch_id)
    return batch.status, batch.request_counts.completed, batch.request_counts.failed


def test_the_embedded_batch_workers_lines_are_counted(gateway, fake):
    mock_batch = submit_batch(gateway, "mock-batch", 3)
    fake.fail_next(status=400, body=REFUSAL, path_contains=f"/{dep('b1')}/v1/chat/completions")
    like_batch = submit_batch(gateway, "like-batch", 3)
    assert batch_counts(gateway, mock_batch) == ("completed", 3, 0)
    assert batch_counts(gateway, like_batch) == ("completed", 2, 1)

    page = settled(gateway, {
        key("gatehouse_batch_lines_total", model_group="mock-batch", outcome="completed"): 3,
        key("gatehouse_batch_lines_total", model_group="like-batch", outcome="completed"): 2,
        key("gatehouse_batch_lines_total", model_group="like-batch", outcome="failed"): 1,
    })
    assert sample(page, "gatehouse_batch_lines_total", model_group="mock-batch", outcome="failed") is None
    # Batch lines are not proxied requests.
    assert sample(page, "gatehouse_requests_total", operation="chat", model_group="like-batch", deployment=dep("b1"),
                  status="200") is None


def web_workers(master_pid: int) -> list[int]:
    """The gunicorn master's worker processes (its other child is the embedded batch worker's supervisor)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == master_pid and b"batch_worker" not in command:
            workers.append(int(entry.name))
    return workers


def test_killed_workers_counts_stay_in_the_totals(gateway, fake):
    """Run last in this module: it replaces both web workers."""
    for _ in range(3):
        with fresh_client(gateway) as client:
            client.chat.completions.create(model="kept", messages=USER)
    labels = {"operation": "chat", "model_group": "kept", "deployment": dep("d1"), "status": "200"}
    settles(gateway, "gatehouse_requests_total", 3, **labels)
    workers = web_workers(gateway.process.pid)
    assert len(workers) == 2

    for pid in workers:
        os.kill(pid, signal.SIGKILL)

    assert wait_until(lambda: len(set(web_workers(gateway.process.pid)) - set(workers)) == 2, seconds=30,
                      interval=0.2)
    settled(gateway, {key("gatehouse_requests_total", **labels): 3, key("gatehouse_in_flight_requests"): 0},
            seconds=30)
    with fresh_client(gateway) as client:
        client.chat.completions.create(model="kept", messages=USER)
    settles(gateway, "gatehouse_requests_total", 4, **labels)
