"""Native batches on OpenAI and Azure: the adapters' batch methods against the loopback fake.

Each test asserts what reached the fake (method, path, query, headers, body), the `ProviderBatch` the
adapter made of the answer, and the result lines read back from the provider's output and error files.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from providers.batches import BATCH_INPUT_FILE, ProviderBatch
from providers.errors import (
    UnsupportedOperationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamServerError,
)
from providers.files import ProviderFileRef
from providers.http import iter_jsonl_lines
from providers.openai import provider_batch_from
from providers.registry import adapter_for
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.helpers import UPSTREAM_KEY, target_for

AZURE_DEPLOYMENT = "gpt-4o-eu"
METADATA = {"gatehouse_batch_id": "batch_abc", "gatehouse_part": "0"}


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def fake(_server) -> FakeOpenAI:
    _server.reset()
    return _server


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(custom_id: str, model: str = "gpt-4o-mini", **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"hi {custom_id}"}], **body}}


def upload(adapter, target, lines: list[dict], deadline) -> ProviderFileRef:
    data = jsonl(lines)
    return adapter.file_upload(target, content=io.BytesIO(data), size=len(data), filename="input.jsonl",
                               purpose="batch", mime_type="application/jsonl", deadline=deadline)


def azure_target(fake: FakeOpenAI, **fields):
    return target_for(None, provider="azure", model=AZURE_DEPLOYMENT, api_base=fake.url, **fields)


def created_batch(fake, deadline, lines, *, azure: bool = False):
    adapter = adapter_for("azure" if azure else "openai")
    target = azure_target(fake) if azure else target_for(fake.url)
    ref = upload(adapter, target, lines, deadline)
    batch = adapter.batch_create(target, endpoint="/v1/chat/completions", input_file=ref, requests=None,
                                 metadata=METADATA, deadline=deadline)
    return adapter, target, ref, batch


def test_openai_and_azure_run_batches_natively_from_a_file_and_compatible_servers_do_not():
    for provider in ("openai", "azure"):
        adapter = adapter_for(provider)
        assert (adapter.supports_batches, adapter.batch_input) == (True, BATCH_INPUT_FILE)
    for provider in ("hosted_vllm", "openai_like", "text-completion-openai"):
        assert adapter_for(provider).supports_batches is False
    assert adapter_for("openai").supports_files is True  # the compatible instance did not change the class


def test_create_posts_the_input_file_endpoint_window_and_metadata(fake, deadline):
    _, _, ref, batch = created_batch(fake, deadline, [chat_line("a"), chat_line("b")])

    [request] = fake.requests_to("/batches")
    assert (request.method, request.path, request.query) == ("POST", "/v1/batches", {})
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"input_file_id": ref.file_id, "endpoint": "/v1/chat/completions",
                            "completion_window": "24h", "metadata": METADATA}
    [held] = fake.batches_under("/v1")
    assert batch == ProviderBatch(id=held.id, status="validating", raw_status="validating")
    assert [line["custom_id"] for line in held.lines] == ["a", "b"]


def test_retrieve_follows_the_providers_statuses_and_live_counts(fake, deadline):
    adapter, target, _, batch = created_batch(fake, deadline, [chat_line(str(n)) for n in range(4)])

    seen = [adapter.batch_retrieve(target, batch.id, deadline) for _ in range(3)]

    assert [(b.status, b.total, b.completed, b.failed, b.finished) for b in seen] == [
        ("in_progress", 4, 2, 0, False), ("finalizing", 4, 4, 0, False), ("completed", 4, 4, 0, True)]
    done = seen[-1]
    assert done.output_file_id is not None and done.error_file_id is None
    gets = fake.requests_to(f"/batches/{batch.id}")
    assert [(r.method, r.path) for r in gets] == [("GET", f"/v1/batches/{batch.id}")] * 3


def test_results_are_the_output_then_the_error_file_line_by_line_with_custom_ids(fake, deadline):
    lines = [chat_line("ok-1"), chat_line("bad", max_tokens=-1), chat_line("ok-2")]
    adapter, target, _, batch = created_batch(fake, deadline, lines)
    for _ in range(3):
        finished = adapter.batch_retrieve(target, batch.id, deadline)
    assert (finished.status, finished.completed, finished.failed) == ("completed", 2, 1)

    results = list(adapter.batch_results(target, finished, deadline))

    assert [r["custom_id"] for r in results] == ["ok-1", "ok-2", "bad"]
    ok = results[0]
    assert ok["error"] is None and ok["id"].startswith("batch_req_")
    assert ok["response"]["status_code"] == 200
    assert ok["response"]["body"]["model"] == "gpt-4o-mini"
    assert ok["response"]["body"]["choices"][0]["message"]["content"] == fake.reply
    assert ok["response"]["body"]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    bad = results[2]
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["param"] == "max_tokens"
    contents = [r.path for r in fake.requests_to("/content")]
    assert contents == [f"/v1/files/{finished.output_file_id}/content", f"/v1/files/{finished.error_file_id}/content"]


def test_a_failed_batch_carries_the_providers_errors(fake, deadline):
    fake.batch_models = {"gpt-4o-mini"}
    lines = [chat_line("a"), chat_line("b", model="gateway-group")]
    adapter, target, _, batch = created_batch(fake, deadline, lines)

    failed = adapter.batch_retrieve(target, batch.id, deadline)

    assert (failed.status, failed.finished, failed.output_file_id, failed.error_file_id) == ("failed", True, None,
                                                                                              None)
    assert failed.errors == [{"code": "model_not_found", "line": 2, "param": "body.model",
                              "message": "The model 'gateway-group' does not exist or you do not have access to it."}]
    assert list(adapter.batch_results(target, failed, deadline)) == []


def test_cancel_answers_cancelling_then_cancelled_with_the_lines_done_so_far(fake, deadline):
    adapter, target, _, batch = created_batch(fake, deadline, [chat_line(str(n)) for n in range(4)])
    assert adapter.batch_retrieve(target, batch.id, deadline).status == "in_progress"

    cancelling = adapter.batch_cancel(target, batch.id, deadline)
    again = adapter.batch_cancel(target, batch.id, deadline)
    cancelled = adapter.batch_retrieve(target, batch.id, deadline)

    assert (cancelling.status, again.status, cancelled.status) == ("cancelling", "cancelling", "cancelled")
    cancels = fake.requests_to("/cancel")
    assert [(r.method, r.path, r.body) for r in cancels] == [("POST", f"/v1/batches/{batch.id}/cancel", None)] * 2
    assert [r["custom_id"] for r in adapter.batch_results(target, cancelled, deadline)] == ["0", "1"]


def test_an_expired_batch_keeps_its_partial_results_and_expired_lines(fake, deadline):
    fake.batch_plan = ["validating", "in_progress", "expired"]
    fake.batch_lines_done = 1
    adapter, target, _, batch = created_batch(fake, deadline, [chat_line("a"), chat_line("b")])
    adapter.batch_retrieve(target, batch.id, deadline)
    expired = adapter.batch_retrieve(target, batch.id, deadline)

    results = list(adapter.batch_results(target, expired, deadline))

    assert (expired.status, expired.completed, expired.failed) == ("expired", 1, 1)
    assert [(r["custom_id"], r["response"] is not None, r["error"]) for r in results] == [
        ("a", True, None),
        ("b", False, {"code": "batch_expired",
                      "message": "This request could not be executed before the completion window expired."})]


def test_azure_batches_live_on_the_resource_with_api_version_and_api_key(fake, deadline):
    adapter, target, ref, batch = created_batch(fake, deadline, [chat_line("a", model=AZURE_DEPLOYMENT)], azure=True)
    for _ in range(3):
        finished = adapter.batch_retrieve(target, batch.id, deadline)
    results = list(adapter.batch_results(target, finished, deadline))
    adapter.batch_file_delete(target, finished.output_file_id, deadline)

    version = {"api-version": ["2024-10-21"]}
    calls = [(r.method, r.path, r.query) for r in fake.requests if "/files" not in r.path or "/content" in r.path
             or r.method == "DELETE"]
    assert calls == [("POST", "/openai/batches", version)] + [("GET", f"/openai/batches/{batch.id}", version)] * 3 + [
        ("GET", f"/openai/files/{finished.output_file_id}/content", version),
        ("DELETE", f"/openai/files/{finished.output_file_id}", version)]
    create = fake.requests_to("/batches")[0]
    assert create.headers["api-key"] == UPSTREAM_KEY and "authorization" not in create.headers
    assert create.body["input_file_id"] == ref.file_id
    [held] = fake.batches_under("/openai")
    assert held.lines[0]["body"]["model"] == AZURE_DEPLOYMENT
    assert [r["response"]["body"]["model"] for r in results] == [AZURE_DEPLOYMENT]
    assert [stored.id for stored in fake.files_under("/openai")] == [ref.file_id]


def test_azure_cancel_goes_to_the_resource_cancel_path(fake, deadline):
    adapter, target, _, batch = created_batch(fake, deadline, [chat_line("a", model=AZURE_DEPLOYMENT)], azure=True)
    assert adapter.batch_cancel(target, batch.id, deadline).status == "cancelling"
    [cancel] = fake.requests_to("/cancel")
    assert (cancel.method, cancel.path, cancel.query) == ("POST", f"/openai/batches/{batch.id}/cancel",
                                                          {"api-version": ["2024-10-21"]})


def test_batch_file_delete_is_idempotent(fake, deadline):
    adapter, target, ref, _ = created_batch(fake, deadline, [chat_line("a")])
    adapter.batch_file_delete(target, ref.file_id, deadline)
    adapter.batch_file_delete(target, ref.file_id, deadline)  # the provider's 404: already gone
    assert fake.files_under("/v1") == []
    assert [(r.method, r.path) for r in fake.requests if r.method == "DELETE"] == [
        ("DELETE", f"/v1/files/{ref.file_id}")] * 2


def test_provider_errors_are_mapped(fake, deadline):
    adapter, target = adapter_for("openai"), target_for(fake.url)
    missing = ProviderFileRef(file_id="file-nope", uri=None, mime_type="application/jsonl")
    with pytest.raises(UpstreamBadRequestError) as refused:
        adapter.batch_create(target, endpoint="/v1/chat/completions", input_file=missing, requests=None,
                             metadata=METADATA, deadline=deadline)
    assert refused.value.param == "input_file_id"
    fake.fail_next(status=503, body={"error": {"message": "overloaded", "type": "server_error"}},
                   path_contains="/batches")
    with pytest.raises(UpstreamServerError) as overloaded:
        adapter.batch_retrieve(target, "batch_x", deadline)
    assert (overloaded.value.failover, overloaded.value.message, overloaded.value.status_code) == (
        True, "overloaded", 503)
    with pytest.raises(UpstreamNotFoundError):
        adapter.batch_retrieve(target, "batch_unknown", deadline)
    fake.fail_next(kind="malformed", path_contains="/batches")
    with pytest.raises(UpstreamServerError):
        adapter.batch_cancel(target, "batch_x", deadline)


def test_compatible_servers_refuse_batch_calls_before_any_request(fake, deadline):
    adapter, target = adapter_for("openai_like"), target_for(fake.url)
    with pytest.raises(UnsupportedOperationError):
        adapter.batch_retrieve(target, "batch_x", deadline)
    adapter.batch_file_delete(target, "file-x", deadline)  # nothing to delete on a server without files
    assert fake.requests == []


def test_provider_batch_mapping_keeps_unknown_statuses_pollable():
    mapped = provider_batch_from({"id": "b1", "status": "queued_for_capacity", "request_counts": {"total": 3},
                                  "errors": {"data": [{"code": "x", "message": "m"}, "junk"]}})
    assert mapped == ProviderBatch(id="b1", status="in_progress", raw_status="queued_for_capacity", total=3,
                                   errors=[{"code": "x", "message": "m"}])
    with pytest.raises(UpstreamServerError):
        provider_batch_from({"status": "completed"})


def test_jsonl_lines_reassembles_lines_cut_anywhere_and_skips_blanks():
    pieces = [b'{"a"', b': 1}\r\n\n{"b": ', b"2}\n", b"", b'{"c": 3}']
    assert list(iter_jsonl_lines(iter(pieces))) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_a_result_line_that_is_not_json_is_an_upstream_error(fake, deadline):
    adapter, target, _, batch = created_batch(fake, deadline, [chat_line("a")])
    for _ in range(3):
        finished = adapter.batch_retrieve(target, batch.id, deadline)
    fake.files[finished.output_file_id].data = b'{"custom_id": "a"}\nnot json\n'
    results = adapter.batch_results(target, finished, deadline)
    assert next(results) == {"custom_id": "a"}
    with pytest.raises(UpstreamServerError) as broken:
        next(results)
    assert broken.value.code == "malformed_batch_results"
