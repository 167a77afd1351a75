"""The master key in `Authorization: Bearer`, `x-api-key` or `api-key`; anything else is a 401 envelope
and nothing reaches upstream."""
from __future__ import annotations

import base64
import dataclasses

import pytest

from models_registry.runtime import gateway_config, use_gateway_config
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json
from tests.support.server import MASTER_KEY

CHAT_BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
NO_KEY = envelope("No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
                  "authentication_error", None, "invalid_api_key")
WRONG_KEY = envelope("Incorrect API key provided.", "authentication_error", None, "invalid_api_key")

ENDPOINTS = [
    ("/v1/chat/completions", CHAT_BODY),
    ("/v1/completions", {"model": "gpt-fake", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "embed-fake", "input": "hi"}),
    ("/v1/moderations", {"model": "moderation-fake", "input": "hi"}),
]


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_API_KEY"])
def test_each_accepted_header_carries_the_master_key(client, fake_gateway, header):
    value = f"Bearer {MASTER_KEY}" if header == "HTTP_AUTHORIZATION" else MASTER_KEY
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {header: value})
    assert response.status_code == 200
    assert len(fake_gateway.requests) == 1


def test_the_bearer_scheme_is_case_insensitive(client, fake_gateway):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": f"bearer {MASTER_KEY}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_a_missing_key_is_401_and_nothing_is_sent_upstream(client, fake_gateway, path, body):
    response = post_json(client, path, body)
    assert response.status_code == 401
    assert error_body(response) == NO_KEY
    assert fake_gateway.requests == []


@pytest.mark.parametrize("headers", [
    pytest.param({"HTTP_AUTHORIZATION": "Bearer sk-wrong"}, id="authorization-bearer"),
    pytest.param({"HTTP_X_API_KEY": "sk-wrong"}, id="x-api-key"),
    pytest.param({"HTTP_API_KEY": "sk-wrong"}, id="api-key"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}x"}, id="master-key-with-suffix"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY[:-1]}"}, id="master-key-prefix"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {UPSTREAM_KEY}"}, id="the-deployment-key"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer sk-wrong", "HTTP_X_API_KEY": MASTER_KEY}, id="bearer-wins"),
])
@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_a_wrong_key_is_401_and_nothing_is_sent_upstream(client, fake_gateway, headers, path, body):
    response = post_json(client, path, body, headers)
    assert response.status_code == 401
    assert error_body(response) == WRONG_KEY
    assert fake_gateway.requests == []


@pytest.mark.parametrize("authorization", [
    pytest.param(f"Basic {base64.b64encode(f'user:{MASTER_KEY}'.encode()).decode()}", id="basic"),
    pytest.param(f"Token {MASTER_KEY}", id="token"),
    pytest.param(MASTER_KEY, id="no-scheme"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param("Bearer    ", id="bearer-blank-token"),
])
def test_a_non_bearer_authorization_is_not_a_key(client, fake_gateway, authorization):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": authorization})
    assert response.status_code == 401
    assert error_body(response) == NO_KEY
    assert fake_gateway.requests == []


def test_the_key_is_checked_before_the_body(client, fake_gateway):
    response = post_json(client, "/v1/chat/completions", b"{not json", {"HTTP_X_API_KEY": "sk-wrong"})
    assert response.status_code == 401
    assert error_body(response) == WRONG_KEY


@pytest.mark.parametrize("path", ["/v1/models", "/models", "/v1/models/gpt-fake", "/models/gpt-fake"])
def test_listing_and_retrieving_models_need_the_key(client, fake_gateway, path, auth_headers):
    missing = client.get(path)
    assert (missing.status_code, error_body(missing)) == (401, NO_KEY)
    wrong = client.get(path, HTTP_API_KEY="sk-wrong")
    assert (wrong.status_code, error_body(wrong)) == (401, WRONG_KEY)
    assert client.get(path, **auth_headers).status_code == 200


def test_gateway_master_key_setting_overrides_the_config(client, fake_gateway, settings):
    settings.GATEWAY_MASTER_KEY = "sk-from-the-environment"
    refused = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}"})
    assert (refused.status_code, error_body(refused)) == (401, WRONG_KEY)
    assert fake_gateway.requests == []
    accepted = post_json(client, "/v1/chat/completions", CHAT_BODY,
                         {"HTTP_AUTHORIZATION": "Bearer sk-from-the-environment"})
    assert accepted.status_code == 200


def test_no_master_key_configured_is_503_not_open(client, settings, fake_gateway):
    settings.GATEWAY_MASTER_KEY = ""
    use_gateway_config(dataclasses.replace(gateway_config(), master_key=None))  # the fixture restores it
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": "Bearer anything"})
    assert response.status_code == 503
    assert error_body(response) == envelope(
        "The gateway has no master key configured; set general_settings.master_key.", "api_error", None,
        "gateway_not_configured")
    assert fake_gateway.requests == []
