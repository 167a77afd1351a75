"""`openai.AzureOpenAI` against Gatehouse's Azure routes (`/openai/deployments/{model}/...?api-version=`, key in
`api-key`): the path names the model group, whatever provider serves it, and the answers are the same as on the
OpenAI routes."""
from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import openai
import pytest
import requests

from tests.e2e.conftest import AZURE_API_VERSION, AZURE_UPSTREAM_KEY, OPENAI_UPSTREAM_KEY
from tests.e2e.helpers import envelope, only_request
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

CLIENT_API_VERSION = "2024-10-21"
USER = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def azure(gateway) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(azure_endpoint=gateway.url, api_key=MASTER_KEY, api_version=CLIENT_API_VERSION,
                            max_retries=0, timeout=30) as sdk:
        yield sdk


def test_chat_through_the_azure_route_reaches_the_groups_deployment(azure, fake_a):
    raw = azure.chat.completions.with_raw_response.create(model="gpt-fake", messages=USER)
    completion = raw.parse()

    assert raw.http_request.url.path == "/openai/deployments/gpt-fake/chat/completions"
    assert raw.http_request.url.params["api-version"] == CLIENT_API_VERSION
    assert raw.http_request.headers["api-key"] == MASTER_KEY
    assert raw.headers["x-gatehouse-model-group"] == "gpt-fake"
    assert completion.choices[0].message.content == "Hello from the fake provider."
    received = only_request(fake_a)
    assert (received.method, received.path, received.query) == ("POST", "/v1/chat/completions", {})
    assert received.headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert received.body == {"model": "gpt-4o-mini", "messages": USER}


def test_a_streamed_chat_through_the_azure_route(azure, fake_a):
    chunks = list(azure.chat.completions.create(model="gpt-fake", messages=USER, stream=True,
                                                stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert chunks[-1].usage.total_tokens == 18
    assert only_request(fake_a).body == {"model": "gpt-4o-mini", "messages": USER, "stream": True,
                                         "stream_options": {"include_usage": True}}


def test_an_azure_group_is_called_at_its_own_azure_deployment(azure, fake_b):
    completion = azure.chat.completions.create(model="azure-chat", messages=USER)
    assert completion.choices[0].message.content == "Hello from the fake provider."
    received = only_request(fake_b)
    assert (received.path, received.query) == ("/openai/deployments/chat-deployment/chat/completions",
                                               {"api-version": [AZURE_API_VERSION]})
    assert received.headers["api-key"] == AZURE_UPSTREAM_KEY


def test_completions_through_the_azure_route(azure, fake_a):
    completion = azure.completions.create(model="instruct", prompt="Once upon a time", max_tokens=5)
    assert completion.choices[0].text == " Hello from the fake provider."
    assert only_request(fake_a).body == {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time",
                                         "max_tokens": 5}


def test_embeddings_through_the_azure_route_in_floats_and_base64(azure, fake_a):
    floats = azure.embeddings.create(model="fake-embed", input=["a", "b"], encoding_format="float")
    fake_a.reset()
    raw = azure.embeddings.with_raw_response.create(model="fake-embed", input=["a", "b"])  # the SDK asks for base64

    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == floats.data[0].embedding
    assert [item.embedding for item in raw.parse().data] == [item.embedding for item in floats.data]
    assert only_request(fake_a).path == "/v1/embeddings"


def test_the_path_names_the_model_whatever_the_body_says(gateway, fake_a):
    response = requests.post(f"{gateway.url}/openai/deployments/gpt-fake/chat/completions", timeout=10,
                             headers={"api-key": MASTER_KEY}, json={"model": "mock-chat", "messages": USER})
    assert response.status_code == 200
    assert response.headers["x-gatehouse-model-group"] == "gpt-fake"
    assert only_request(fake_a).body["model"] == "gpt-4o-mini"


def test_azure_routes_refuse_a_missing_key_and_an_unknown_model(gateway, fake_a):
    missing = requests.post(f"{gateway.url}/openai/deployments/gpt-fake/chat/completions?api-version=2024-10-21",
                            json={"messages": USER}, timeout=10)
    assert missing.status_code == 401
    assert missing.json() == envelope(
        "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
        type="authentication_error", code="invalid_api_key")
    unknown = requests.post(f"{gateway.url}/openai/deployments/nope/embeddings?api-version=2024-10-21",
                            json={"input": "x"}, headers={"api-key": MASTER_KEY}, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == envelope("The model `nope` does not exist or you do not have access to it.",
                                      type="invalid_request_error", code="model_not_found", param="model")
    assert fake_a.requests == []
