"""A managed file quoted on `/v1/messages` (a `document` or `image` block with `source.type: "file"`): an Anthropic
deployment receives the block natively with its own Anthropic file id (and the Files API beta header); any other
deployment receives the translated chat request with its own copy's reference. Another key's file is Anthropic's
404 and nothing goes upstream.

In-process (Django's test client) against the loopback FakeAnthropic (which, like Anthropic, refuses a file
source it does not hold or one sent without the beta header) and FakeOpenAI.
"""
from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.fakes.anthropic_server import FILES_BETA, FakeAnthropic
from tests.keys.support import MASTER, bearer, fresh_key_state, generate  # noqa: F401
from tests.proxy_api.helpers import post_json
from tests.proxy_api.test_file_parts import QUESTION, entry, not_found, storage, upload  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_key_state", "storage")

CLAUDE_MODEL = "claude-sonnet-4-5"
ANTHROPIC_KEY = "sk-ant-upstream-files-77"


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()


@pytest.fixture
def fake_anthropic(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def gateway(configure_gateway, fake_openai, fake_anthropic):
    configure_gateway({"model_list": [
        {"model_name": "claude", "model_info": {"id": "claude-1"},
         "litellm_params": {"model": f"anthropic/{CLAUDE_MODEL}", "api_base": fake_anthropic.url,
                            "api_key": ANTHROPIC_KEY}},
        entry(fake_openai, "docs", "a"),
    ], "router_settings": {"num_retries": 0}})


def document(file_id: str, **extra) -> dict:
    return {"type": "document", "source": {"type": "file", "file_id": file_id}, **extra}


def ask(client, model: str, *blocks: dict, headers=MASTER, **extra):
    body = {"model": model, "max_tokens": 50,
            "messages": [{"role": "user", "content": [*blocks, QUESTION]}], **extra}
    return post_json(client, "/v1/messages", body, headers)


def only_file(fake: FakeAnthropic):
    assert len(fake.files) == 1, list(fake.files)
    return next(iter(fake.files.values()))


def paths(fake) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request in fake.requests]


def test_an_anthropic_deployment_gets_its_own_file_id_in_the_native_block(client, gateway, fake_anthropic):
    file_id = upload(client, filename="brief.pdf")

    response = ask(client, "claude", document(file_id, title="Brief", citations={"enabled": True}))

    assert response.status_code == 200, response.content
    assert orjson.loads(response.content)["type"] == "message"
    assert paths(fake_anthropic) == [("POST", "/v1/files"), ("POST", "/v1/messages")]
    copy = only_file(fake_anthropic)
    assert (copy.filename, copy.size) == ("brief.pdf", fake_anthropic.requests[0].form[0].size)
    sent = fake_anthropic.requests[1]
    assert sent.body == {"model": CLAUDE_MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": copy.id}, "title": "Brief",
         "citations": {"enabled": True}}, QUESTION]}]}
    assert sent.headers["anthropic-beta"] == FILES_BETA
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY


def test_the_clients_own_betas_are_kept_and_the_copy_is_reused(client, gateway, fake_anthropic):
    file_id = upload(client, targets="claude")
    fake_anthropic.requests.clear()

    response = post_json(client, "/v1/messages", {
        "model": "claude", "max_tokens": 50,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": file_id}},
            {"type": "tool_result", "tool_use_id": "t1", "content": [document(file_id)]}, QUESTION]}]},
        {**MASTER, "HTTP_ANTHROPIC_BETA": "token-efficient-tools-2025-02-19"})

    assert response.status_code == 200, response.content
    assert paths(fake_anthropic) == [("POST", "/v1/messages")]  # the copy made at upload serves
    copy_id = only_file(fake_anthropic).id
    sent = fake_anthropic.requests[0]
    assert sent.body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "file", "file_id": copy_id}},
        {"type": "tool_result", "tool_use_id": "t1", "content": [document(copy_id)]}, QUESTION]
    assert sent.headers["anthropic-beta"] == f"token-efficient-tools-2025-02-19,{FILES_BETA}"


def test_a_streamed_message_and_a_token_count_use_the_copy_too(client, gateway, fake_anthropic):
    file_id = upload(client, targets="claude")
    copy_id = only_file(fake_anthropic).id
    fake_anthropic.requests.clear()

    streamed = ask(client, "claude", document(file_id), stream=True)
    counted = post_json(client, "/v1/messages/count_tokens", {
        "model": "claude", "messages": [{"role": "user", "content": [document(file_id), QUESTION]}]}, MASTER)

    assert streamed.status_code == 200
    assert b"".join(streamed.streaming_content).rstrip().endswith(b'{"type": "message_stop"}')
    assert (counted.status_code, orjson.loads(counted.content)) == (200, {"input_tokens": 42})
    assert paths(fake_anthropic) == [("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")]
    for sent in fake_anthropic.requests:
        assert sent.body["messages"][0]["content"] == [document(copy_id), QUESTION]
        assert sent.headers["anthropic-beta"] == FILES_BETA


def test_a_model_that_is_not_anthropics_gets_its_own_copy_in_the_translated_chat(client, gateway, fake_openai):
    file_id = upload(client, targets="docs")
    upstream = fake_openai.files_under("/a/v1")[0].id
    fake_openai.requests.clear()

    response = ask(client, "docs", document(file_id))

    assert response.status_code == 200, response.content
    assert orjson.loads(response.content)["content"][0]["type"] == "text"
    (sent,) = fake_openai.requests
    assert sent.path == "/a/v1/chat/completions"
    assert sent.body == {"model": "a-model", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": upstream}}, QUESTION]}]}


def test_a_translated_stream_gets_a_copy_made_on_first_use(client, gateway, fake_openai):
    file_id = upload(client)

    response = ask(client, "docs", document(file_id), stream=True)

    assert response.status_code == 200
    assert b"event: message_stop" in b"".join(response.streaming_content)
    assert paths(fake_openai) == [("POST", "/a/v1/files"), ("POST", "/a/v1/chat/completions")]
    assert fake_openai.requests[1].body["messages"][0]["content"][0] == {
        "type": "file", "file": {"file_id": fake_openai.files_under("/a/v1")[0].id}}


def test_another_keys_file_is_anthropics_not_found_and_nothing_goes_upstream(client, gateway, fake_anthropic,
                                                                            fake_openai):
    owner = generate(client)["key"]
    other = generate(client)["key"]
    file_id = upload(client, bearer(owner), targets="claude")
    fake_anthropic.requests.clear()

    responses = [ask(client, "claude", document(file_id), headers=bearer(other)),
                 ask(client, "claude", document(file_id), headers=bearer(other), stream=True),
                 ask(client, "docs", document(file_id), headers=bearer(other))]

    for response in responses:
        assert response.status_code == 404
        body = orjson.loads(response.content)
        assert body == {"type": "error", "error": {"type": "not_found_error",
                                                   "message": not_found(file_id)["error"]["message"]},
                        "request_id": response["x-request-id"]}
    assert fake_anthropic.requests == []
    assert fake_openai.requests == []


def test_an_anthropic_file_id_is_passed_through_untouched(client, gateway, fake_anthropic):
    response = ask(client, "claude", document("file_011CNha8iCJcU1wXNR6q4V8w"))

    # Not a Gatehouse id: Anthropic itself answers for it (the fake does not hold it).
    assert response.status_code == 404
    assert paths(fake_anthropic) == [("POST", "/v1/messages")]
    assert fake_anthropic.requests[0].body["messages"][0]["content"][0] == document("file_011CNha8iCJcU1wXNR6q4V8w")
