"""Gateway-executed batches end to end: the official OpenAI SDK against a running gateway (its embedded batch
worker, or standalone `manage.py batch_worker` processes) in front of the mock provider and loopback
OpenAI-compatible fakes. Upload, create, poll, download: every custom_id once and in input order; sharding;
per-line upstream errors; rpm; cancel mid-run; expiry; validation failures; SIGKILL of a worker mid-batch
and a restart of everything, each resumed with exactly-once output."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson
import pytest
import requests
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, GatewayProcess, start_batch_worker, start_gateway

UPSTREAM_KEY = "sk-upstream-batches-e2e"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
FINAL = ("completed", "failed", "expired", "cancelled")
EXPIRED = {"code": "batch_expired",
           "message": "This request could not be executed before the completion window expired."}


def like(group: str, deployment_id: str, fake: FakeOpenAI, **info) -> dict:
    params = {"model": f"openai_like/llama-{deployment_id}", "api_base": f"{fake.url}/{deployment_id}/v1",
              "api_key": UPSTREAM_KEY}
    if "rpm" in info:
        params["rpm"] = info.pop("rpm")
    return {"model_name": group, "model_info": {"id": deployment_id, **info}, "litellm_params": params}


def batches_config(fake: FakeOpenAI) -> dict:
    return {"model_list": [
        {"model_name": "mock-batch", "model_info": {"id": "mock-b1"},
         "litellm_params": {"model": "mock/mock-b1", "mock_response": "mock answer"}},
        like("like-batch", "l1", fake),
        like("like-pair", "p1", fake),
        like("like-pair", "p2", fake),
        like("like-serial", "s1", fake, batch_concurrency=1),
        like("like-slow", "w1", fake, batch_concurrency=2),
        like("like-rpm", "r1", fake, rpm=2),
    ], "general_settings": {"master_key": MASTER_KEY}}


WORKER_ENV = {"GATEWAY_BATCH_SWEEP_SECONDS": "0.5"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(fake) -> None:
    fake.reset()


@pytest.fixture(scope="module")
def batch_gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("batches-gateway"), batches_config(fake), batch_worker=True,
                            env=WORKER_ENV)
    yield process
    process.stop()


@pytest.fixture
def sdk(batch_gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=batch_gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as client:
        yield client


def line(custom_id: str, model: str, text: str = "hello", url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": text}]}}


def submit(client: OpenAI, lines: list[dict], group: str, *, endpoint: str = "/v1/chat/completions"):
    data = b"".join(orjson.dumps(item) + b"\n" for item in lines)
    uploaded = client.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch",
                                   extra_body={"target_model_names": group})
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h",
                                 metadata={"test": "gateway"})


def finished(client: OpenAI, batch_id: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    batch = client.batches.retrieve(batch_id)
    while batch.status not in FINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        batch = client.batches.retrieve(batch_id)
    assert batch.status in FINAL, batch
    return batch


def content(client: OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [orjson.loads(row) for row in client.files.content(file_id).content.splitlines()]


def sql(gateway: GatewayProcess, statement: str, params: tuple) -> None:
    """Write to the gateway's own database (what an in-process test would do to a running batch's row)."""
    url = gateway.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(unquote(urlsplit(url).path), timeout=20) as connection:
            connection.execute(statement.replace("%s", "?"), params)
        return
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as connection:
        connection.execute(statement, params)


def db_time(gateway: GatewayProcess, moment: datetime):
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if gateway.database_url.startswith("sqlite") else moment


@pytest.mark.parametrize(("group", "expected_model", "expected_text"), [
    ("mock-batch", "mock-b1", "mock answer"),
    ("like-batch", "llama-l1", "Hello from the fake provider."),
])
def test_gateway_batch_completes_with_every_custom_id_in_order(sdk, fake, group, expected_model, expected_text):
    lines = [line(f"{group}-{index}", group, f"question {index}") for index in range(8)]
    created = submit(sdk, lines, group)
    assert (created.status, created.endpoint, created.completion_window, created.metadata) == (
        "validating", "/v1/chat/completions", "24h", {"test": "gateway"})
    batch = finished(sdk, created.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (8, 8, 0)
    assert batch.error_file_id is None and batch.completed_at and batch.in_progress_at and batch.finalizing_at
    output = content(sdk, batch.output_file_id)
    assert [item["custom_id"] for item in output] == [f"{group}-{index}" for index in range(8)]
    for item in output:
        assert item["error"] is None and item["response"]["status_code"] == 200
        body = item["response"]["body"]
        assert (body["model"], body["choices"][0]["message"]["content"]) == (expected_model, expected_text)
    if group == "like-batch":
        received = fake.requests_to("/l1/v1/chat/completions")
        assert sorted(r.body["messages"][0]["content"] for r in received) == [f"question {i}" for i in range(8)]
        assert {r.body["model"] for r in received} == {"llama-l1"}
        assert [item["response"]["body"]["usage"] for item in output] == \
            [{"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}] * 8
    described = sdk.files.retrieve(batch.output_file_id)
    assert (described.purpose, described.filename) == ("batch_output", f"{batch.id}_output.jsonl")


def test_sharding_across_two_deployments_reassembles_in_input_order(sdk, fake):
    batch = finished(sdk, submit(sdk, [line(f"s{index}", "like-pair", f"q{index}") for index in range(9)],
                                 "like-pair").id)
    assert batch.status == "completed"
    first = sorted(r.body["messages"][0]["content"] for r in fake.requests_to("/p1/v1/chat"))
    second = sorted(r.body["messages"][0]["content"] for r in fake.requests_to("/p2/v1/chat"))
    assert (first, second) == ([f"q{i}" for i in range(5)], [f"q{i}" for i in range(5, 9)])
    output = content(sdk, batch.output_file_id)
    assert [item["custom_id"] for item in output] == [f"s{index}" for index in range(9)]
    assert [item["response"]["body"]["model"] for item in output] == ["llama-p1"] * 5 + ["llama-p2"] * 4


def test_a_per_line_upstream_error_lands_in_the_error_file(sdk, fake):
    refusal = {"error": {"message": "Prompt refused by the upstream.", "type": "invalid_request_error",
                         "param": "messages", "code": "prompt_refused"}}
    fake.fail_next(status=400, body=refusal, path_contains="/s1/")
    batch = finished(sdk, submit(sdk, [line(f"e{index}", "like-serial") for index in range(3)], "like-serial").id)
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == ("completed", 2, 1)
    errors = content(sdk, batch.error_file_id)
    assert [(item["custom_id"], item["response"]["status_code"], item["response"]["body"], item["error"])
            for item in errors] == [("e0", 400, refusal, None)]
    assert [item["custom_id"] for item in content(sdk, batch.output_file_id)] == ["e1", "e2"]
    described = sdk.files.retrieve(batch.error_file_id)
    assert described.filename == f"{batch.id}_error.jsonl"


def test_rpm_makes_lines_wait_not_fail(sdk, fake):
    into = time.time() % 60
    if into > 48:  # rpm windows are calendar minutes: keep the test's lines in one
        time.sleep(60.5 - into)
    created = submit(sdk, [line(f"r{index}", "like-rpm") for index in range(3)], "like-rpm")
    assert wait_until(lambda: sdk.batches.retrieve(created.id).request_counts.completed == 2, seconds=20)
    assert not wait_until(lambda: len(fake.requests_to("/r1/")) > 2, seconds=1.5)
    waiting = sdk.batches.retrieve(created.id)
    assert (waiting.status, waiting.request_counts.completed, waiting.request_counts.failed) == ("in_progress", 2, 0)
    sdk.batches.cancel(created.id)
    batch = finished(sdk, created.id)
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == ("cancelled", 2, 0)
    assert len(fake.requests_to("/r1/")) == 2


def test_cancel_mid_run_writes_partial_output_and_sends_no_new_line(sdk, fake, batch_gateway):
    fake.path_latency = {"/s1/": 0.3}
    created = submit(sdk, [line(f"k{index}", "like-serial") for index in range(40)], "like-serial")
    assert wait_until(lambda: sdk.batches.retrieve(created.id).request_counts.completed >= 2, seconds=20)
    cancelling = sdk.batches.cancel(created.id)
    sent_at_cancel = len(fake.requests_to("/s1/"))
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    batch = finished(sdk, created.id)
    sent = len(fake.requests_to("/s1/"))
    assert batch.status == "cancelled" and batch.cancelled_at
    assert sent <= sent_at_cancel + 1  # the one line that may have been starting as the cancel committed
    output = content(sdk, batch.output_file_id)
    assert [item["custom_id"] for item in output] == [f"k{index}" for index in range(len(output))]
    assert 2 <= len(output) == sent < 40
    assert batch.error_file_id is None and batch.request_counts.total == 40
    again = requests.post(f"{batch_gateway.v1}/batches/{batch.id}/cancel", headers=AUTH, timeout=10)
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_expiry_records_batch_expired_lines_and_keeps_the_rest(sdk, fake, batch_gateway):
    fake.path_latency = {"/s1/": 0.3}
    created = submit(sdk, [line(f"x{index}", "like-serial") for index in range(30)], "like-serial")
    assert wait_until(lambda: sdk.batches.retrieve(created.id).request_counts.completed >= 2, seconds=20)
    sql(batch_gateway, "UPDATE batches_batch SET expires_at = %s WHERE id = %s",
        (db_time(batch_gateway, datetime.now(UTC) - timedelta(seconds=1)), created.id))
    batch = finished(sdk, created.id)
    assert batch.status == "expired" and batch.expired_at and batch.completed_at is None
    done = content(sdk, batch.output_file_id)
    expired = content(sdk, batch.error_file_id)
    assert [item["custom_id"] for item in done] == [f"x{index}" for index in range(len(done))]
    assert [item["custom_id"] for item in expired] == [f"x{index}" for index in range(len(done), 30)]
    assert all((item["response"], item["error"]) == (None, EXPIRED) for item in expired)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(done), 30 - len(done))


def test_validation_failures_name_their_lines(sdk, batch_gateway):
    mixed = [line("a", "mock-batch"), line("b", "mock-batch", url="/v1/embeddings"), line("c", "mock-batch")]
    batch = finished(sdk, submit(sdk, mixed, "mock-batch").id)
    assert batch.status == "failed" and batch.failed_at
    assert [(error.line, error.code, error.param, error.message) for error in batch.errors.data] == [
        (2, "mismatched_endpoint", "url",
         "Line 2: url '/v1/embeddings' is not the batch's endpoint '/v1/chat/completions'.")]
    assert batch.output_file_id is None and batch.error_file_id is None

    issued = requests.post(f"{batch_gateway.url}/key/generate", json={"models": ["mock-batch", "like-batch"]},
                           headers=AUTH, timeout=10).json()
    with OpenAI(base_url=batch_gateway.v1, api_key=issued["key"], max_retries=0, timeout=60) as keyed:
        data = b"".join(orjson.dumps(item) + b"\n" for item in [line("a", "like-batch"), line("b", "like-batch")])
        uploaded = keyed.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch",
                                      extra_body={"target_model_names": "like-batch"})
        updated = requests.post(f"{batch_gateway.url}/key/update",
                                json={"key": issued["key"], "models": ["mock-batch"]}, headers=AUTH, timeout=10)
        assert updated.status_code == 200, updated.text
        time.sleep(1.2)  # keys are cached for up to a second
        created = keyed.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                       completion_window="24h")
        batch = finished(keyed, created.id)
    assert batch.status == "failed"
    message = "This key may not use model 'like-batch'. Models it may use: mock-batch."
    assert [(error.line, error.code, error.message) for error in batch.errors.data] == [
        (1, "invalid_model", f"Line 1: {message}"), (2, "invalid_model", f"Line 2: {message}")]


# -- durability: real worker processes ------------------------------------------------------------------

DURABLE_ENV = {"GATEWAY_BATCH_LEASE_SECONDS": "2", "GATEWAY_BATCH_SWEEP_SECONDS": "0.5"}


def test_sigkill_of_a_worker_mid_batch_resumes_on_another_with_exactly_once_output(tmp_path, fake):
    fake.path_latency = {"/w1/": 0.25}
    gateway = start_gateway(tmp_path / "gateway", batches_config(fake), batch_worker=False, env=DURABLE_ENV)
    workers = []
    try:
        with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as client:
            created = submit(client, [line(f"d{index}", "like-slow", f"t{index}") for index in range(24)],
                             "like-slow")
            first = start_batch_worker(gateway, env=DURABLE_ENV, name="first")
            workers.append(first)
            assert wait_until(lambda: client.batches.retrieve(created.id).request_counts.completed >= 4,
                              seconds=30), first.logs()
            first.kill()
            after_kill = client.batches.retrieve(created.id).request_counts.completed
            assert after_kill < 24
            second = start_batch_worker(gateway, env=DURABLE_ENV, name="second")
            workers.append(second)
            batch = finished(client, created.id, seconds=60)
            output = content(client, batch.output_file_id)
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
    assert batch.status == "completed", second.logs()
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (24, 24, 0)
    assert [item["custom_id"] for item in output] == [f"d{index}" for index in range(24)]
    received = sorted({r.body["messages"][0]["content"] for r in fake.requests_to("/w1/")})
    assert received == sorted(f"t{index}" for index in range(24))


def test_a_restart_of_everything_resumes_an_unfinished_batch(tmp_path, fake):
    fake.path_latency = {"/w1/": 0.25}
    directory = tmp_path / "gateway"
    gateway = start_gateway(directory, batches_config(fake), batch_worker=True, env=DURABLE_ENV)
    database, drop = gateway.database_url, gateway.drop_database
    gateway.drop_database = None  # the same database must serve the restarted gateway
    try:
        with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as client:
            created = submit(client, [line(f"z{index}", "like-slow") for index in range(30)], "like-slow")
            assert wait_until(lambda: client.batches.retrieve(created.id).request_counts.completed >= 4, seconds=30)
        assert gateway.stop(timeout=40) == 0, gateway.logs()
        gateway = start_gateway(directory, batches_config(fake), batch_worker=True, env=DURABLE_ENV,
                                database_url=database)
        gateway.drop_database = drop
        with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as client:
            paused = client.batches.retrieve(created.id)
            assert paused.status == "in_progress" and 4 <= paused.request_counts.completed < 30
            batch = finished(client, created.id, seconds=60)
            output = content(client, batch.output_file_id)
    finally:
        gateway.stop()
    assert batch.status == "completed", gateway.logs()
    assert [item["custom_id"] for item in output] == [f"z{index}" for index in range(30)]


def embedded_workers(gateway: GatewayProcess) -> dict[int, str]:
    """pid -> command line of the gateway's `batch_worker` processes (all in its own session)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if session == gateway.process.pid and "batch_worker" in command:
            found[int(entry.name)] = command
    return found


def test_the_embedded_worker_is_restarted_when_it_dies(sdk, batch_gateway):
    def worker_pids() -> set[int]:
        return {pid for pid, command in embedded_workers(batch_gateway).items() if "--restart" not in command}

    assert wait_until(lambda: len(worker_pids()) == 1, seconds=30)
    supervisors = [pid for pid, command in embedded_workers(batch_gateway).items() if "--restart" in command]
    assert len(supervisors) == 1
    [killed] = worker_pids()
    os.kill(killed, signal.SIGKILL)
    assert wait_until(lambda: len(worker_pids()) == 1 and killed not in worker_pids(), seconds=30)

    batch = finished(sdk, submit(sdk, [line("after-restart", "mock-batch")], "mock-batch").id)
    assert (batch.status, batch.request_counts.completed) == ("completed", 1)
    assert [row["custom_id"] for row in content(sdk, batch.output_file_id)] == ["after-restart"]
    assert f"embedded batch worker (pid {killed}) exited with -9; restarting" in batch_gateway.logs()
