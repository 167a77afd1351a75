"""`drop_params`: a parameter the chosen deployment's provider cannot honour is a 400 naming it, unless
`drop_params` is true in the request, on the deployment or in `litellm_settings`, in which case it is
removed from what reaches the provider and the drop is logged. Through the in-process API against the
loopback FakeOpenAI (a `text-completion-openai` model cannot take tools) and the mock (no logprobs)."""
from __future__ import annotations

import logging

import orjson
import pytest

from keys import log_buffer
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
PROMPT = "user: hi\nassistant:"


def config(api_base: str, *, drop_globally: bool | None = None) -> dict:
    def deployment(group: str, model: str, deployment_id: str, **params) -> dict:
        return {"model_name": group, "litellm_params": {"model": model, **params}, "model_info": {"id": deployment_id}}

    upstream = {"api_base": api_base, "api_key": UPSTREAM_KEY}
    built = {"model_list": [
        deployment("instruct", "text-completion-openai/gpt-3.5-turbo-instruct", "instruct-1", **upstream),
        deployment("instruct-lenient", "text-completion-openai/gpt-3.5-turbo-instruct", "instruct-lenient-1",
                   drop_params=True, **upstream),
        deployment("instruct-strict", "text-completion-openai/gpt-3.5-turbo-instruct", "instruct-strict-1",
                   drop_params=False, **upstream),
        # A mixed group: the first tier cannot take tools, the second could.
        deployment("mixed", "text-completion-openai/gpt-3.5-turbo-instruct", "mixed-instruct", order=1, **upstream),
        deployment("mixed", "openai/gpt-4o-mini", "mixed-gpt", order=2, **upstream),
        deployment("gpt", "openai/gpt-4o-mini", "gpt-1", **upstream),
        deployment("mock", "mock/mock-gpt", "mock-1"),
    ]}
    if drop_globally is not None:
        built["litellm_settings"] = {"drop_params": drop_globally}
    return built


@pytest.fixture
def upstream(configure_gateway, fake_openai):
    configure_gateway(config(f"{fake_openai.url}/v1"))
    log_buffer.pending_discard()
    yield fake_openai
    log_buffer.pending_discard()


def unsupported(name: str, provider: str, group: str, deployment_id: str) -> dict:
    return envelope(
        f"The parameter '{name}' is not supported by {provider} (model `{group}`, deployment '{deployment_id}'). "
        "Remove it, or set drop_params: true (in the request, on the deployment, or in litellm_settings) to have "
        "it dropped.", "invalid_request_error", name, "unsupported_parameter")


def test_an_unsupported_parameter_is_a_400_naming_it(client, auth_headers, upstream):
    response = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": [TOOL],
                                        "tool_choice": "auto"}, auth_headers)

    assert response.status_code == 400
    assert error_body(response) == unsupported("tools", "text-completion-openai", "instruct", "instruct-1")
    assert upstream.requests == []
    [record] = log_buffer.pending_records()
    assert (record.status_code, record.error_type, record.deployment_id) == (400, "invalid_request_error",
                                                                            "instruct-1")


def test_drop_params_in_the_request_drops_them_and_logs_it(client, auth_headers, upstream, caplog):
    with caplog.at_level(logging.INFO, logger="gatehouse.api"):
        response = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": [TOOL],
                                            "tool_choice": "auto", "drop_params": True}, auth_headers)

    assert response.status_code == 200
    assert [request.body for request in upstream.requests] == [{"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT}]
    request_id = response["x-request-id"]
    [drop] = [record for record in caplog.records if record.name == "gatehouse.api" and "dropped" in record.message]
    assert drop.getMessage() == (f"request {request_id}: dropped tools, tool_choice, unsupported by "
                                 "text-completion-openai deployment instruct-1")
    assert (drop.request_id, drop.dropped_params) == (request_id, ["tools", "tool_choice"])


def test_drop_params_on_the_deployment_drops_them(client, auth_headers, upstream):
    response = post_json(client, CHAT, {"model": "instruct-lenient", "messages": USER,
                                        "response_format": {"type": "json_object"}}, auth_headers)
    assert response.status_code == 200
    assert [request.body for request in upstream.requests] == [{"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT}]


def test_the_request_may_refuse_drops_the_deployment_allows(client, auth_headers, upstream):
    response = post_json(client, CHAT, {"model": "instruct-lenient", "messages": USER, "tools": [TOOL],
                                        "drop_params": False}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == unsupported("tools", "text-completion-openai", "instruct-lenient",
                                               "instruct-lenient-1")
    assert upstream.requests == []


def test_drop_params_in_litellm_settings_drops_them_everywhere(client, auth_headers, configure_gateway, fake_openai):
    configure_gateway(config(f"{fake_openai.url}/v1", drop_globally=True))
    response = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": [TOOL]}, auth_headers)
    assert response.status_code == 200
    assert [request.body for request in fake_openai.requests] == [{"model": "gpt-3.5-turbo-instruct",
                                                                  "prompt": PROMPT}]
    fake_openai.reset()
    # A deployment's own `drop_params: false` is more specific than the config's.
    refused = post_json(client, CHAT, {"model": "instruct-strict", "messages": USER, "tools": [TOOL]}, auth_headers)
    assert error_body(refused) == unsupported("tools", "text-completion-openai", "instruct-strict",
                                              "instruct-strict-1")
    assert fake_openai.requests == []


def test_a_streamed_request_is_refused_before_the_stream_or_streams_without_them(client, auth_headers, upstream):
    refused = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": [TOOL], "stream": True},
                        auth_headers)
    assert refused.status_code == 400
    assert refused["Content-Type"] == "application/json"
    assert error_body(refused) == unsupported("tools", "text-completion-openai", "instruct", "instruct-1")
    assert upstream.requests == []

    streamed = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": [TOOL], "stream": True,
                                        "drop_params": True}, auth_headers)
    assert streamed.status_code == 200
    frames = b"".join(streamed.streaming_content).split(b"\n\n")
    assert frames[-2] == b"data: [DONE]"
    assert [request.body for request in upstream.requests] == [
        {"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT, "stream": True,
         "stream_options": {"include_usage": True}}]


def test_an_unsupported_parameter_sent_as_null_is_dropped_silently(client, auth_headers, upstream):
    response = post_json(client, CHAT, {"model": "instruct", "messages": USER, "tools": None}, auth_headers)
    assert response.status_code == 200
    assert [request.body for request in upstream.requests] == [{"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT}]


def test_the_400_is_not_retried_on_another_deployment_of_the_group(client, auth_headers, upstream):
    """As in LiteLLM, the unsupported-parameter error is the caller's, answered at once: no other deployment
    is tried, nothing is sent, and no deployment cools down for it."""
    response = post_json(client, CHAT, {"model": "mixed", "messages": USER, "tools": [TOOL]}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == unsupported("tools", "text-completion-openai", "mixed", "mixed-instruct")
    assert upstream.requests == []
    again = post_json(client, CHAT, {"model": "mixed", "messages": USER}, auth_headers)
    assert again["x-gatehouse-deployment-id"] == "mixed-instruct"


def test_the_mock_refuses_logprobs_unless_dropped(client, auth_headers, upstream):
    refused = post_json(client, CHAT, {"model": "mock", "messages": USER, "logprobs": True, "top_logprobs": 2},
                        auth_headers)
    assert refused.status_code == 400
    assert error_body(refused) == unsupported("logprobs", "mock", "mock", "mock-1")
    dropped = post_json(client, CHAT, {"model": "mock", "messages": USER, "logprobs": True, "drop_params": True},
                        auth_headers)
    assert dropped.status_code == 200
    assert orjson.loads(dropped.content)["choices"][0]["logprobs"] is None


def test_an_openai_deployment_gets_every_parameter_and_never_drop_params(client, auth_headers, upstream):
    body = {"model": "gpt", "messages": USER, "tools": [TOOL], "logprobs": True, "logit_bias": {"50256": -100},
            "drop_params": True}
    response = post_json(client, CHAT, body, auth_headers)
    assert response.status_code == 200
    assert [request.body for request in upstream.requests] == [
        {"model": "gpt-4o-mini", "messages": USER, "tools": [TOOL], "logprobs": True, "logit_bias": {"50256": -100}}]


@pytest.mark.parametrize("value", ["yes", 1, {"enabled": True}])
def test_drop_params_must_be_a_boolean(client, auth_headers, upstream, value):
    response = post_json(client, CHAT, {"model": "instruct", "messages": USER, "drop_params": value}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("'drop_params' must be a boolean.", "invalid_request_error",
                                            "drop_params", "invalid_type")
    assert upstream.requests == []
