"""What a provider's failure looks like to the client, through the in-process client and the real FakeOpenAI."""
from __future__ import annotations

import socket

import orjson
import pytest

from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

CHAT = "/v1/chat/completions"
CHAT_BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
UPSTREAM_AUTH = envelope(
    "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.",
    "upstream_authentication_error", None, "upstream_authentication_failed")
# What OpenAI itself answers to a bad key: it echoes part of the key back.
UPSTREAM_AUTH_BODY = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY[:8]}****{UPSTREAM_KEY[-4:]}. "
                                           "You can find your API key at https://platform.openai.com/account.",
                                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize(("path", "body"), [
    (CHAT, CHAT_BODY),
    (CHAT, {**CHAT_BODY, "stream": True}),
    ("/v1/completions", {"model": "gpt-fake", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "embed-fake", "input": "hi"}),
    ("/v1/moderations", {"model": "moderation-fake", "input": "hi"}),
])
def test_upstream_auth_failure_is_502_and_leaks_neither_body_nor_key(client, fake_gateway, auth_headers, status,
                                                                     path, body):
    fake_gateway.fail_next(status=status, body=UPSTREAM_AUTH_BODY)
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == 502
    assert error_body(response) == UPSTREAM_AUTH
    everything_sent = response.serialize()
    assert UPSTREAM_KEY.encode() not in everything_sent
    assert UPSTREAM_KEY[-4:].encode() not in everything_sent
    assert b"Incorrect API key" not in everything_sent
    # The deployment's key did go upstream, once: a credentials failure is not retried on the same deployment.
    assert [r.headers["authorization"] for r in fake_gateway.requests] == [f"Bearer {UPSTREAM_KEY}"]


def test_upstream_400_keeps_its_status_message_param_and_code(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=400, body={"error": {
        "message": "Invalid value for 'temperature': must be at most 2.", "type": "invalid_request_error",
        "param": "temperature", "code": "invalid_value"}})
    response = post_json(client, CHAT, {**CHAT_BODY, "temperature": 7}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("Invalid value for 'temperature': must be at most 2.",
                                            "invalid_request_error", "temperature", "invalid_value")
    assert len(fake_gateway.requests) == 1  # a client error is never retried
    assert fake_gateway.requests[0].body["temperature"] == 7  # passed through untouched


def test_upstream_400_without_a_message_gets_a_generic_one(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=400, body="<html>bad request</html>")
    response = post_json(client, CHAT, CHAT_BODY, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("The upstream provider rejected the request (HTTP 400).",
                                            "invalid_request_error", None, None)


def test_upstream_422_keeps_its_status(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=422, body={"error": {"message": "Unprocessable input.",
                                                       "type": "invalid_request_error", "param": "input",
                                                       "code": None}})
    response = post_json(client, "/v1/embeddings", {"model": "embed-fake", "input": "hi"}, auth_headers)
    assert response.status_code == 422
    assert error_body(response) == envelope("Unprocessable input.", "invalid_request_error", "input", None)


def test_upstream_400_on_a_stream_is_a_json_error_not_an_event(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=400, body={"error": {"message": "Context too long.", "type": "invalid_request_error",
                                                       "param": "messages", "code": "context_length_exceeded"}})
    response = post_json(client, CHAT, {**CHAT_BODY, "stream": True}, auth_headers, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 400
    assert not response.streaming
    assert error_body(response) == envelope("Context too long.", "invalid_request_error", "messages",
                                            "context_length_exceeded")


def test_upstream_429_after_retries_is_429_with_retry_after(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(3, status=429, headers={"Retry-After": "0.05"}, body={"error": {
        "message": "Rate limit reached for gpt-4o-mini.", "type": "requests", "param": None,
        "code": "rate_limit_exceeded"}})
    response = post_json(client, CHAT, {**CHAT_BODY, "num_retries": 2}, auth_headers)
    assert response.status_code == 429
    assert response["Retry-After"] == "1"  # 0.05 s, rounded up to whole seconds
    assert error_body(response) == envelope("Rate limit reached for gpt-4o-mini.", "rate_limit_error", None,
                                            "rate_limit_exceeded")
    assert len(fake_gateway.requests) == 3


def test_upstream_429_across_deployments_keeps_the_providers_retry_after(client, configure_gateway, fake_openai,
                                                                          auth_headers):
    api_base = f"{fake_openai.url}/v1"
    configure_gateway({"model_list": [
        {"model_name": "gpt-pair", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base},
         "model_info": {"id": "pair-a"}},
        {"model_name": "gpt-pair", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base},
         "model_info": {"id": "pair-b"}},
    ], "router_settings": {"num_retries": 1}})
    fake_openai.fail_next(2, status=429, headers={"Retry-After": "30"})
    response = post_json(client, CHAT, {**CHAT_BODY, "model": "gpt-pair"}, auth_headers)
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert error_body(response) == envelope("fake failure 429", "rate_limit_error", None, "rate_limit_exceeded")
    assert len(fake_openai.requests) == 2  # each deployment once; no 30 s wait on the same one


def test_a_429_then_success_is_a_200(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=429, headers={"Retry-After": "0"})
    response = post_json(client, CHAT, CHAT_BODY, auth_headers)
    assert response.status_code == 200
    assert response["x-gatehouse-attempts"] == "2"
    assert len(fake_gateway.requests) == 2


def test_malformed_upstream_json_is_a_clean_502(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(kind="malformed")
    response = post_json(client, CHAT, {**CHAT_BODY, "num_retries": 0}, auth_headers)
    assert response.status_code == 502
    assert error_body(response) == envelope("The upstream provider returned a body that is not a JSON object.",
                                            "api_error", None, "upstream_error")
    assert b"this is not json" not in response.content
    assert len(fake_gateway.requests) == 1


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", {"model": "gpt-fake", "prompt": "hi", "num_retries": 0}),
    ("/v1/embeddings", {"model": "embed-fake", "input": "hi", "num_retries": 0}),
    ("/v1/moderations", {"model": "moderation-fake", "input": "hi", "num_retries": 0}),
])
def test_malformed_upstream_json_is_a_clean_502_on_every_endpoint(client, fake_gateway, auth_headers, path, body):
    fake_gateway.fail_next(kind="malformed")
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == 502
    assert error_body(response) == envelope("The upstream provider returned a body that is not a JSON object.",
                                            "api_error", None, "upstream_error")


def test_malformed_upstream_json_is_retried(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(kind="malformed")
    response = post_json(client, CHAT, {**CHAT_BODY, "num_retries": 1}, auth_headers)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake provider."
    assert len(fake_gateway.requests) == 2


@pytest.mark.parametrize(("status", "expected_status"), [(500, 502), (502, 502), (503, 503), (504, 504)])
def test_upstream_5xx_after_retries_keeps_its_class_and_message(client, fake_gateway, auth_headers, status,
                                                                 expected_status):
    fake_gateway.fail_next(2, status=status)
    response = post_json(client, CHAT, {**CHAT_BODY, "num_retries": 1}, auth_headers)
    assert response.status_code == expected_status
    assert error_body(response) == envelope(f"fake failure {status}", "api_error", None, "upstream_error")
    assert len(fake_gateway.requests) == 2


def test_upstream_404_is_404_upstream_model_not_found(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(status=404, body={"error": {"message": "The model `gpt-4o-mini` does not exist.",
                                                       "type": "invalid_request_error", "param": None,
                                                       "code": "model_not_found"}})
    response = post_json(client, CHAT, CHAT_BODY, auth_headers)
    assert response.status_code == 404
    assert error_body(response) == envelope("The model `gpt-4o-mini` does not exist.", "invalid_request_error", None,
                                            "upstream_model_not_found")


def test_an_upstream_timeout_is_504(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(kind="hang", seconds=1.0)
    response = post_json(client, CHAT, {**CHAT_BODY, "timeout": 0.3, "num_retries": 0}, auth_headers)
    assert response.status_code == 504
    assert error_body(response) == envelope("The upstream provider did not answer within the timeout.",
                                            "timeout_error", None, "upstream_timeout")


def test_an_unreachable_upstream_is_502(client, configure_gateway, fake_openai, auth_headers):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    configure_gateway({"model_list": [{"model_name": "gpt-down", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{closed_port}/v1", "api_key": UPSTREAM_KEY}}]})
    response = post_json(client, CHAT, {**CHAT_BODY, "model": "gpt-down", "num_retries": 0}, auth_headers)
    assert response.status_code == 502
    assert error_body(response) == envelope(f"Could not reach the upstream provider at 127.0.0.1:{closed_port}.",
                                            "api_error", None, "upstream_connection_error")
    assert UPSTREAM_KEY.encode() not in response.content


def test_a_stream_cut_mid_way_ends_with_one_error_event(client, fake_gateway, auth_headers):
    fake_gateway.fail_next(kind="stream_break", after_chunks=2)
    response = post_json(client, CHAT, {**CHAT_BODY, "stream": True}, auth_headers)
    assert response.status_code == 200
    frames = b"".join(response.streaming_content).split(b"\n\n")
    assert frames[-1] == b""
    assert b"data: [DONE]" not in frames
    events = [orjson.loads(frame[len(b"data: "):]) for frame in frames[:-1]]
    assert [event.get("object") for event in events[:2]] == ["chat.completion.chunk"] * 2
    assert events[2:] == [envelope("The upstream stream ended before it was complete.", "api_error", None,
                                   "upstream_connection_error")]
