"""Every endpoint through the official OpenAI SDK, at `<url>` and at `<url>/v1`, validated as the SDK's own types."""
from __future__ import annotations

import base64
import struct

import openai
import pytest
from openai.pagination import SyncPage
from openai.types import Completion, CreateEmbeddingResponse, Model, ModerationCreateResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.mock import deterministic_vector
from tests.e2e.conftest import AZURE_API_VERSION, AZURE_UPSTREAM_KEY, MODEL_GROUPS, OPENAI_UPSTREAM_KEY
from tests.e2e.helpers import only_request
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "Say hello"}]
FAKE_REPLY = "Hello from the fake provider."
FAKE_STREAM_TEXT = "tok0 tok1 tok2 tok3 tok4 "


def assert_sdk_roundtrip(value) -> None:
    """The response is the SDK's own pydantic type and survives strict re-validation unchanged.

    Compared by alias-keyed dumps: the SDK builds responses without validation and keeps aliased
    moderation categories (`harassment/threatening`) as extras too, so object equality would differ."""
    dumped = value.model_dump(by_alias=True)
    assert type(value).model_validate(dumped).model_dump(by_alias=True) == dumped


# --- chat completions --------------------------------------------------------------------------------

def test_chat_on_the_mock(client_at):
    completion = client_at.chat.completions.create(model="mock-chat", messages=USER)

    assert type(completion) is ChatCompletion
    assert ChatCompletion.model_validate(completion.model_dump()) == completion
    assert completion.id.startswith("chatcmpl-mock-")
    assert completion.object == "chat.completion"
    assert completion.model == "mock-gpt"
    assert completion.system_fingerprint == "fp_gatehouse_mock"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "This is a mock response to: Say hello"
    assert choice.message.tool_calls is None
    assert completion.usage.model_dump(exclude_none=True) == {"prompt_tokens": 2, "completion_tokens": 8,
                                                              "total_tokens": 10}


def test_chat_on_an_openai_upstream_reaches_it_as_sent(client_at, fake_a):
    raw = client_at.chat.completions.with_raw_response.create(model="gpt-fake", messages=USER, temperature=0.2)
    completion = raw.parse()

    assert raw.status_code == 200
    assert raw.headers["x-gatehouse-model-group"] == "gpt-fake"
    assert raw.headers["x-gatehouse-deployment-id"] == "gpt-fake-a"
    assert raw.headers["x-gatehouse-attempts"] == "1"
    assert raw.headers["x-gatehouse-fallbacks"] == "0"
    assert raw.headers["x-request-id"].startswith("req_")
    assert type(completion) is ChatCompletion
    assert_sdk_roundtrip(completion)
    assert completion.id.startswith("chatcmpl-fake-")
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint == "fp_fake"
    assert completion.choices[0].message.content == FAKE_REPLY
    assert completion.usage.total_tokens == 18
    received = only_request(fake_a)
    assert (received.method, received.path, received.query) == ("POST", "/v1/chat/completions", {})
    assert received.headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert received.body == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2}


def test_chat_on_an_azure_upstream_uses_its_url_version_and_key(client_at, fake_b):
    completion = client_at.chat.completions.create(model="azure-chat", messages=USER)

    assert type(completion) is ChatCompletion
    assert_sdk_roundtrip(completion)
    assert completion.choices[0].message.content == FAKE_REPLY
    received = only_request(fake_b)
    assert received.path == "/openai/deployments/chat-deployment/chat/completions"
    assert received.query == {"api-version": [AZURE_API_VERSION]}
    assert received.headers["api-key"] == AZURE_UPSTREAM_KEY
    assert "authorization" not in received.headers
    assert received.body == {"model": "chat-deployment", "messages": USER}


def test_chat_on_a_hosted_vllm_upstream_keeps_the_slashed_model_name(client_at, fake_c):
    completion = client_at.chat.completions.create(model="vllm-llama", messages=USER)

    assert type(completion) is ChatCompletion
    assert completion.model == "meta-llama/Llama-3.1-8B-Instruct"
    received = only_request(fake_c)
    assert received.path == "/v1/chat/completions"
    assert "authorization" not in received.headers
    assert received.body == {"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": USER}


def test_chat_on_a_text_completion_model_is_translated_both_ways(client_at, fake_a):
    completion = client_at.chat.completions.create(model="instruct", messages=USER)

    assert type(completion) is ChatCompletion
    assert_sdk_roundtrip(completion)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == FAKE_REPLY
    assert completion.choices[0].finish_reason == "stop"
    received = only_request(fake_a)
    assert received.path == "/v1/completions"
    assert received.body == {"model": "gpt-3.5-turbo-instruct", "prompt": "user: Say hello\nassistant:"}


def test_chat_stream_on_the_mock(client_at):
    # The reply is 40 characters; mock_chunk_count=8 cuts it into 8 pieces of 5.
    messages = [{"role": "user", "content": "stream me ok"}]
    chunks = list(client_at.chat.completions.create(model="mock-stream", messages=messages, stream=True))

    assert all(type(chunk) is ChatCompletionChunk for chunk in chunks)
    for chunk in chunks:
        assert_sdk_roundtrip(chunk)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    expected = "This is a mock response to: stream me ok"
    pieces = [chunk.choices[0].delta.content for chunk in chunks[1:-1]]
    assert pieces == [expected[i:i + 5] for i in range(0, 40, 5)]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [chunk.choices[0].finish_reason for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)


def test_chat_stream_on_an_openai_upstream(client_at, fake_a):
    chunks = list(client_at.chat.completions.create(model="gpt-fake", messages=USER, stream=True))

    assert all(type(chunk) is ChatCompletionChunk for chunk in chunks)
    assert len(chunks) == 7
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == FAKE_STREAM_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    received = only_request(fake_a)
    # Usage is asked of the provider (for spend) even though this client did not ask for it.
    assert received.body == {"model": "gpt-4o-mini", "messages": USER, "stream": True,
                             "stream_options": {"include_usage": True}}
    assert wait_until(lambda: fake_a.completed_streams == 1, seconds=5)


def test_chat_stream_on_a_text_completion_model_becomes_chat_chunks(client_at, fake_a):
    chunks = list(client_at.chat.completions.create(model="instruct", messages=USER, stream=True))

    assert all(type(chunk) is ChatCompletionChunk for chunk in chunks)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == FAKE_STREAM_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    received = only_request(fake_a)
    assert received.path == "/v1/completions"
    assert received.body == {"model": "gpt-3.5-turbo-instruct", "prompt": "user: Say hello\nassistant:",
                             "stream": True, "stream_options": {"include_usage": True}}


# --- text completions --------------------------------------------------------------------------------

def test_completion_on_the_mock(client_at):
    completion = client_at.completions.create(model="mock-chat", prompt="Once upon a time")

    assert type(completion) is Completion
    assert_sdk_roundtrip(completion)
    assert completion.object == "text_completion"
    assert completion.model == "mock-gpt"
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [
        (0, " This is a mock completion of: Once upon a time", "stop")]


def test_completion_on_an_upstream(client_at, fake_a):
    completion = client_at.completions.create(model="instruct", prompt="Once upon a time", max_tokens=5)

    assert type(completion) is Completion
    assert_sdk_roundtrip(completion)
    assert completion.choices[0].text == " " + FAKE_REPLY
    assert completion.usage.total_tokens == 9
    received = only_request(fake_a)
    assert received.path == "/v1/completions"
    assert received.headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert received.body == {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time", "max_tokens": 5}


def test_completion_stream_on_the_mock(client_at):
    chunks = list(client_at.completions.create(model="mock-stream", prompt="abc", stream=True))

    assert all(type(chunk) is Completion for chunk in chunks)
    assert "".join(chunk.choices[0].text for chunk in chunks) == " This is a mock completion of: abc"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completion_stream_on_an_upstream(client_at, fake_a):
    chunks = list(client_at.completions.create(model="instruct", prompt="abc", stream=True))

    assert all(type(chunk) is Completion for chunk in chunks)
    # Streamed text chunks carry `finish_reason: null`, as OpenAI's do, which the SDK's strict
    # `Completion` type only accepts when it parses a stream: re-validate the final chunk.
    assert_sdk_roundtrip(chunks[-1])
    assert [chunk.choices[0].text for chunk in chunks] == ["tok0 ", "tok1 ", "tok2 ", "tok3 ", "tok4 ", ""]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert only_request(fake_a).body == {"model": "gpt-3.5-turbo-instruct", "prompt": "abc", "stream": True,
                                         "stream_options": {"include_usage": True}}


# --- embeddings --------------------------------------------------------------------------------------

def _decoded(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize(("group", "fake_name", "dimensions", "upstream_format_for_base64"), [
    ("mock-embed", None, 12, None),
    # An OpenAI-compatible server is asked for floats; the gateway encodes base64 itself.
    ("fake-embed", "fake_a", 8, "float"),
    # Azure honours base64 natively and is asked for it.
    ("azure-embed", "fake_b", 8, "base64"),
])
def test_embeddings_base64_by_default_and_float_decode_to_the_same_vectors(
        client_at, request, group, fake_name, dimensions, upstream_format_for_base64):
    fake = request.getfixturevalue(fake_name) if fake_name else None
    inputs = ["hello world", "gatehouse"]

    raw = client_at.embeddings.with_raw_response.create(model=group, input=inputs)
    default = raw.parse()
    floats = client_at.embeddings.create(model=group, input=inputs, encoding_format="float")

    # What the gateway sent back for the SDK's default request: base64 strings, as OpenAI does.
    wire = raw.http_response.json()
    assert [type(item["embedding"]) for item in wire["data"]] == [str, str]
    assert [len(base64.b64decode(item["embedding"])) for item in wire["data"]] == [dimensions * 4] * 2
    for response in (default, floats):
        assert type(response) is CreateEmbeddingResponse
        assert_sdk_roundtrip(response)
        assert response.object == "list"
        assert [item.index for item in response.data] == [0, 1]
        assert all(len(item.embedding) == dimensions for item in response.data)
    assert [item.embedding for item in default.data] == [item.embedding for item in floats.data]
    assert [item.embedding for item in default.data] == [_decoded(item["embedding"]) for item in wire["data"]]
    if fake is None:
        assert [item.embedding for item in floats.data] == [deterministic_vector(text, 12) for text in inputs]
        return
    first, second = fake.requests
    assert first.body["encoding_format"] == upstream_format_for_base64
    assert second.body["encoding_format"] == "float"
    assert first.body["input"] == second.body["input"] == inputs


def test_embeddings_on_azure_reach_the_deployment_url(client_at, fake_b):
    client_at.embeddings.create(model="azure-embed", input="hi", encoding_format="float")

    received = only_request(fake_b)
    assert received.path == "/openai/deployments/embedding-deployment/embeddings"
    assert received.query == {"api-version": [AZURE_API_VERSION]}
    assert received.headers["api-key"] == AZURE_UPSTREAM_KEY
    assert received.body == {"model": "embedding-deployment", "input": "hi", "encoding_format": "float"}


# --- moderations -------------------------------------------------------------------------------------

def test_moderation_on_the_mock(client_at):
    result = client_at.moderations.create(model="mock-moderation", input=["I will kill the process", "tea?"])

    assert type(result) is ModerationCreateResponse
    assert_sdk_roundtrip(result)
    assert result.model == "omni-moderation-latest"
    flagged, clean = result.results
    assert flagged.flagged is True
    assert flagged.categories.violence is True
    assert flagged.categories.harassment is False
    assert flagged.category_scores.violence == 0.98
    assert clean.flagged is False
    assert not any(clean.categories.model_dump().values())


def test_moderation_on_an_upstream(client_at, fake_c):
    result = client_at.moderations.create(model="fake-moderation", input="kill it")

    assert type(result) is ModerationCreateResponse
    assert result.id == "modr-fake"
    assert [r.flagged for r in result.results] == [True]
    received = only_request(fake_c)
    assert received.path == "/v1/moderations"
    assert received.headers["authorization"] == "Bearer sk-moderation"
    assert received.body == {"model": "omni-moderation-latest", "input": "kill it"}


# --- models ------------------------------------------------------------------------------------------

def test_models_list_names_exactly_the_groups(client_at, fake_a, fake_b, fake_c):
    page = client_at.models.list()

    assert isinstance(page, SyncPage)
    assert page.object == "list"
    assert all(type(model) is Model for model in page.data)
    assert sorted(model.id for model in page.data) == sorted(MODEL_GROUPS)
    assert {(model.object, model.owned_by) for model in page.data} == {("model", "gatehouse")}
    assert all(model.created > 1_700_000_000 for model in page.data)
    assert fake_a.requests == fake_b.requests == fake_c.requests == []


def test_models_retrieve(client_at):
    model = client_at.models.retrieve("pair")

    assert type(model) is Model
    assert_sdk_roundtrip(model)
    assert (model.id, model.object, model.owned_by) == ("pair", "model", "gatehouse")


def test_models_retrieve_unknown_is_404_model_not_found(client_at):
    with pytest.raises(openai.NotFoundError) as caught:
        client_at.models.retrieve("no-such-model")

    assert caught.value.status_code == 404
    assert caught.value.body == {"message": "The model `no-such-model` does not exist or you do not have access to it.",
                                 "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    assert caught.value.code == "model_not_found"
