"""Batch inputs (`purpose: batch`) in process, through `POST /v1/files` and the services: checked line by line
(a bad file is a 400 quoting its line numbers, and nothing is stored or copied), copied rewritten only to the
deployments that run batches natively from a file (each copy names that deployment's own model), lazily
replicated the same way, and served back exactly as uploaded. Providers are the loopback fake."""
from __future__ import annotations

import io
import tracemalloc

import orjson
import pytest
from django.test import Client

from files_registry.choices import ProviderFileStatus
from files_registry.copies import ProviderCopyFailedError
from files_registry.models import ManagedFile, ProviderFile
from files_registry.services import (
    FileUpload,
    managed_file_create,
    managed_file_upload,
    provider_copies_retry,
    provider_copy_ensure,
)
from keys.principal import MASTER as MASTER_CALLER
from models_registry.snapshot import current_snapshot
from providers.http import Deadline
from tests.fakes.openai_server import FakeOpenAI
from tests.files_registry.support import PDF, UPSTREAM_KEY, sha256, stored_files
from tests.keys import support as key_support
from tests.keys.support import MASTER, bearer, generate
from tests.proxy_api.helpers import envelope, error_body

fresh_key_state = key_support.fresh_key_state

GROUP = "gpt-4o-batch"
# deployment id -> (the fake's account prefix for its files, the model its copy must name); the native ones.
NATIVE = {
    "az-east": ("/east/openai", "east-deployment"),
    "az-west": ("/west/openai", "west-deployment"),
    "oa-native": ("/native/v1", "gpt-4o-mini-2024-07-18"),
}
# Accounts of the group's other deployments: file-capable, yet they run batches on the gateway's workers.
GATEWAY_PREFIXES = ("/gateway/v1", "/like/v1")


def batch_config(fake: FakeOpenAI) -> dict:
    def entry(group: str, deployment_id: str, model: str, model_info: dict | None = None, **params) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id, **(model_info or {})},
                "litellm_params": {"model": model, **params}}

    azure = {"api_version": "2024-10-21", "api_key": UPSTREAM_KEY}
    return {"model_list": [
        entry(GROUP, "az-east", "azure/east-deployment", {"mode": "batch"}, api_base=f"{fake.url}/east", **azure),
        entry(GROUP, "az-west", "azure/west-deployment", {"mode": "batch"}, api_base=f"{fake.url}/west", **azure),
        entry(GROUP, "oa-native", "openai/gpt-4o-mini-2024-07-18", api_base=f"{fake.url}/native/v1",
              api_key=UPSTREAM_KEY),
        entry(GROUP, "oa-gateway", "openai/gpt-4o-mini", {"batch_engine": "gateway"},
              api_base=f"{fake.url}/gateway/v1", api_key=UPSTREAM_KEY),
        entry(GROUP, "like", "openai_like/llama-3", api_base=f"{fake.url}/like/v1"),
        entry(GROUP, "mock", "mock/mock-batch"),
        entry("other-group", "other", "openai/gpt-4o", api_base=f"{fake.url}/other/v1", api_key=UPSTREAM_KEY),
    ]}


@pytest.fixture
def batch_gateway(configure_gateway, fake_openai: FakeOpenAI, file_storage) -> FakeOpenAI:
    configure_gateway(batch_config(fake_openai))
    return fake_openai


def request_line(custom_id: str, model: str = GROUP, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"Say {custom_id}"}],
                     "max_tokens": 16, **body}}


def jsonl(*rows: dict | bytes) -> bytes:
    return b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows)


INPUT = jsonl(request_line("req-1"), request_line("req-2", temperature=0.5), request_line("req-3"))


def post_upload(client: Client, data: bytes, *, headers: dict = MASTER, purpose: str = "batch",
                targets: str | None = GROUP, name: str = "requests.jsonl"):
    handle = io.BytesIO(data)
    handle.name = name
    fields = {"file": handle, "purpose": purpose}
    if targets is not None:
        fields["target_model_names"] = targets
    return client.post("/v1/files", data=fields, **headers)


def lines_of(data: bytes) -> list[dict]:
    return [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]


def rewritten(model: str, data: bytes = INPUT) -> list[dict]:
    return [{**row, "body": {**row["body"], "model": model}} for row in lines_of(data)]


def assert_nothing_stored(fake: FakeOpenAI, storage) -> None:
    assert ManagedFile.objects.count() == 0 and ProviderFile.objects.count() == 0
    assert stored_files(storage) == []
    assert fake.requests == []


def copy_held(fake: FakeOpenAI, prefix: str):
    [held] = fake.files_under(prefix)
    return held


@pytest.mark.django_db
def test_each_native_deployment_gets_its_own_rewritten_copy_and_no_other_does(client, batch_gateway, file_storage):
    response = post_upload(client, INPUT)
    assert response.status_code == 200, response.content
    created = orjson.loads(response.content)
    assert (created["bytes"], created["filename"], created["purpose"], created["status"]) == (
        len(INPUT), "requests.jsonl", "batch", "processed")
    assert created["target_model_names"] == [GROUP]
    assert [(c["deployment_id"], c["status"], c["error"]) for c in created["provider_copies"]] == [
        (deployment_id, "uploaded", None) for deployment_id in NATIVE]
    for prefix, model in NATIVE.values():
        held = copy_held(batch_gateway, prefix)
        assert (held.filename, held.purpose) == ("requests.jsonl", "batch")
        assert lines_of(held.data) == rewritten(model)
        assert held.size == len(held.data)
    for prefix in (*GATEWAY_PREFIXES, "/other/v1"):
        assert batch_gateway.files_under(prefix) == []
    uploads = sorted(r.path for r in batch_gateway.requests)
    assert uploads == ["/east/openai/files", "/native/v1/files", "/west/openai/files"]
    assert sorted(ProviderFile.objects.values_list("deployment_id", flat=True)) == sorted(NATIVE)

    [stored] = stored_files(file_storage)
    assert stored.read_bytes() == INPUT
    content = client.get(f"/v1/files/{created['id']}/content", **MASTER)
    assert content.status_code == 200 and b"".join(content.streaming_content) == INPUT
    assert content["Content-Length"] == str(len(INPUT))


@pytest.mark.django_db
def test_other_purposes_still_go_to_every_file_capable_deployment_unchanged(client, batch_gateway):
    response = post_upload(client, INPUT, purpose="user_data")
    assert response.status_code == 200, response.content
    copied = [c["deployment_id"] for c in orjson.loads(response.content)["provider_copies"]]
    assert copied == ["az-east", "az-west", "mock", "oa-gateway", "oa-native"]
    # Azure has no `user_data` purpose: its adapter files the copy under `assistants`.
    for prefix, purpose in (("/east/openai", "assistants"), ("/west/openai", "assistants"),
                            ("/native/v1", "user_data"), ("/gateway/v1", "user_data")):
        held = copy_held(batch_gateway, prefix)
        assert (held.purpose, held.sha256) == (purpose, sha256(INPUT))


@pytest.mark.django_db
def test_a_file_with_bad_lines_is_refused_with_their_numbers_and_nothing_is_kept(client, batch_gateway,
                                                                                 file_storage):
    data = jsonl(request_line("req-1"), b"", {**request_line(""), "custom_id": ""}, b'{"custom_id": "x"',
                 request_line("req-1"), {**request_line("req-5"), "method": "GET"},
                 {**request_line("req-6"), "url": "/v1/responses"}, request_line("req-7", model="other-group"),
                 request_line("req-8", model="no-such-group"), request_line("req-9", stream=True))
    response = post_upload(client, data)
    assert response.status_code == 400
    assert error_body(response) == envelope(
        "Line 3: 'custom_id' must be a non-empty string.; "
        "Line 4: this line is not valid JSON.; "
        "Line 5: custom_id 'req-1' appears more than once.; "
        "Line 6: 'method' must be \"POST\".; "
        "Line 7: 'url' must be one of /v1/chat/completions, /v1/completions, /v1/embeddings.; "
        "Line 8: model 'other-group' is not one of the target_model_names of this upload ('gpt-4o-batch').; "
        "Line 9: model 'no-such-group' is not a model group of this gateway.; "
        "Line 10: batch requests cannot be streamed ('body.stream').",
        "invalid_request_error", "file", "invalid_batch_input")
    assert_nothing_stored(batch_gateway, file_storage)


@pytest.mark.django_db
def test_one_model_per_file_and_only_the_first_problems_are_quoted(client, batch_gateway, file_storage):
    mixed = post_upload(client, jsonl(request_line("a"), request_line("b", model="other-group")),
                        targets=f"{GROUP},other-group")
    assert mixed.status_code == 400
    assert error_body(mixed)["error"]["message"] == (
        "Line 2: model 'other-group' differs from 'gpt-4o-batch'; a batch runs on one model.")
    many = post_upload(client, jsonl(*[b"[1]"] * 23))
    assert many.status_code == 400
    message = error_body(many)["error"]["message"]
    assert message == "; ".join(f"Line {n}: each line must be a JSON object." for n in range(1, 21)) + (
        "; and 3 more problems")
    blank = post_upload(client, b"\n \n")
    assert error_body(blank) == envelope("The batch input holds no requests.", "invalid_request_error", "file",
                                         "invalid_batch_input")
    assert_nothing_stored(batch_gateway, file_storage)


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_key_state")
def test_a_key_may_name_only_models_it_may_use(client, batch_gateway, file_storage):
    key = generate(client, models=["other-group"])["key"]
    denied = post_upload(client, INPUT, headers=bearer(key))
    assert denied.status_code == 403
    assert error_body(denied) == envelope(
        "This key may not use model 'gpt-4o-batch'. Models it may use: other-group.", "key_model_access_denied",
        "target_model_names", "key_model_access_denied")
    unnamed = post_upload(client, INPUT, headers=bearer(key), targets=None)
    assert unnamed.status_code == 400
    assert error_body(unnamed) == envelope(
        "; ".join(f"Line {n}: This key may not use model 'gpt-4o-batch'. Models it may use: other-group."
                  for n in (1, 2, 3)), "invalid_request_error", "file", "invalid_batch_input")
    assert_nothing_stored(batch_gateway, file_storage)


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_key_state")
def test_the_keys_aliases_resolve_the_lines_model(client, batch_gateway):
    key = generate(client, models=["batch-alias"], aliases={"batch-alias": GROUP})["key"]
    data = jsonl(request_line("a", model="batch-alias"), request_line("b", model="batch-alias"))
    response = post_upload(client, data, headers=bearer(key), targets="batch-alias")
    assert response.status_code == 200, response.content
    assert orjson.loads(response.content)["target_model_names"] == [GROUP]
    assert lines_of(copy_held(batch_gateway, "/east/openai").data) == rewritten("east-deployment", data)
    direct = post_upload(client, jsonl(request_line("a")), headers=bearer(key), targets="batch-alias")
    assert error_body(direct)["error"]["message"] == (
        "Line 1: This key may not use model 'gpt-4o-batch'. Models it may use: batch-alias.")


@pytest.mark.django_db
def test_without_target_model_names_the_model_must_be_a_group_and_nothing_is_copied(client, batch_gateway):
    unknown = post_upload(client, jsonl(request_line("a", model="nope")), targets=None)
    assert error_body(unknown)["error"]["message"] == "Line 1: model 'nope' is not a model group of this gateway."
    response = post_upload(client, INPUT, targets=None)
    assert response.status_code == 200
    created = orjson.loads(response.content)
    assert (created["target_model_names"], created["provider_copies"], created["status"]) == ([], [], "processed")
    assert batch_gateway.requests == []


@pytest.mark.django_db
def test_lazy_replication_makes_the_rewritten_copy_once(client, batch_gateway):
    created = orjson.loads(post_upload(client, INPUT, targets=None).content)
    managed_file = ManagedFile.objects.get(id=created["id"])
    west = current_snapshot().by_id["az-west"]
    ref = provider_copy_ensure(managed_file=managed_file, deployment=west, deadline=Deadline.after(30))
    held = copy_held(batch_gateway, "/west/openai")
    assert (ref.file_id, held.filename, held.purpose) == (held.id, "requests.jsonl", "batch")
    assert lines_of(held.data) == rewritten("west-deployment")
    again = provider_copy_ensure(managed_file=managed_file, deployment=west, deadline=Deadline.after(30))
    assert again == ref and len(batch_gateway.requests) == 1
    copy = ProviderFile.objects.get(managed_file=managed_file, deployment_id="az-west")
    assert (copy.status, copy.provider_file_id, copy.attempts) == (ProviderFileStatus.UPLOADED, held.id, 1)


@pytest.mark.django_db
def test_the_admin_retry_copies_a_batch_input_to_native_deployments_only(client, batch_gateway):
    batch_gateway.fail_next(status=500, body={"error": {"message": "busy"}}, path_contains="/west/openai/files")
    created = orjson.loads(post_upload(client, INPUT).content)
    assert [(c["deployment_id"], c["status"]) for c in created["provider_copies"]] == [
        ("az-east", "uploaded"), ("az-west", "failed"), ("oa-native", "uploaded")]
    managed_file = ManagedFile.objects.get(id=created["id"])
    batch_gateway.reset()
    assert provider_copies_retry(managed_file=managed_file) == {"az-east": None, "az-west": None,
                                                                "oa-native": None}
    assert [r.path for r in batch_gateway.requests] == ["/west/openai/files"]
    assert lines_of(copy_held(batch_gateway, "/west/openai").data) == rewritten("west-deployment")


@pytest.mark.django_db
def test_a_stored_input_that_is_not_valid_gets_no_copy_and_says_why(batch_gateway):
    legacy = managed_file_create(owner_key_id="", owner_team_id="", content=io.BytesIO(PDF), size=len(PDF),
                                 filename="old.jsonl", mime_type="application/jsonl", purpose="batch",
                                 target_model_names=[])
    east = current_snapshot().by_id["az-east"]
    with pytest.raises(ProviderCopyFailedError) as raised:
        provider_copy_ensure(managed_file=legacy, deployment=east, deadline=Deadline.after(30))
    assert (raised.value.code, raised.value.status_code) == ("invalid_batch_input", 502)
    assert raised.value.message == f"File {legacy.id} is not a valid batch input: Line 1: this line is not valid JSON."
    copy = ProviderFile.objects.get(managed_file=legacy, deployment_id="az-east")
    assert (copy.status, copy.error) == (ProviderFileStatus.FAILED, f"invalid_batch_input: {raised.value.message}")
    assert batch_gateway.requests == []


@pytest.mark.django_db
def test_a_large_input_is_checked_stored_and_rewritten_a_line_at_a_time(batch_gateway, file_storage, tmp_path):
    """~24 MB of requests: the upload (check, store) and a rewritten copy each stay far below the file's size
    in Python memory (the check keeps only the 30,000 custom_ids it has seen, ~2 MB), the upload being read
    from its file twice (check, then store)."""
    row = orjson.dumps(request_line("x", padding="p" * 800))
    count = 30_000
    source = tmp_path / "big.jsonl"
    with source.open("wb") as handle:
        for number in range(count):
            handle.write(row.replace(b'"x"', f'"r{number}"'.encode(), 1) + b"\n")
    size = source.stat().st_size
    batch_gateway.keep_file_bytes = 0  # the fake shares this process: it must not hold the copy either
    tracemalloc.start()
    try:
        with source.open("rb") as content:
            managed_file = managed_file_upload(
                caller=MASTER_CALLER, upload=FileUpload(content=content, size=size, filename="big.jsonl",
                                                        mime_type="application/jsonl"),
                purpose="batch", target_model_names=[], expires_after_seconds=None, max_bytes=size)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        provider_copy_ensure(managed_file=managed_file, deployment=current_snapshot().by_id["az-east"],
                             deadline=Deadline.after(120))
        copy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 24_000_000
    assert upload_peak < 8_000_000 and copy_peak < 8_000_000, (upload_peak, copy_peak)
    [stored] = stored_files(file_storage)
    assert stored.stat().st_size == size
    [held] = batch_gateway.files_under("/east/openai")
    assert held.size == size + count * (len(b'"east-deployment"') - len(f'"{GROUP}"'.encode()))
