"""The seed's managed-batches flow, verbatim, with the official OpenAI SDK against a running gateway
(its embedded batch worker on) whose `gpt-4o-batch` group is two Azure deployments on a loopback fake.

The operator's part: `mode: batch` deployments, a key granted the group, `/model_group/info` showing the
mode. The developer's part: upload with `target_model_names`, create, retrieve until done, download the
output, list (with the group filter), cancel. Each Azure deployment receives its own rewritten copy and
runs the batch natively; successive batches spread across both; another key sees nothing."""
from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import orjson
import pytest
import requests
from openai import OpenAI

from tests.e2e.helpers import key_issue
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
AZURE_KEY = "azure-upstream-seed-key"
AZURE_VERSION = "2024-10-21"
GROUP = "gpt-4o-batch"
# Each Azure resource is an account on the fake (its path prefix) holding one deployment.
DEPLOYMENTS = {"/general/openai": "gpt-4o-mini-general-deployment",
               "/special/openai": "gpt-4o-mini-special-deployment"}
SEED_INPUT = (
    b'{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-batch", '
    b'"messages": [{"role": "system", "content": "You are a helpful assistant."},{"role": "user", "content": '
    b'"Hello world!"}],"max_tokens": 1000}}\n'
    b'{"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-batch", '
    b'"messages": [{"role": "system", "content": "You are an unhelpful assistant."},{"role": "user", "content": '
    b'"Hello world!"}],"max_tokens": 1000}}\n'
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI()
    yield started
    started.close()


def seed_config(fake: FakeOpenAI) -> dict:
    def azure(deployment_id: str, deployment: str, resource: str) -> dict:
        return {"model_name": GROUP, "model_info": {"id": deployment_id, "mode": "batch"},
                "litellm_params": {"model": f"azure/{deployment}", "api_base": f"{fake.url}/{resource}",
                                   "api_key": AZURE_KEY, "api_version": AZURE_VERSION}}

    return {"model_list": [azure("batch-general", "gpt-4o-mini-general-deployment", "general"),
                           azure("batch-special", "gpt-4o-mini-special-deployment", "special")],
            "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("batch-seed"), seed_config(fake), batch_worker=True,
                            env={"GATEWAY_BATCH_POLL_SECONDS": "0.2", "GATEWAY_BATCH_POLL_MAX_SECONDS": "0.5",
                                 "GATEWAY_BATCH_SWEEP_SECONDS": "1"})
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _reset(fake) -> None:
    fake.reset()


def new_key(gateway: GatewayProcess, models: list[str]) -> str:
    """The seed's `/key/generate {"models": [...]}`: the key's plaintext."""
    return key_issue(gateway, models=models)["key"]


@pytest.fixture(scope="module")
def developer_key(gateway) -> str:
    return new_key(gateway, [GROUP])


@pytest.fixture
def client(gateway, developer_key) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.url, api_key=developer_key, max_retries=0, timeout=60) as sdk:
        yield sdk


def upload(client: OpenAI, tmp_path) -> str:
    request_file = tmp_path / "request.jsonl"
    request_file.write_bytes(SEED_INPUT)
    with request_file.open("rb") as handle:
        created = client.files.create(file=handle, purpose="batch", extra_body={"target_model_names": GROUP})
    return created.id


def wait_for(client: OpenAI, batch_id: str, statuses: set[str], timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def lines_of(data: bytes) -> list[dict]:
    return [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]


def test_the_operator_sees_the_group_in_batch_mode(gateway, developer_key):
    response = requests.get(f"{gateway.url}/model_group/info",
                            headers={"Authorization": f"Bearer {developer_key}"}, timeout=10)
    assert response.status_code == 200
    [group] = [entry for entry in response.json()["data"] if entry["model_group"] == GROUP]
    assert group["mode"] == "batch"


def test_the_seeds_end_to_end_example(client, fake, tmp_path):
    file_id = upload(client, tmp_path)
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"description": "Test batch job"})
    assert (batch.object, batch.status, batch.endpoint, batch.input_file_id, batch.completion_window,
            batch.metadata) == ("batch", "validating", "/v1/chat/completions", file_id, "24h",
                                {"description": "Test batch job"})

    done = wait_for(client, batch.id, {"completed", "failed", "expired", "cancelled"})
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (2, 2, 0)
    assert done.error_file_id is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at

    output = lines_of(client.files.content(done.output_file_id).read())
    assert [line["custom_id"] for line in output] == ["request-1", "request-2"]
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["usage"]["total_tokens"] > 0

    # The batch ran on one Azure deployment with that deployment's own rewritten copy of the file.
    ran = [(prefix, held) for prefix in DEPLOYMENTS for held in fake.batches_under(prefix)]
    assert len(ran) == 1
    prefix, provider_batch = ran[0]
    assert [line["body"]["model"] for line in provider_batch.lines] == [DEPLOYMENTS[prefix]] * 2
    assert [line["custom_id"] for line in provider_batch.lines] == ["request-1", "request-2"]

    listed = client.batches.list(limit=10, extra_query={"target_model_names": GROUP})
    assert batch.id in [item.id for item in listed.data]
    assert client.batches.list(extra_query={"target_model_names": "another-group"}).data == []


def test_successive_batches_spread_across_both_deployments(client, fake, tmp_path):
    file_id = upload(client, tmp_path)
    created = [client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                     completion_window="24h") for _ in range(4)]
    finished = [wait_for(client, batch.id, {"completed", "failed"}) for batch in created]
    assert [batch.status for batch in finished] == ["completed"] * 4
    per_deployment = {prefix: len(fake.batches_under(prefix)) for prefix in DEPLOYMENTS}
    assert sum(per_deployment.values()) == 4
    assert all(count >= 1 for count in per_deployment.values()), per_deployment
    for batch in finished:
        output = lines_of(client.files.content(batch.output_file_id).read())
        assert [line["custom_id"] for line in output] == ["request-1", "request-2"]


def test_cancel_a_running_batch(client, fake, tmp_path):
    fake.batch_plan = ["validating"] + ["in_progress"] * 200 + ["completed"]
    file_id = upload(client, tmp_path)
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert wait_for(client, batch.id, {"in_progress"}).status == "in_progress"
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None
    done = wait_for(client, batch.id, {"cancelled"})
    assert done.status == "cancelled" and done.cancelled_at is not None
    provider_batches = [held for prefix in DEPLOYMENTS for held in fake.batches_under(prefix)]
    assert len(provider_batches) == 1 and provider_batches[0].cancel_requests >= 1


def test_another_key_sees_neither_the_batch_nor_its_files(gateway, client, tmp_path):
    file_id = upload(client, tmp_path)
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(client, batch.id, {"completed"})
    stranger = new_key(gateway, [GROUP])
    with OpenAI(base_url=gateway.url, api_key=stranger, max_retries=0, timeout=30) as other:
        for call in (lambda: other.batches.retrieve(batch.id), lambda: other.batches.cancel(batch.id),
                     lambda: other.files.content(done.output_file_id), lambda: other.files.retrieve(file_id)):
            with pytest.raises(openai.NotFoundError) as refused:
                call()
            assert refused.value.status_code == 404
        assert other.batches.list().data == []
    with OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30) as master:
        assert master.batches.retrieve(batch.id).status == "completed"
