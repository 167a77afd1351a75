"""The master key in any of the three headers; a missing or wrong key is a 401 envelope and nothing
goes upstream."""
from __future__ import annotations

import openai
import pytest
import requests
from openai import OpenAI

from tests.e2e.helpers import envelope, post_json
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

MISSING = envelope("No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
                   type="authentication_error", code="invalid_api_key")
WRONG = envelope("Incorrect API key provided.", type="authentication_error", code="invalid_api_key")
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


def test_sdk_without_a_key_is_refused_and_nothing_reaches_upstream(gateway, fake_a):
    with OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as sdk, \
            pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(**CHAT, extra_headers={"Authorization": openai.Omit()})

    assert "authorization" not in caught.value.response.request.headers
    assert caught.value.status_code == 401
    assert caught.value.body == MISSING["error"]
    assert caught.value.response.json() == MISSING
    assert fake_a.requests == []


@pytest.mark.parametrize("operation", ["chat", "chat_stream", "embeddings", "models"])
def test_sdk_with_a_wrong_key_is_refused_and_nothing_reaches_upstream(gateway, fake_a, operation):
    with OpenAI(base_url=gateway.v1, api_key="sk-wrong", max_retries=0) as sdk, \
            pytest.raises(openai.AuthenticationError) as caught:
        if operation == "chat":
            sdk.chat.completions.create(**CHAT)
        elif operation == "chat_stream":
            sdk.chat.completions.create(**CHAT, stream=True)
        elif operation == "embeddings":
            sdk.embeddings.create(model="fake-embed", input="hi")
        else:
            sdk.models.list()

    assert caught.value.status_code == 401
    assert caught.value.response.headers["content-type"] == "application/json"
    assert caught.value.response.json() == WRONG
    assert fake_a.requests == []


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {MASTER_KEY}"},
    {"Authorization": f"bearer {MASTER_KEY}"},
    {"x-api-key": MASTER_KEY},
    {"api-key": MASTER_KEY},
], ids=["bearer", "bearer-lowercase", "x-api-key", "api-key"])
def test_key_accepted_in_each_header(gateway, fake_a, headers):
    response = requests.post(f"{gateway.v1}/chat/completions", json=CHAT, headers=headers, timeout=30)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake provider."
    # The caller's key is never forwarded: the upstream sees the deployment's own key only.
    received = fake_a.requests[0]
    assert received.headers["authorization"] == "Bearer sk-upstream-openai-a"
    assert "x-api-key" not in received.headers
    assert "api-key" not in received.headers


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, MISSING),
    ({"Authorization": "Bearer "}, MISSING),
    ({"Authorization": f"Basic {MASTER_KEY}"}, MISSING),
    ({"Authorization": "Bearer sk-wrong"}, WRONG),
    ({"x-api-key": "sk-wrong"}, WRONG),
    ({"api-key": f"{MASTER_KEY}x"}, WRONG),
], ids=["none", "empty-bearer", "basic-scheme", "wrong-bearer", "wrong-x-api-key", "wrong-api-key"])
def test_missing_or_wrong_key_in_raw_headers(gateway, fake_a, headers, expected):
    response = requests.post(f"{gateway.v1}/chat/completions", json=CHAT, headers=headers, timeout=30)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected
    assert fake_a.requests == []


def test_model_routes_need_a_key_too(gateway):
    for path in ("/v1/models", "/models/gpt-fake"):
        response = requests.get(f"{gateway.url}{path}", timeout=30)
        assert (response.status_code, response.json()) == (401, MISSING)


def test_health_needs_no_key(gateway):
    response = requests.get(f"{gateway.url}/health/liveliness", timeout=30)

    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_auth_is_checked_before_the_body(gateway, fake_a):
    response = post_json(f"{gateway.v1}/chat/completions", b"{not json", headers={"Authorization": "Bearer nope"})

    assert (response.status_code, response.json()) == (401, WRONG)
