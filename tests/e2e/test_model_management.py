"""Live model management against a real `serve` with two gunicorn workers.

A deployment added, changed or removed through the API must serve (or stop serving) on every worker
within a second. Which worker answered is told from the upstream side: each worker has its own
pooled connection to the fake provider, and the fake maps the connection's client port to the worker
process that holds it (through /proc), so "both workers" is observed, not assumed.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from openai import OpenAI

from tests.e2e.helpers import AUTH, post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tells workers apart through /proc")]

USER = [{"role": "user", "content": "which worker?"}]
UPSTREAM_KEY = "sk-live-management-e2e-5c1d"
PROPAGATION_SECONDS = 1.0
HAMMER_THREADS = 8


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's children: its worker processes."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                children.add(int(entry))
    return children


def pid_holding_port(port: int, pids: set[int]) -> int | None:
    """Which of `pids` owns the TCP socket whose local port is `port` (the gateway's end of a connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    return None


@dataclass(frozen=True)
class Served:
    at: float
    path: str
    pid: int | None


class WorkerTrackingFake(FakeOpenAI):
    """FakeOpenAI that also notes, per request, which gateway worker process sent it."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: set[int] = set()
        self.served: list[Served] = []
        fake = self
        base_handler = self.server.RequestHandlerClass

        class TrackingHandler(base_handler):
            def _handle(self):
                served = Served(time.monotonic(), urlsplit(self.path).path,
                                pid_holding_port(self.client_address[1], fake.pids))
                with fake.lock:
                    fake.served.append(served)
                super()._handle()

        self.server.RequestHandlerClass = TrackingHandler

    def served_since(self, moment: float, fragment: str) -> list[Served]:
        with self.lock:
            return [s for s in self.served if s.at >= moment and fragment in s.path]


@pytest.fixture(scope="module")
def fake() -> Iterator[WorkerTrackingFake]:
    tracking = WorkerTrackingFake()
    yield tracking
    tracking.close()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    config = {
        "model_list": [{"model_name": "warm", "litellm_params": {"model": "openai/warm-model",
                                                                 "api_base": f"{fake.url}/warm/v1",
                                                                 "api_key": UPSTREAM_KEY},
                        "model_info": {"id": "warm-1"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }
    gateway = start_gateway(tmp_path_factory.mktemp("two-workers"), config, workers=2)
    try:
        assert _wait_for(lambda: len(worker_pids(gateway.process.pid)) == 2, 20), gateway.logs()[-3000:]
        fake.pids = worker_pids(gateway.process.pid)
        # Both workers up, each with its snapshot built and its own connection to the fake.
        warm_start = time.monotonic()
        assert _wait_for(lambda: (_hammer(gateway, "warm", 0.3) or True)
                         and {s.pid for s in fake.served_since(warm_start, "/warm/")} >= fake.pids, 30)
        yield gateway
    finally:
        gateway.stop()


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Answer:
    sent_at: float
    status: int
    deployment_id: str | None


def _hammer(gateway: GatewayProcess, group: str, seconds: float) -> list[Answer]:
    """Chat with `group` from several threads for `seconds`, each request on a new connection so the
    kernel spreads them over both workers."""
    answers: list[Answer] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop_at:
            sent_at = time.monotonic()
            response = requests.post(f"{gateway.v1}/chat/completions", json={"model": group, "messages": USER},
                                     headers={**AUTH, "Connection": "close"}, timeout=10)
            with lock:
                answers.append(Answer(sent_at, response.status_code, response.headers.get("x-gatehouse-deployment-id")))

    with ThreadPoolExecutor(HAMMER_THREADS) as pool:
        for _ in range(HAMMER_THREADS):
            pool.submit(loop)
    return answers


def _first_by_pid(served: list[Served]) -> dict[int | None, float]:
    first: dict[int | None, float] = {}
    for item in served:
        first.setdefault(item.pid, item.at)
    return first


def assert_propagated(fake: WorkerTrackingFake, answers: list[Answer], changed_at: float, fragment: str,
                      deployment_id: str) -> None:
    """Every worker served through `fragment` within a second of the change, and nothing after that second failed."""
    first = _first_by_pid(fake.served_since(changed_at, fragment))
    assert set(first) == fake.pids, (first, fake.pids)
    assert all(moment - changed_at <= PROPAGATION_SECONDS for moment in first.values()), first
    late = [a for a in answers if a.sent_at >= changed_at + PROPAGATION_SECONDS]
    assert late, "the hammer sent nothing after the propagation window"
    assert {(a.status, a.deployment_id) for a in late} == {(200, deployment_id)}


def new_deployment(fake: WorkerTrackingFake, deployment_id: str, prefix: str) -> dict:
    return {"model_name": "live", "model_info": {"id": deployment_id},
            "litellm_params": {"model": f"openai/{prefix}-model", "api_base": f"{fake.url}/{prefix}/v1",
                               "api_key": UPSTREAM_KEY}}


def test_add_update_and_delete_reach_both_workers_within_a_second(two_workers, fake):
    # add
    response = post_json(f"{two_workers.url}/model/new", new_deployment(fake, "live-a", "live-a"))
    assert response.status_code == 200, response.text
    added_at = time.monotonic()
    answers = _hammer(two_workers, "live", PROPAGATION_SECONDS + 0.6)
    assert_propagated(fake, answers, added_at, "/live-a/", "live-a")
    assert {a.status for a in answers if a.sent_at < added_at + PROPAGATION_SECONDS} <= {200, 404}

    # update: the same deployment now calls another endpoint with another model name
    response = post_json(f"{two_workers.url}/model/update", {
        "model_info": {"id": "live-a"},
        "litellm_params": {"model": "openai/live-b-model", "api_base": f"{fake.url}/live-b/v1"}})
    assert response.status_code == 200, response.text
    updated_at = time.monotonic()
    answers = _hammer(two_workers, "live", PROPAGATION_SECONDS + 0.6)
    assert_propagated(fake, answers, updated_at, "/live-b/", "live-a")
    assert fake.served_since(updated_at + PROPAGATION_SECONDS, "/live-a/") == []

    # a second deployment in the group, then delete the first: everything moves to the second
    response = post_json(f"{two_workers.url}/model/new", new_deployment(fake, "live-c", "live-c"))
    assert response.status_code == 200, response.text
    assert _wait_for(lambda: (_hammer(two_workers, "live", 0.3) or True) and {
        s.pid for s in fake.served_since(time.monotonic() - 0.3, "/live-c/")} >= fake.pids, 10)
    response = post_json(f"{two_workers.url}/model/delete", {"id": "live-a"})
    assert response.status_code == 200, response.text
    deleted_at = time.monotonic()
    answers = _hammer(two_workers, "live", PROPAGATION_SECONDS + 0.6)
    assert_propagated(fake, answers, deleted_at, "/live-c/", "live-c")
    assert fake.served_since(deleted_at + PROPAGATION_SECONDS, "/live-b/") == []

    # the last deployment gone: the group is unknown everywhere
    assert post_json(f"{two_workers.url}/model/delete", {"id": "live-c"}).status_code == 200
    gone_at = time.monotonic()
    answers = _hammer(two_workers, "live", PROPAGATION_SECONDS + 0.5)
    assert {a.status for a in answers if a.sent_at >= gone_at + PROPAGATION_SECONDS} == {404}
    assert fake.served_since(gone_at + PROPAGATION_SECONDS, "/live-") == []


def test_the_sdk_calls_a_model_added_through_the_api(two_workers, fake):
    body = {"model_name": "sdk-live", "model_info": {"id": "sdk-1", "mode": "chat"},
            "litellm_params": {"model": "openai/sdk-model", "api_base": f"{fake.url}/sdk/v1",
                               "api_key": UPSTREAM_KEY}}
    assert post_json(f"{two_workers.url}/model/new", body).status_code == 200
    time.sleep(PROPAGATION_SECONDS)
    with OpenAI(base_url=two_workers.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        for _ in range(4):
            completion = sdk.chat.completions.create(model="sdk-live", messages=USER)
            assert completion.choices[0].message.content == "Hello from the fake provider."
            assert completion.model == "sdk-model"
        listed = {model.id for model in sdk.models.list()}
    assert {"warm", "sdk-live"} <= listed
    received = [r for r in fake.requests if r.path == "/sdk/v1/chat/completions"]
    assert len(received) == 4
    assert {r.headers["authorization"] for r in received} == {f"Bearer {UPSTREAM_KEY}"}


def test_info_and_health_over_http(two_workers, fake):
    info = requests.get(f"{two_workers.url}/v1/model/info", headers=AUTH, timeout=10)
    assert info.status_code == 200
    warm = next(item for item in info.json()["data"] if item["model_info"]["id"] == "warm-1")
    assert warm["litellm_params"] == {"model": "openai/warm-model", "api_base": f"{fake.url}/warm/v1"}
    assert warm["model_info"]["db_model"] is False
    assert UPSTREAM_KEY not in info.text

    groups = requests.get(f"{two_workers.url}/model_group/info", params={"model_group": "warm"}, headers=AUTH,
                          timeout=10)
    assert [(g["model_group"], g["providers"]) for g in groups.json()["data"]] == [("warm", ["openai"])]

    health = requests.get(f"{two_workers.url}/health", params={"model": "warm"}, headers=AUTH, timeout=30)
    assert health.status_code == 200
    body = health.json()
    assert (body["healthy_count"], body["unhealthy_count"]) == (1, 0)
    assert body["healthy_endpoints"][0]["model_id"] == "warm-1"
    assert UPSTREAM_KEY not in health.text

    anonymous = requests.get(f"{two_workers.url}/health", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


def test_background_health_checks_take_a_failing_deployment_out_of_routing(tmp_path, fake):
    """With `background_health_checks`, each worker checks at start and every interval; a deployment that
    fails its check is cooled down, so the router stops trying it (the router itself would need
    `allowed_fails` failures first, set out of reach here)."""
    config = {
        "model_list": [
            {"model_name": "pair", "litellm_params": {"model": "openai/good-model", "api_base": f"{fake.url}/good/v1",
                                                      "api_key": UPSTREAM_KEY}, "model_info": {"id": "good"}},
            {"model_name": "pair", "litellm_params": {"model": "openai/dead-model", "api_base": "http://127.0.0.1:9/v1",
                                                      "api_key": UPSTREAM_KEY}, "model_info": {"id": "dead"}},
        ],
        "router_settings": {"allowed_fails": 1000, "num_retries": 2},
        "general_settings": {"master_key": MASTER_KEY, "background_health_checks": True,
                             "health_check_interval": 30},
    }
    gateway = start_gateway(tmp_path / "background", config)
    try:
        assert _wait_for(lambda: any(r.path == "/good/v1/chat/completions" and r.body["messages"][0]["content"]
                                     == "ping" for r in fake.requests), 20), gateway.logs()[-3000:]
        assert _wait_for(lambda: "cooling down" in gateway.logs(), 10), gateway.logs()[-3000:]
        answers = [requests.post(f"{gateway.v1}/chat/completions", json={"model": "pair", "messages": USER},
                                 headers=AUTH, timeout=10) for _ in range(12)]
    finally:
        gateway.stop()
    assert [(a.status_code, a.headers["x-gatehouse-deployment-id"], a.headers["x-gatehouse-attempts"])
            for a in answers] == [(200, "good", "1")] * 12
    assert "background health checks every 30 s" in gateway.logs()
