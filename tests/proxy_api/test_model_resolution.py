"""Which group a request names: unknown groups (404), groups that cannot do the operation (400), and
`/moderations` without a model (the moderation group, or a 400 when there is none)."""
from __future__ import annotations

import pytest

from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

UNKNOWN_MODEL = envelope("The model `gpt-nonexistent` does not exist or you do not have access to it.",
                         "invalid_request_error", "model", "model_not_found")


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "hi"}]}),
    ("/chat/completions", {"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "gpt-nonexistent", "stream": True,
                              "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"model": "gpt-nonexistent", "prompt": "hi"}),
    ("/v1/completions", {"model": "gpt-nonexistent", "prompt": "hi", "stream": True}),
    ("/v1/embeddings", {"model": "gpt-nonexistent", "input": "hi"}),
    ("/v1/moderations", {"model": "gpt-nonexistent", "input": "hi"}),
])
def test_an_unknown_model_is_404_model_not_found(client, fake_gateway, auth_headers, path, body):
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == 404
    assert error_body(response) == UNKNOWN_MODEL
    assert fake_gateway.requests == []


def test_an_unknown_model_is_404_even_with_fallbacks_requested(client, fake_gateway, auth_headers):
    body = {"model": "gpt-nonexistent", "fallbacks": ["gpt-fake"], "messages": [{"role": "user", "content": "hi"}]}
    response = post_json(client, "/v1/chat/completions", body, auth_headers)
    assert response.status_code == 404
    assert error_body(response) == UNKNOWN_MODEL
    assert fake_gateway.requests == []


@pytest.mark.parametrize("path", ["/v1/models/gpt-nonexistent", "/models/gpt-nonexistent"])
def test_retrieving_an_unknown_model_is_404_model_not_found(client, fake_gateway, auth_headers, path):
    response = client.get(path, **auth_headers)
    assert response.status_code == 404
    assert error_body(response) == UNKNOWN_MODEL


def test_a_model_name_is_matched_exactly(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/embeddings", {"model": "EMBED-FAKE", "input": "hi"}, auth_headers)
    assert response.status_code == 404
    assert error_body(response) == envelope(
        "The model `EMBED-FAKE` does not exist or you do not have access to it.", "invalid_request_error", "model",
        "model_not_found")


@pytest.mark.parametrize(("path", "body", "operation"), [
    ("/v1/embeddings", {"model": "instruct-fake", "input": "hi"}, "embeddings"),
    ("/v1/moderations", {"model": "instruct-fake", "input": "hi"}, "moderations"),
])
def test_a_group_that_cannot_do_the_operation_is_400(client, fake_gateway, auth_headers, path, body, operation):
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope(f"The model `instruct-fake` does not support {operation}.",
                                            "invalid_request_error", "model", "unsupported_model")
    assert fake_gateway.requests == []


def test_the_same_group_still_serves_what_it_can(client, fake_gateway, auth_headers):
    body = {"model": "instruct-fake", "messages": [{"role": "user", "content": "hi"}]}
    response = post_json(client, "/v1/chat/completions", body, auth_headers)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    assert [(r.path, r.body["model"]) for r in fake_gateway.requests] == [
        ("/v1/completions", "gpt-3.5-turbo-instruct")]


def test_moderations_without_a_model_use_the_moderation_group(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/moderations", {"input": "I will kill the process"}, auth_headers)
    assert response.status_code == 200
    assert response["x-gatehouse-model-group"] == "moderation-fake"
    assert response.json()["results"][0]["flagged"] is True
    [upstream] = fake_gateway.requests
    assert (upstream.path, upstream.body) == (
        "/v1/moderations", {"model": "omni-moderation-latest", "input": "I will kill the process"})
    assert upstream.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_moderations_with_a_null_model_use_the_moderation_group_too(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/moderations", {"model": None, "input": "hello"}, auth_headers)
    assert response.status_code == 200
    assert response["x-gatehouse-model-group"] == "moderation-fake"
    [upstream] = fake_gateway.requests
    assert upstream.body == {"model": "omni-moderation-latest", "input": "hello"}


def test_moderations_without_a_model_and_no_moderation_group_are_400(client, configure_gateway, fake_openai,
                                                                      auth_headers):
    configure_gateway({"model_list": [
        {"model_name": "gpt-fake", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                      "api_base": f"{fake_openai.url}/v1"}},
    ]})
    response = post_json(client, "/v1/moderations", {"input": "hello"}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("No moderation model is configured; pass 'model'.",
                                            "invalid_request_error", "model", "missing_required_parameter")
    assert fake_openai.requests == []


def test_moderations_without_a_model_still_check_the_input(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/moderations", {"input": 42}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope(
        "'input' must be a string, an array of strings, or an array of content parts.", "invalid_request_error",
        "input", "invalid_type")
    assert fake_gateway.requests == []
