"""A managed file quoted in `/chat/completions`: each deployment receives its own copy's reference, uploaded on
first use when it has none; deployments holding a copy are preferred; another key's file is a 404 and nothing
goes upstream.

In-process (Django's test client) against the loopback FakeOpenAI, whose path prefixes are separate accounts:
deployment `a` (`/a/v1`) knows only the files uploaded to `/a/v1`, and refuses a chat quoting any other id.
"""
from __future__ import annotations

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from files_registry.choices import ProviderFileStatus
from files_registry.models import ProviderFile
from models_registry.cooldowns import cooldown_start
from proxy_api.file_parts import INLINE_FILE_MAX_BYTES
from tests.files_registry.support import PDF, sha256, use_temporary_storage
from tests.keys.support import MASTER, bearer, fresh_key_state, generate, new_team  # noqa: F401
from tests.proxy_api.helpers import envelope, error_body, post_json

pytestmark = pytest.mark.usefixtures("fresh_key_state", "storage")

QUESTION = {"type": "text", "text": "Summarise this document."}


@pytest.fixture
def storage(settings, tmp_path):
    return use_temporary_storage(settings, tmp_path)


def entry(fake, group: str, prefix: str, **params) -> dict:
    """A deployment whose account on the fake is `/<prefix>/v1` and whose id is `prefix`."""
    return {"model_name": group, "model_info": {"id": prefix},
            "litellm_params": {"model": f"openai/{prefix}-model", "api_base": f"{fake.url}/{prefix}/v1",
                               "api_key": f"sk-{prefix}", **params}}


def configure(configure_gateway, fake, *entries: dict, **router) -> None:
    configure_gateway({"model_list": list(entries), "router_settings": {"num_retries": 1, "allowed_fails": 100,
                                                                        **router}})


def upload(client, headers=MASTER, *, targets: str | None = None, data: bytes = PDF,
           filename: str = "report.pdf") -> str:
    form = {"purpose": "user_data", "file": SimpleUploadedFile(filename, data, content_type="application/pdf")}
    if targets is not None:
        form["target_model_names"] = targets
    response = client.post("/v1/files", data=form, **headers)
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)["id"]


def messages_with(*file_ids: str) -> list[dict]:
    return [{"role": "user", "content": [QUESTION, *({"type": "file", "file": {"file_id": file_id}}
                                                     for file_id in file_ids)]}]


def chat(client, model: str, *file_ids: str, headers=MASTER, **extra):
    return post_json(client, "/v1/chat/completions", {"model": model, "messages": messages_with(*file_ids),
                                                      **extra}, headers)


def upstream_id(fake, prefix: str) -> str:
    """The id of the one file the account `/<prefix>/v1` holds."""
    held = fake.files_under(f"/{prefix}/v1")
    assert len(held) == 1, [stored.id for stored in held]
    return held[0].id


def chat_requests(fake) -> list:
    return [request for request in fake.requests if request.path.endswith("/chat/completions")]


def sent_parts(request) -> list[dict]:
    return request.body["messages"][0]["content"]


def file_part(file_id: str) -> dict:
    return {"type": "file", "file": {"file_id": file_id}}


# -- the reference each deployment receives --------------------------------------------------------------------

def test_a_deployment_holding_a_copy_receives_its_own_file_id(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    file_id = upload(client, targets="docs")
    uploads = [(request.method, request.path) for request in fake_openai.requests]
    fake_openai.requests.clear()

    response = chat(client, "docs", file_id)

    assert response.status_code == 200, response.content
    assert uploads == [("POST", "/a/v1/files")]
    assert [(request.method, request.path) for request in fake_openai.requests] == [
        ("POST", "/a/v1/chat/completions")]
    assert fake_openai.requests[0].body == {
        "model": "a-model", "messages": [{"role": "user", "content": [QUESTION, file_part(upstream_id(fake_openai,
                                                                                                       "a"))]}]}
    assert response["x-gatehouse-deployment-id"] == "a"


def test_a_file_stored_only_by_gatehouse_is_copied_on_first_use_then_reused(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    file_id = upload(client, data=PDF, filename="notes.pdf")
    assert fake_openai.requests == []  # no target: nothing uploaded yet

    first = chat(client, "docs", file_id)
    second = chat(client, "docs", file_id)

    assert (first.status_code, second.status_code) == (200, 200)
    assert [(request.method, request.path) for request in fake_openai.requests] == [
        ("POST", "/a/v1/files"), ("POST", "/a/v1/chat/completions"), ("POST", "/a/v1/chat/completions")]
    copied = fake_openai.files_under("/a/v1")[0]
    assert (copied.filename, copied.purpose, copied.size, copied.sha256) == ("notes.pdf", "user_data", len(PDF),
                                                                            sha256(PDF))
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-a"
    for request in chat_requests(fake_openai):
        assert sent_parts(request) == [QUESTION, file_part(copied.id)]
    row = ProviderFile.objects.get(managed_file_id=file_id, deployment_id="a")
    assert (row.status, row.provider_file_id, row.model_group) == (ProviderFileStatus.UPLOADED, copied.id, "docs")


def test_a_streamed_chat_gets_the_copy_too(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    file_id = upload(client)

    response = chat(client, "docs", file_id, stream=True)

    assert response.status_code == 200
    assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")
    (request,) = chat_requests(fake_openai)
    assert request.body["stream"] is True
    assert sent_parts(request) == [QUESTION, file_part(upstream_id(fake_openai, "a"))]


def test_each_attempt_sends_its_own_deployments_copy_and_the_clients_body_is_never_changed(client, configure_gateway,
                                                                                          fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a", order=1),
              entry(fake_openai, "docs", "b", order=2))
    file_id = upload(client, targets="docs")
    fake_openai.requests.clear()
    fake_openai.fail_next(status=500, path_contains="/a/v1/chat")

    response = chat(client, "docs", file_id)

    assert response.status_code == 200, response.content
    assert response["x-gatehouse-deployment-id"] == "b"
    first, second = chat_requests(fake_openai)
    assert (first.path, sent_parts(first)) == ("/a/v1/chat/completions",
                                              [QUESTION, file_part(upstream_id(fake_openai, "a"))])
    assert (second.path, sent_parts(second)) == ("/b/v1/chat/completions",
                                                [QUESTION, file_part(upstream_id(fake_openai, "b"))])


def test_several_files_and_several_messages_are_all_resolved(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    first_id = upload(client, filename="one.pdf")
    second_id = upload(client, data=PDF + b"2", filename="two.pdf")
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [file_part(first_id), QUESTION]},
                {"role": "assistant", "content": "Done."},
                {"role": "user", "content": [file_part(second_id), file_part(first_id)]}]

    response = post_json(client, "/v1/chat/completions", {"model": "docs", "messages": messages}, MASTER)

    assert response.status_code == 200, response.content
    ids = {stored.filename: stored.id for stored in fake_openai.files_under("/a/v1")}
    assert [request.path for request in fake_openai.requests].count("/a/v1/files") == 2  # one copy per file
    (request,) = chat_requests(fake_openai)
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [file_part(ids["one.pdf"]), QUESTION]},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": [file_part(ids["two.pdf"]), file_part(ids["one.pdf"])]}]


# -- routing: copies preferred, lazy copies when needed, failed copies fail over -----------------------------------

def test_deployments_holding_a_copy_are_preferred_and_others_copy_on_first_use(client, configure_gateway,
                                                                              fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a", weight=1))
    file_id = upload(client, targets="docs")
    # b joins the group after the upload, with a weight that would otherwise win nearly every call.
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a", weight=1),
              entry(fake_openai, "docs", "b", weight=1000))
    fake_openai.requests.clear()

    served = [chat(client, "docs", file_id)["x-gatehouse-deployment-id"] for _ in range(10)]

    assert served == ["a"] * 10
    assert fake_openai.files_under("/b/v1") == []

    cooldown_start("a", seconds=60, reason="test")
    fake_openai.requests.clear()
    assert chat(client, "docs", file_id)["x-gatehouse-deployment-id"] == "b"
    assert [(request.method, request.path) for request in fake_openai.requests] == [
        ("POST", "/b/v1/files"), ("POST", "/b/v1/chat/completions")]
    assert sent_parts(fake_openai.requests[1]) == [QUESTION, file_part(upstream_id(fake_openai, "b"))]


def test_only_deployments_holding_every_quoted_file_are_preferred(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"), entry(fake_openai, "docs", "b"))
    both = upload(client, targets="docs", filename="both.pdf")
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    only_a = upload(client, targets="docs", filename="only-a.pdf")
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a", weight=1),
              entry(fake_openai, "docs", "b", weight=1000))
    fake_openai.requests.clear()

    served = {chat(client, "docs", both, only_a)["x-gatehouse-deployment-id"] for _ in range(8)}

    assert served == {"a"}
    assert [request.path for request in fake_openai.requests] == ["/a/v1/chat/completions"] * 8


def test_a_failed_copy_sends_the_request_to_another_deployment(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a", order=1),
              entry(fake_openai, "docs", "b", order=2))
    file_id = upload(client)
    fake_openai.fail_next(status=500, path_contains="/a/v1/files")

    response = chat(client, "docs", file_id)

    assert response.status_code == 200, response.content
    assert response["x-gatehouse-deployment-id"] == "b"
    assert [(request.method, request.path) for request in fake_openai.requests] == [
        ("POST", "/a/v1/files"), ("POST", "/b/v1/files"), ("POST", "/b/v1/chat/completions")]
    failed = ProviderFile.objects.get(managed_file_id=file_id, deployment_id="a")
    assert failed.status == ProviderFileStatus.FAILED


def test_when_no_deployment_can_get_a_copy_the_client_gets_the_copy_failure(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"), num_retries=0)
    file_id = upload(client)
    fake_openai.fail_next(status=503, path_contains="/a/v1/files")

    response = chat(client, "docs", file_id)

    # The provider's own failure, as for a failed call: the copy is part of the attempt.
    assert response.status_code == 503
    assert error_body(response) == envelope("fake failure 503", "api_error", None, "upstream_error")
    assert chat_requests(fake_openai) == []


def test_a_deployment_that_cannot_hold_files_gets_the_bytes_inline(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, {
        "model_name": "local", "model_info": {"id": "v"},
        "litellm_params": {"model": "hosted_vllm/llama", "api_base": f"{fake_openai.url}/v/v1"}})
    file_id = upload(client, data=b"%PDF-1.4 tiny", filename="tiny.pdf")

    response = chat(client, "local", file_id)

    assert response.status_code == 200, response.content
    (request,) = fake_openai.requests
    assert sent_parts(request) == [QUESTION, {"type": "file", "file": {
        "file_data": "data:application/pdf;base64,JVBERi0xLjQgdGlueQ==", "filename": "tiny.pdf"}}]


def test_a_file_too_large_to_send_inline_is_a_400_naming_the_limit(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, {
        "model_name": "local", "model_info": {"id": "v"},
        "litellm_params": {"model": "hosted_vllm/llama", "api_base": f"{fake_openai.url}/v/v1"}})
    size = INLINE_FILE_MAX_BYTES + 1
    file_id = upload(client, data=b"%" * size, filename="big.pdf")

    response = chat(client, "local", file_id)

    assert response.status_code == 400
    assert error_body(response) == envelope(
        f"The file {file_id} ({size} bytes) cannot be sent to model `local`: its provider (hosted_vllm) cannot hold "
        f"files, and files are sent inline only up to {INLINE_FILE_MAX_BYTES} bytes.",
        "invalid_request_error", "messages", "file_too_large_for_model")
    assert fake_openai.requests == []


# -- ownership and unknown ids: 404, nothing upstream ----------------------------------------------------------

def not_found(file_id: str) -> dict:
    return envelope(f"No such File object: {file_id}", "invalid_request_error", "file_id", "file_not_found")


def test_another_keys_file_is_not_found_and_nothing_goes_upstream(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    owner = generate(client)["key"]
    other = generate(client)["key"]
    file_id = upload(client, bearer(owner), targets="docs")
    fake_openai.requests.clear()

    denied = chat(client, "docs", file_id, headers=bearer(other))
    streamed = chat(client, "docs", file_id, headers=bearer(other), stream=True)

    for response in (denied, streamed):
        assert response.status_code == 404
        assert error_body(response) == not_found(file_id)
    assert fake_openai.requests == []
    # Its owner and the master key may use it.
    assert chat(client, "docs", file_id, headers=bearer(owner)).status_code == 200
    assert chat(client, "docs", file_id).status_code == 200


def test_a_teammates_file_may_be_used(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    team = new_team(client)["team_id"]
    uploader = generate(client, team_id=team)["key"]
    teammate = generate(client, team_id=team)["key"]
    file_id = upload(client, bearer(uploader))

    response = chat(client, "docs", file_id, headers=bearer(teammate))

    assert response.status_code == 200, response.content
    assert sent_parts(chat_requests(fake_openai)[0]) == [QUESTION, file_part(upstream_id(fake_openai, "a"))]


@pytest.mark.parametrize("file_id", ["file-" + "x" * 24, "file-../../etc/passwd", "file-"])
def test_unknown_or_malformed_gatehouse_ids_are_not_found(client, configure_gateway, fake_openai, file_id):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))

    response = chat(client, "docs", file_id)

    assert response.status_code == 404
    assert error_body(response) == not_found(file_id)
    assert fake_openai.requests == []


def test_a_deleted_file_is_not_found(client, configure_gateway, fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    file_id = upload(client, targets="docs")
    assert client.delete(f"/v1/files/{file_id}", **MASTER).status_code == 200
    fake_openai.requests.clear()

    response = chat(client, "docs", file_id)

    assert response.status_code == 404
    assert error_body(response) == not_found(file_id)
    assert fake_openai.requests == []


def test_references_that_are_not_gatehouse_ids_pass_through_without_a_files_query(client, configure_gateway,
                                                                                 fake_openai):
    configure(configure_gateway, fake_openai, entry(fake_openai, "docs", "a"))
    fake_openai.validate_file_ids = False
    parts = [QUESTION, {"type": "file", "file": {"file_id": "gs://bucket/report.pdf"}},
             {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "x.pdf"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/file-cat.png"}}]

    with CaptureQueriesContext(connection) as queries:
        response = post_json(client, "/v1/chat/completions",
                             {"model": "docs", "messages": [{"role": "user", "content": parts}]}, MASTER)

    assert response.status_code == 200, response.content
    assert sent_parts(fake_openai.requests[0]) == parts
    assert [query["sql"] for query in queries.captured_queries if "files_registry" in query["sql"]] == []
