"""Gatehouse on several machines, as processes: what deploy/compose.yaml runs, without Docker.

Two `serve --no-worker` instances and one standalone `manage.py batch_worker`, each with its own state
directory (its own "machine"), sharing only what the compose recipe shares: one PostgreSQL database
(always PostgreSQL here, whatever the suite's DATABASE_URL), one Redis, one SECRET_KEY and one file-storage
directory. The schema is migrated once before either instance starts (compose's one-shot `migrate`), then
both instances boot at the same moment. There is no load balancer: each request names its instance.

- a key's rpm limit holds across both instances (the counter lives in Redis);
- a model added through instance A's management API answers on instance B within a second (the registry
  version lives in the database; the provider key A encrypted, B decrypts with the shared SECRET_KEY);
- a batch whose file was uploaded on A completes through the standalone worker, and B serves its files.

Redis: database 14 is this module's alone (no other test uses it), so flushing it touches no one else's keys.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import pytest
import redis
import requests
from openai import OpenAI

from tests.e2e.helpers import envelope, key_issue, post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import (
    MASTER_KEY,
    GatewayProcess,
    WorkerProcess,
    postgres_database_create,
    postgres_database_drop,
    run_manage_command,
    start_batch_worker,
    start_gateway,
)

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/14"
SHARED_SECRET_KEY = "multi-instance-shared-secret-key-3f9a"
UPSTREAM_KEY = "sk-upstream-multi-instance"
PROPAGATION_SECONDS = 1.0
RPM_LIMIT = 4
FINAL = ("completed", "failed", "expired", "cancelled")


def admin_database_url() -> str:
    """The PostgreSQL server to create this module's database on: the suite's, else the local default."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    return os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def cluster_config(upstream: FakeOpenAI) -> dict:
    params = {"api_base": f"{upstream.url}/v1", "api_key": UPSTREAM_KEY}
    return {
        "model_list": [
            {"model_name": "shared-chat", "model_info": {"id": "shared-chat-1"},
             "litellm_params": {"model": "openai/shared-model", **params}},
            # Gateway-executed batches: an OpenAI-compatible server has no batch API of its own.
            {"model_name": "like-batch", "model_info": {"id": "like-batch-1"},
             "litellm_params": {"model": "openai_like/llama-batch", "api_base": f"{upstream.url}/batch/v1",
                                "api_key": UPSTREAM_KEY}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


@dataclass
class Cluster:
    a: GatewayProcess
    b: GatewayProcess
    worker: WorkerProcess
    upstream: FakeOpenAI

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{process.logs()[-3000:]}"
                         for name, process in (("instance A", self.a), ("instance B", self.b),
                                               ("batch worker", self.worker)))


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _reset_upstream(upstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, upstream) -> Iterator[Cluster]:
    admin_url = admin_database_url()
    shared_redis = redis.Redis.from_url(REDIS_URL)
    shared_redis.flushdb()
    database_url, database_name = postgres_database_create(admin_url, prefix="gatehouse_multi")
    root = tmp_path_factory.mktemp("multi-instance")
    shared_files = root / "shared-files"
    shared_files.mkdir()
    shared_env = {
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": SHARED_SECRET_KEY,
        "GATEWAY_FILE_STORAGE": json.dumps({"BACKEND": "django.core.files.storage.FileSystemStorage",
                                            "OPTIONS": {"location": str(shared_files)}}),
        "GATEWAY_BATCH_SWEEP_SECONDS": "0.5",
    }
    started: list = []
    try:
        migrated = run_manage_command(["migrate", "--noinput"],
                                      env={**shared_env, "DATABASE_URL": database_url,
                                           "GATEWAY_STATE_DIR": str(root / "migrate-state")})
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        config = cluster_config(upstream)
        with ThreadPoolExecutor(max_workers=2) as pool:  # two first boots at once, as compose starts them
            booting = [pool.submit(start_gateway, root / name, config, env=shared_env, database_url=database_url)
                       for name in ("instance-a", "instance-b")]
        failures = []
        for future in booting:  # every instance that came up is kept, so `finally` stops it
            try:
                started.append(future.result())
            except RuntimeError as error:
                failures.append(str(error))
        if failures:
            pytest.fail("an instance did not start beside the other:\n" + "\n".join(failures))
        a, b = started
        worker = start_batch_worker(a, env={"GATEWAY_STATE_DIR": str(root / "worker-state")}, name="batch-worker")
        started.append(worker)
        yield Cluster(a=a, b=b, worker=worker, upstream=upstream)
    finally:
        with ThreadPoolExecutor(max_workers=3) as pool:  # graceful stops, side by side
            list(pool.map(lambda process: process.stop(), started))
        postgres_database_drop(admin_url, database_name)
        shared_redis.flushdb()
        shared_redis.close()


@pytest.fixture(autouse=True)
def _cluster_logs_on_failure(request) -> Iterator[None]:
    yield
    report = getattr(request.node, "e2e_report_call", None)
    if report is not None and report.failed and "cluster" in request.fixturenames:
        report.sections.append(("multi-instance logs (tails)", request.getfixturevalue("cluster").logs()))


def chat(gateway: GatewayProcess, key: str, model: str = "shared-chat") -> requests.Response:
    return requests.post(f"{gateway.v1}/chat/completions", timeout=30,
                         json={"model": model, "messages": [{"role": "user", "content": "which instance?"}]},
                         headers={"Authorization": f"Bearer {key}"})


def test_both_instances_share_one_database_but_nothing_else_local(cluster):
    assert cluster.a.database_url == cluster.b.database_url
    a_environment, b_environment = cluster.a.extra["environment"], cluster.b.extra["environment"]
    assert a_environment["GATEWAY_STATE_DIR"] != b_environment["GATEWAY_STATE_DIR"]
    for name in ("REDIS_URL", "SECRET_KEY", "GATEWAY_FILE_STORAGE"):
        assert a_environment[name] == b_environment[name]
    for gateway in (cluster.a, cluster.b):
        ready = requests.get(f"{gateway.url}/health/readiness", timeout=10)
        assert (ready.status_code, ready.json()["status"], ready.json()["db"]) == (200, "healthy", "connected")


def test_an_rpm_limit_holds_across_both_instances(cluster):
    if time.time() % 60 > 50:  # every call below must fall in one fixed minute window
        time.sleep(60 - time.time() % 60 + 0.05)
    issued = key_issue(cluster.a, rpm_limit=RPM_LIMIT, key_alias="multi-rpm")
    instances = [cluster.a, cluster.b] * RPM_LIMIT
    remaining = []
    for gateway in instances[:RPM_LIMIT]:
        response = chat(gateway, issued["key"])
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake provider."
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    # Each instance saw the other's calls: one count, not one per instance.
    assert remaining == [str(RPM_LIMIT - count) for count in range(1, RPM_LIMIT + 1)]
    for gateway in (cluster.a, cluster.b):
        refused = chat(gateway, issued["key"])
        assert refused.status_code == 429
        retry_after = refused.headers["retry-after"]
        assert 1 <= int(retry_after) <= 60
        assert refused.json() == envelope(
            f"Rate limit exceeded for key 'multi-rpm': {RPM_LIMIT} requests per minute. Try again in {retry_after} s.",
            type="rate_limit_error", code="rate_limit_exceeded")
        assert (refused.headers["x-ratelimit-limit-requests"], refused.headers["x-ratelimit-remaining-requests"]) == (
            str(RPM_LIMIT), "0")
    received = cluster.upstream.requests_to("/v1/chat/completions")
    assert len(received) == RPM_LIMIT == len(cluster.upstream.requests)
    assert {request.body["model"] for request in received} == {"shared-model"}


def test_a_model_added_through_one_instance_answers_on_the_other_within_a_second(cluster):
    unknown = chat(cluster.b, MASTER_KEY, "late-model")  # B's registry is built and holds no such group
    assert unknown.status_code == 404
    assert unknown.json() == envelope("The model `late-model` does not exist or you do not have access to it.",
                                      type="invalid_request_error", code="model_not_found", param="model")
    # A literal provider key: A encrypts it into the database, B must decrypt it (the shared SECRET_KEY).
    added = post_json(f"{cluster.a.url}/model/new", {
        "model_name": "late-model", "model_info": {"id": "late-1"},
        "litellm_params": {"model": "openai/late-upstream", "api_base": f"{cluster.upstream.url}/late/v1",
                           "api_key": "sk-late-literal-key"}})
    assert added.status_code == 200, added.text
    deadline = time.monotonic() + PROPAGATION_SECONDS
    statuses = []
    answered = None
    while time.monotonic() < deadline:
        response = chat(cluster.b, MASTER_KEY, "late-model")
        statuses.append(response.status_code)
        if response.status_code == 200:
            answered = response
            break
        time.sleep(0.05)
    assert answered is not None, f"instance B still answered {statuses} {PROPAGATION_SECONDS} s after the add"
    assert set(statuses[:-1]) <= {404}
    body = answered.json()
    assert (body["model"], body["choices"][0]["message"]["content"]) == ("late-upstream",
                                                                          "Hello from the fake provider.")
    received = cluster.upstream.requests_to("/late/v1/chat/completions")
    assert len(received) == 1
    assert received[0].headers["authorization"] == "Bearer sk-late-literal-key"
    assert received[0].body["model"] == "late-upstream"


def test_a_batch_created_on_one_instance_completes_through_the_worker_and_downloads_from_the_other(cluster):
    lines = [{"custom_id": f"multi-{index}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "like-batch", "messages": [{"role": "user", "content": f"question {index}"}]}}
             for index in range(6)]
    data = b"".join(orjson.dumps(item) + b"\n" for item in lines)
    with OpenAI(base_url=cluster.a.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as on_a, \
            OpenAI(base_url=cluster.b.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as on_b:
        uploaded = on_a.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch",
                                     extra_body={"target_model_names": "like-batch"})
        assert on_b.files.content(uploaded.id).content == data  # the bytes A stored, read by B
        created = on_a.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        assert wait_until(lambda: on_b.batches.retrieve(created.id).status in FINAL, seconds=60, interval=0.2)
        batch = on_b.batches.retrieve(created.id)
        assert batch.status == "completed", batch
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (6, 6, 0)
        assert batch.error_file_id is None
        output = [orjson.loads(row) for row in on_b.files.content(batch.output_file_id).content.splitlines()]
    assert [item["custom_id"] for item in output] == [f"multi-{index}" for index in range(6)]
    for index, item in enumerate(output):
        assert item["error"] is None and item["response"]["status_code"] == 200
        assert item["response"]["body"]["choices"][0]["message"]["content"] == "Hello from the fake provider."
        assert item["response"]["body"]["model"] == "llama-batch", index
    received = cluster.upstream.requests_to("/batch/v1/chat/completions")
    assert sorted(request.body["messages"][0]["content"] for request in received) == sorted(
        f"question {index}" for index in range(6))
    assert {request.headers["authorization"] for request in received} == {f"Bearer {UPSTREAM_KEY}"}
    # Only the standalone worker runs batches here (both instances are `--no-worker`).
    assert cluster.worker.process.poll() is None
