"""The official OpenAI SDK against a running gateway whose groups are Gemini API and Vertex AI deployments.

Both point at one loopback fake of Google (Gemini API, Vertex AI and the OAuth token endpoint). The
Vertex deployment's service-account key reaches the gateway as an `os.environ/` reference. The SDK
must see ordinary OpenAI answers, chunks, embeddings and errors; the fake must have received Google's
formats.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI

from tests.fakes.gemini_server import GEMINI_KEY, USAGE, FakeGoogle, vector_for
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

KEY_VARIABLE = "GATEHOUSE_TEST_VERTEX_CREDENTIALS"
USER = [{"role": "user", "content": "Hi"}]
USAGE_OPENAI = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.fixture(scope="module")
def _fake() -> Iterator[FakeGoogle]:
    fake = FakeGoogle()
    yield fake
    fake.close()


@pytest.fixture
def fake(_fake) -> FakeGoogle:
    _fake.reset()
    return _fake


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, _fake) -> Iterator[GatewayProcess]:
    key = _fake.service_account_key(project_id="e2e-project")
    vertex = {"api_base": _fake.url, "vertex_project": "e2e-project", "vertex_location": "us-east5",
              "vertex_credentials": f"os.environ/{KEY_VARIABLE}"}
    # A key of its own, used by one test only, so its first token is fetched while requests pile up.
    other_key = _fake.service_account_key(email="concurrent@e2e-project.iam.gserviceaccount.com",
                                          project_id="e2e-project")

    def entry(group: str, model: str, **params) -> dict:
        return {"model_name": group, "litellm_params": {"model": model, **params}, "model_info": {"id": group}}

    config = {
        "model_list": [
            entry("gemini-chat", "gemini/gemini-2.0-flash", api_base=_fake.url, api_key=GEMINI_KEY),
            entry("gemini-embed", "gemini/text-embedding-004", api_base=_fake.url, api_key=GEMINI_KEY),
            entry("vertex-chat", "vertex_ai/gemini-2.5-flash", **vertex),
            entry("vertex-embed", "vertex_ai/text-embedding-005", **vertex),
            entry("vertex-concurrent", "vertex_ai/gemini-2.5-pro", **{**vertex, "vertex_credentials": other_key}),
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("google-gateway"), config,
                            env={KEY_VARIABLE: json.dumps(key)})
    yield process
    process.stop()


@pytest.fixture
def client(gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def test_gemini_chat(client, fake):
    completion = client.chat.completions.create(model="gemini-chat", messages=USER, temperature=0.5)
    assert completion.choices[0].message.content == "Hello from the fake Gemini."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.model_dump(exclude_none=True) == USAGE_OPENAI
    [request] = fake.model_requests()
    assert request.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert request.headers["x-goog-api-key"] == GEMINI_KEY
    assert request.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                            "generationConfig": {"temperature": 0.5}}


def test_gemini_stream_with_and_without_usage(client, fake):
    chunks = list(client.chat.completions.create(model="gemini-chat", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello from the fake Gemini."
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump(exclude_none=True) == USAGE_OPENAI
    [request] = fake.model_requests()
    assert (request.path, request.query) == ("/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                                             {"alt": ["sse"]})

    quiet = list(client.chat.completions.create(model="gemini-chat", messages=USER, stream=True))
    assert all(chunk.usage is None and chunk.choices for chunk in quiet)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in quiet) == "Hello from the fake Gemini."


def test_gemini_streamed_tool_call(client, fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}]
    chunks = list(client.chat.completions.create(model="gemini-chat", messages=USER, tools=tools, stream=True))
    calls = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert [(call.index, call.function.name, call.function.arguments) for call in calls] == [
        (0, "get_weather", '{"city":"Paris"}')]
    assert calls[0].id.startswith("call_")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert fake.model_requests()[0].body["tools"] == [{"functionDeclarations": [{"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}]


def test_gemini_embeddings_base64_by_default_decode_to_the_float_vectors(client, fake):
    texts = ["first text", "second text"]
    default = client.embeddings.create(model="gemini-embed", input=texts)  # the SDK asks for base64
    floats = client.embeddings.create(model="gemini-embed", input=texts, encoding_format="float")
    expected = [vector_for(text, 6) for text in texts]
    assert [item.embedding for item in default.data] == expected
    assert [item.embedding for item in floats.data] == expected
    assert [r.path for r in fake.model_requests()] == ["/v1beta/models/text-embedding-004:batchEmbedContents"] * 2

    single = client.embeddings.create(model="gemini-embed", input="alone", dimensions=3)
    assert single.data[0].embedding == vector_for("alone", 3)
    assert fake.model_requests()[-1].body == {"model": "models/text-embedding-004",
                                              "content": {"parts": [{"text": "alone"}]}, "outputDimensionality": 3}


def test_vertex_chat_plain_and_streamed_share_one_token(client, fake):
    completion = client.chat.completions.create(model="vertex-chat", messages=USER)
    assert completion.choices[0].message.content == "Hello from the fake Gemini."
    chunks = list(client.chat.completions.create(model="vertex-chat", messages=USER, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello from the fake Gemini."
    requests = fake.model_requests()
    prefix = "/v1/projects/e2e-project/locations/us-east5/publishers/google/models/gemini-2.5-flash"
    assert [r.path for r in requests] == [f"{prefix}:generateContent", f"{prefix}:streamGenerateContent"]
    assert requests[0].headers["authorization"] == requests[1].headers["authorization"]
    assert requests[0].headers["authorization"].startswith("Bearer ya29.fake-token-")
    assert fake.rejected_assertions == 0 and fake.token_requests <= 1  # 0 if an earlier test already got it


def test_concurrent_vertex_requests_in_one_gevent_worker_fetch_one_token(gateway, fake):
    """Requests waiting for the same key's first token wait on a lock that yields to other greenlets."""
    fake.token_latency = 0.5

    def call(_):
        with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
            return sdk.chat.completions.create(model="vertex-concurrent", messages=USER).choices[0].message.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(call, range(6)))
    assert answers == ["Hello from the fake Gemini."] * 6
    assert fake.token_requests == 1
    assert len({r.headers["authorization"] for r in fake.model_requests()}) == 1


def test_vertex_embeddings(client, fake):
    result = client.embeddings.create(model="vertex-embed", input=["one two three"])
    assert result.data[0].embedding == vector_for("one two three", 6)
    assert result.usage.prompt_tokens == 3
    [request] = fake.model_requests()
    assert request.path.endswith("/publishers/google/models/text-embedding-005:predict")


def test_a_blocked_prompt_is_a_400_content_policy_violation(client, fake):
    fake.script({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE})
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini-chat", messages=USER)
    assert caught.value.status_code == 400
    assert caught.value.body == {"message": "Gemini blocked the prompt (SAFETY).", "type": "invalid_request_error",
                                 "param": None, "code": "content_policy_violation"}


def test_a_rejected_key_is_an_upstream_auth_error_without_the_key(client, fake):
    fake.api_key = "another-key"
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gemini-chat", messages=USER)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_authentication_error"
    assert GEMINI_KEY not in json.dumps(caught.value.body)


def test_a_quota_error_is_a_429_with_retry_after(client, fake):
    fake.fail_next(status=429, body={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota.",
                                               "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                            "retryDelay": "30s"}]}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gemini-chat", messages=USER)
    assert caught.value.response.headers["retry-after"] == "30"
