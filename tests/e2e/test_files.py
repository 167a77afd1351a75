"""Managed files end to end: the official OpenAI SDK against a running gateway whose groups hold their copies
on loopback OpenAI fakes (each deployment its own account). Upload with `target_model_names`, retrieve,
byte-identical content, list, delete (every provider copy gone), partial and total failure of a group
(no orphans), another key denied everywhere."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator

import openai
import pytest
import requests
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, free_port, start_gateway

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
UPSTREAM_KEY = "sk-upstream-files-e2e"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeOpenAI]]:
    started = {"x": FakeOpenAI(), "y": FakeOpenAI()}
    yield started
    for fake in started.values():
        fake.close()


def files_config(x: FakeOpenAI, y: FakeOpenAI, dead: str) -> dict:
    def entry(group: str, deployment_id: str, api_base: str) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id},
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": UPSTREAM_KEY}}

    return {"model_list": [
        entry("files-a", "files-a1", f"{x.url}/a1/v1"),
        entry("files-a", "files-a2", f"{x.url}/a2/v1"),
        entry("files-b", "files-b1", f"{y.url}/v1"),
        entry("files-half", "files-half-up", f"{y.url}/half/v1"),
        entry("files-half", "files-half-down", dead),
        entry("files-dead", "files-dead-1", dead),
    ], "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture(scope="module")
def files_gateway(tmp_path_factory, fakes) -> Iterator[GatewayProcess]:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: a provider that is down
    process = start_gateway(tmp_path_factory.mktemp("files-gateway"), files_config(fakes["x"], fakes["y"], dead))
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _reset(fakes) -> None:
    for fake in fakes.values():
        fake.reset()


@pytest.fixture
def sdk(files_gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=files_gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=60) as client:
        yield client


def held(fake: FakeOpenAI, prefix: str) -> list[tuple[str, str, int, str]]:
    return [(f.filename, f.purpose, f.size, f.sha256) for f in fake.files_under(prefix)]


def test_upload_use_everywhere_then_delete_everywhere(sdk, fakes):
    x, y = fakes["x"], fakes["y"]
    created = sdk.files.create(file=("report.pdf", PDF, "application/pdf"), purpose="user_data",
                               extra_body={"target_model_names": "files-a, files-b"})
    assert created.id.startswith("file-") and len(created.id) == 29
    assert (created.object, created.filename, created.bytes, created.purpose, created.status) == (
        "file", "report.pdf", len(PDF), "user_data", "processed")
    assert [(c["deployment_id"], c["status"]) for c in created.model_extra["provider_copies"]] == [
        ("files-a1", "uploaded"), ("files-a2", "uploaded"), ("files-b1", "uploaded")]
    expected = [("report.pdf", "user_data", len(PDF), sha256(PDF))]
    assert held(x, "/a1/v1") == held(x, "/a2/v1") == held(y, "/v1") == expected
    uploads = [r for fake in (x, y) for r in fake.requests if r.method == "POST"]
    assert {r.headers["authorization"] for r in uploads} == {f"Bearer {UPSTREAM_KEY}"}
    assert all(r.headers["content-type"].startswith("multipart/form-data; boundary=") for r in uploads)
    [part] = [p for p in uploads[0].form if p.name == "file"]
    assert (part.filename, part.headers["content-type"], part.size) == ("report.pdf", "application/pdf", len(PDF))

    retrieved = sdk.files.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    content = sdk.files.content(created.id)
    assert content.read() == PDF
    assert content.response.headers["content-type"] == "application/pdf"
    assert created.id in [f.id for f in sdk.files.list()]
    assert [f.id for f in sdk.files.list(purpose="batch")] == [created.id] * 0

    provider_ids = {prefix: fake.files_under(prefix)[0].id for fake, prefix in ((x, "/a1/v1"), (x, "/a2/v1"),
                                                                               (y, "/v1"))}
    deleted = sdk.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    assert x.files_under("/a1/v1") == x.files_under("/a2/v1") == y.files_under("/v1") == []
    deletes = sorted(r.path for fake in (x, y) for r in fake.requests if r.method == "DELETE")
    assert deletes == sorted(f"{prefix}/files/{file_id}" for prefix, file_id in provider_ids.items())
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.files.retrieve(created.id)
    assert raised.value.body == {"message": f"No such File object: {created.id}", "type": "invalid_request_error",
                                 "param": "file_id", "code": "file_not_found"}
    assert created.id not in [f.id for f in sdk.files.list()]


def test_the_sdks_list_form_of_target_model_names_works(sdk, fakes):
    created = sdk.files.create(file=("rows.jsonl", b'{"a": 1}\n', "application/jsonl"), purpose="user_data",
                               extra_body={"target_model_names": ["files-a", "files-b"]})
    assert created.model_extra["target_model_names"] == ["files-a", "files-b"]
    assert held(fakes["y"], "/v1") == [("rows.jsonl", "user_data", 9, sha256(b'{"a": 1}\n'))]
    sdk.files.delete(created.id)


def test_one_provider_down_the_upload_succeeds_and_says_which_copy_failed(sdk, fakes):
    created = sdk.files.create(file=("report.pdf", PDF), purpose="user_data",
                               extra_body={"target_model_names": "files-half"})
    copies = {c["deployment_id"]: (c["status"], c["error"]) for c in created.model_extra["provider_copies"]}
    assert copies["files-half-up"] == ("uploaded", None)
    status, error = copies["files-half-down"]
    assert status == "failed" and error.startswith("upstream_connection_error: Could not reach the upstream provider")
    assert held(fakes["y"], "/half/v1") == [("report.pdf", "user_data", len(PDF), sha256(PDF))]
    sdk.files.delete(created.id)
    assert fakes["y"].files_under("/half/v1") == []


def test_a_group_with_every_provider_down_fails_and_leaves_no_orphans(sdk, fakes):
    before = [f.id for f in sdk.files.list()]
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.files.create(file=("report.pdf", PDF), purpose="user_data",
                         extra_body={"target_model_names": "files-a, files-dead"})
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "file_upload_failed" and raised.value.body["param"] == "target_model_names"
    assert raised.value.body["message"].startswith(
        "No deployment of model group 'files-dead' accepted a copy of the file, so nothing was stored (files-dead-1: "
        "upstream_connection_error: ")
    # The copies made on files-a were uploaded, then deleted again.
    assert len([r for r in fakes["x"].requests if r.method == "POST"]) == 2
    assert len([r for r in fakes["x"].requests if r.method == "DELETE"]) == 2
    assert fakes["x"].files_under("/a1/v1") == fakes["x"].files_under("/a2/v1") == []
    assert [f.id for f in sdk.files.list()] == before


def test_another_key_is_denied_everywhere(sdk, files_gateway, fakes):
    created = sdk.files.create(file=("report.pdf", PDF), purpose="user_data",
                               extra_body={"target_model_names": "files-b"})
    generated = requests.post(f"{files_gateway.url}/key/generate", json={}, headers=AUTH, timeout=10)
    assert generated.status_code == 200
    with OpenAI(base_url=files_gateway.v1, api_key=generated.json()["key"], max_retries=0, timeout=30) as other:
        for attempt in (lambda: other.files.retrieve(created.id), lambda: other.files.content(created.id),
                        lambda: other.files.delete(created.id)):
            with pytest.raises(openai.NotFoundError) as raised:
                attempt()
            assert raised.value.body["code"] == "file_not_found"
        assert [f.id for f in other.files.list()] == []
        own = other.files.create(file=("mine.txt", b"mine"), purpose="user_data")
        assert [f.id for f in other.files.list()] == [own.id]
    assert sdk.files.retrieve(created.id).id == created.id  # untouched, and the master key sees both
    assert {created.id, own.id} <= {f.id for f in sdk.files.list()}
    assert len(fakes["y"].files_under("/v1")) == 1
    sdk.files.delete(created.id)
    sdk.files.delete(own.id)
