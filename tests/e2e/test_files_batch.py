"""Batch input uploads end to end: the seed's `client.files.create(..., purpose="batch",
extra_body={"target_model_names": "gpt-4o-batch"})` with the official OpenAI SDK against a running gateway
whose group holds two Azure deployments on a loopback fake. Each deployment receives its own copy, every line
naming that deployment; a bad file is a 400 quoting its line numbers and reaches no provider; a key without the
group is refused; deployments that run batches on the gateway's own workers (mock, OpenAI-compatible servers)
get no copy."""
from __future__ import annotations

from collections.abc import Iterator

import openai
import orjson
import pytest
from openai import OpenAI

from tests.e2e.helpers import key_issue
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
AZURE_KEY = "azure-upstream-batch-key"
AZURE_VERSION = "2024-10-21"
GROUP = "gpt-4o-batch"
# The seed's two Azure deployments, each its own resource (the fake's account prefix) -> its deployment name.
AZURE = {"/general/openai": "gpt-4o-mini-general-deployment", "/special/openai": "gpt-4o-mini-special-deployment"}


def seed_line(custom_id: str, system: str, model: str = GROUP) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "system", "content": system},
                                                  {"role": "user", "content": "Hello world!"}],
                     "max_tokens": 1000}}


def jsonl(*rows: dict | bytes) -> bytes:
    return b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows)


# The seed's request.jsonl, byte for byte in its own formatting.
SEED_INPUT = (
    b'{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-batch", '
    b'"messages": [{"role": "system", "content": "You are a helpful assistant."},{"role": "user", "content": '
    b'"Hello world!"}],"max_tokens": 1000}}\n'
    b'{"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-batch", '
    b'"messages": [{"role": "system", "content": "You are an unhelpful assistant."},{"role": "user", "content": '
    b'"Hello world!"}],"max_tokens": 1000}}\n'
)
SEED_LINES = [seed_line("request-1", "You are a helpful assistant."),
              seed_line("request-2", "You are an unhelpful assistant.")]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI()
    yield started
    started.close()


def batch_config(fake: FakeOpenAI) -> dict:
    def azure(group: str, deployment_id: str, deployment: str, resource: str) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id, "mode": "batch"},
                "litellm_params": {"model": f"azure/{deployment}", "api_base": f"{fake.url}/{resource}",
                                   "api_key": AZURE_KEY, "api_version": AZURE_VERSION}}

    return {"model_list": [
        azure(GROUP, "batch-general", "gpt-4o-mini-general-deployment", "general"),
        azure(GROUP, "batch-special", "gpt-4o-mini-special-deployment", "special"),
        azure("mixed-batch", "mixed-azure", "mixed-deployment", "mixed"),
        {"model_name": "mixed-batch", "model_info": {"id": "mixed-mock", "mode": "batch"},
         "litellm_params": {"model": "mock/mock-batch"}},
        {"model_name": "mixed-batch", "model_info": {"id": "mixed-like", "mode": "batch"},
         "litellm_params": {"model": "openai_like/llama-3.1-8b", "api_base": f"{fake.url}/like/v1"}},
    ], "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture(scope="module")
def batch_gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("files-batch-gateway"), batch_config(fake))
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _reset(fake) -> None:
    fake.reset()


def new_key(gateway: GatewayProcess, models: list[str]) -> str:
    """The seed's `/key/generate {"models": [...]}`: the key's plaintext."""
    return key_issue(gateway, models=models)["key"]


@pytest.fixture(scope="module")
def batch_key(batch_gateway) -> str:
    return new_key(batch_gateway, [GROUP])


@pytest.fixture
def sdk(batch_gateway, batch_key) -> Iterator[OpenAI]:
    with OpenAI(base_url=batch_gateway.v1, api_key=batch_key, max_retries=0, timeout=60) as client:
        yield client


def lines_of(data: bytes) -> list[dict]:
    return [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]


def test_the_seeds_upload_gives_each_azure_deployment_its_own_rewritten_copy(sdk, fake, tmp_path):
    request_file = tmp_path / "request.jsonl"
    request_file.write_bytes(SEED_INPUT)
    with request_file.open("rb") as handle:
        created = sdk.files.create(file=handle, purpose="batch", extra_body={"target_model_names": GROUP})
    assert (created.object, created.filename, created.bytes, created.purpose, created.status) == (
        "file", "request.jsonl", len(SEED_INPUT), "batch", "processed")
    assert created.model_extra["target_model_names"] == [GROUP]
    assert [(c["deployment_id"], c["model_group"], c["provider"], c["status"], c["error"])
            for c in created.model_extra["provider_copies"]] == [
        ("batch-general", GROUP, "azure", "uploaded", None), ("batch-special", GROUP, "azure", "uploaded", None)]

    for prefix, deployment in AZURE.items():
        [held] = fake.files_under(prefix)
        assert (held.filename, held.purpose, held.size) == ("request.jsonl", "batch", len(held.data))
        assert lines_of(held.data) == [{**line, "body": {**line["body"], "model": deployment}} for line in SEED_LINES]
    uploads = fake.requests
    assert sorted(r.path for r in uploads) == ["/general/openai/files", "/special/openai/files"]
    assert {r.method for r in uploads} == {"POST"}
    assert {r.headers["api-key"] for r in uploads} == {AZURE_KEY}
    assert {r.query["api-version"][0] for r in uploads} == {AZURE_VERSION}

    # The files API shows the upload as it was sent: its size, and its own un-rewritten bytes.
    retrieved = sdk.files.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert sdk.files.content(created.id).read() == SEED_INPUT
    assert [f.id for f in sdk.files.list(purpose="batch")] == [created.id]
    sdk.files.delete(created.id)
    assert fake.files_under("/general/openai") == fake.files_under("/special/openai") == []


def test_an_invalid_file_is_refused_with_its_line_numbers_and_reaches_no_provider(sdk, fake):
    data = jsonl(seed_line("request-1", "a"), b"", b'{"custom_id": "request-2", "method": "POST"',
                 seed_line("request-1", "b"), {**seed_line("request-4", "c"), "url": "/v1/images/generations"},
                 seed_line("request-5", "d", model="mixed-batch"))
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.files.create(file=("request.jsonl", data), purpose="batch", extra_body={"target_model_names": GROUP})
    assert raised.value.status_code == 400
    assert raised.value.body == {
        "message": "Line 3: this line is not valid JSON.; Line 4: custom_id 'request-1' appears more than once.; "
                   "Line 5: 'url' must be one of /v1/chat/completions, /v1/completions, /v1/embeddings.; "
                   "Line 6: This key may not use model 'mixed-batch'. Models it may use: gpt-4o-batch.",
        "type": "invalid_request_error", "param": "file", "code": "invalid_batch_input"}
    with pytest.raises(openai.BadRequestError) as missing_id:
        sdk.files.create(file=("request.jsonl", jsonl({**SEED_LINES[0], "custom_id": ""}, SEED_LINES[1])),
                         purpose="batch", extra_body={"target_model_names": GROUP})
    assert missing_id.value.body["message"] == "Line 1: 'custom_id' must be a non-empty string."
    assert fake.requests == []
    assert sdk.files.list(purpose="batch").data == []


def test_a_key_without_the_group_is_refused_and_nothing_is_stored(batch_gateway, fake):
    other_key = new_key(batch_gateway, ["mixed-batch"])
    with OpenAI(base_url=batch_gateway.v1, api_key=other_key, max_retries=0, timeout=30) as other:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            other.files.create(file=("request.jsonl", SEED_INPUT), purpose="batch",
                               extra_body={"target_model_names": GROUP})
        assert raised.value.status_code == 403
        assert raised.value.body == {
            "message": "This key may not use model 'gpt-4o-batch'. Models it may use: mixed-batch.",
            "type": "key_model_access_denied", "param": "target_model_names", "code": "key_model_access_denied"}
        with pytest.raises(openai.BadRequestError) as unnamed:
            other.files.create(file=("request.jsonl", SEED_INPUT), purpose="batch")
        assert unnamed.value.body["code"] == "invalid_batch_input"
        assert unnamed.value.body["message"] == "; ".join(
            f"Line {n}: This key may not use model 'gpt-4o-batch'. Models it may use: mixed-batch." for n in (1, 2))
        assert other.files.list().data == []
    assert fake.requests == []


def test_deployments_run_on_the_gateways_workers_get_no_copy(batch_gateway, fake):
    data = jsonl(*[seed_line(f"request-{n}", "Be brief.", model="mixed-batch") for n in (1, 2, 3)])
    with OpenAI(base_url=batch_gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as client:
        created = client.files.create(file=("mixed.jsonl", data), purpose="batch",
                                      extra_body={"target_model_names": "mixed-batch"})
        assert [(c["deployment_id"], c["status"]) for c in created.model_extra["provider_copies"]] == [
            ("mixed-azure", "uploaded")]
        [held] = fake.files_under("/mixed/openai")
        assert held.filename == "mixed.jsonl"
        assert [line["body"]["model"] for line in lines_of(held.data)] == ["mixed-deployment"] * 3
        assert [r.path for r in fake.requests] == ["/mixed/openai/files"]
        assert fake.files_under("/like/v1") == []
        assert client.files.content(created.id).read() == data
        client.files.delete(created.id)
