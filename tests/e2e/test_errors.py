"""Raw HTTP: every refusal is OpenAI's JSON envelope with the exact status, type, code and param, and
nothing reaches the upstream."""
from __future__ import annotations

import orjson
import pytest
import requests

from tests.e2e.helpers import AUTH, envelope, post_json

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]
TRUNCATED = b'{"model": "gpt-fake", "messages": ['


def _json_error(raw: bytes) -> str:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return str(error)
    raise AssertionError("expected invalid JSON")


@pytest.fixture(params=["", "/v1"], ids=["root", "v1"])
def prefix(request, gateway) -> str:
    return f"{gateway.url}{request.param}"


@pytest.fixture
def nothing_upstream(fake_a, fake_b, fake_c):
    yield
    assert fake_a.requests == fake_b.requests == fake_c.requests == []


@pytest.mark.usefixtures("nothing_upstream")
@pytest.mark.parametrize(("path", "body", "status", "expected"), [
    ("/chat/completions", TRUNCATED, 400, envelope(
        f"The request body is not valid JSON: {_json_error(TRUNCATED)}.",
        type="invalid_request_error", code="invalid_json")),
    ("/chat/completions", b"", 400, envelope("The request body is empty; send a JSON object.",
                                             type="invalid_request_error", code="invalid_json")),
    ("/chat/completions", b'["gpt-fake"]', 400, envelope("The request body must be a JSON object, not an array.",
                                                         type="invalid_request_error", code="invalid_json")),
    ("/embeddings", b'"text"', 400, envelope("The request body must be a JSON object, not a string.",
                                             type="invalid_request_error", code="invalid_json")),
    ("/chat/completions", {"messages": MESSAGES}, 400, envelope(
        "you must provide a model parameter", type="invalid_request_error", code="missing_required_parameter",
        param="model")),
    ("/chat/completions", {"model": 5, "messages": MESSAGES}, 400, envelope(
        "'model' must be a non-empty string.", type="invalid_request_error", code="invalid_type", param="model")),
    ("/chat/completions", {"model": "gpt-fake"}, 400, envelope(
        "'messages' is a required property.", type="invalid_request_error", code="missing_required_parameter",
        param="messages")),
    ("/chat/completions", {"model": "gpt-fake", "messages": []}, 400, envelope(
        "'messages' must be a non-empty array.", type="invalid_request_error", code="invalid_type",
        param="messages")),
    ("/chat/completions", {"model": "gpt-fake", "messages": [{"role": "robot", "content": "hi"}]}, 400, envelope(
        "messages[0].role must be one of assistant, developer, function, system, tool, user; got 'robot'.",
        type="invalid_request_error", code="invalid_value", param="messages[0].role")),
    ("/chat/completions", {"model": "gpt-fake", "messages": MESSAGES, "stream": "yes"}, 400, envelope(
        "'stream' must be a boolean.", type="invalid_request_error", code="invalid_type", param="stream")),
    ("/chat/completions", {"model": "gpt-fake", "messages": MESSAGES, "stream_options": {"include_usage": True}},
     400, envelope("'stream_options' is only allowed when 'stream' is true.", type="invalid_request_error",
                   code="invalid_value", param="stream_options")),
    ("/chat/completions", {"model": "gpt-fake", "messages": MESSAGES, "num_retries": 99}, 400, envelope(
        "'num_retries' must be a whole number from 0 to 10.", type="invalid_request_error", code="invalid_type",
        param="num_retries")),
    ("/chat/completions", {"model": "no-such-model", "messages": MESSAGES}, 404, envelope(
        "The model `no-such-model` does not exist or you do not have access to it.", type="invalid_request_error",
        code="model_not_found", param="model")),
    ("/chat/completions", {"model": "no-such-model", "messages": MESSAGES, "stream": True}, 404, envelope(
        "The model `no-such-model` does not exist or you do not have access to it.", type="invalid_request_error",
        code="model_not_found", param="model")),
    ("/completions", {"model": "gpt-fake"}, 400, envelope(
        "'prompt' is a required property.", type="invalid_request_error", code="missing_required_parameter",
        param="prompt")),
    ("/embeddings", {"model": "fake-embed", "input": "hi", "encoding_format": "binary"}, 400, envelope(
        "'encoding_format' must be 'float' or 'base64'.", type="invalid_request_error", code="invalid_value",
        param="encoding_format")),
    ("/embeddings", {"model": "fake-embed"}, 400, envelope(
        "'input' is a required property.", type="invalid_request_error", code="missing_required_parameter",
        param="input")),
    ("/moderations", {"model": "fake-moderation", "input": 7}, 400, envelope(
        "'input' must be a string, an array of strings, or an array of content parts.",
        type="invalid_request_error", code="invalid_type", param="input")),
    ("/moderations", {"model": "azure-chat", "input": "hi"}, 400, envelope(
        "The model `azure-chat` does not support moderations.", type="invalid_request_error",
        code="unsupported_model", param="model")),
], ids=["malformed-json", "empty-body", "array-body", "string-body", "missing-model", "model-not-string",
        "missing-messages", "empty-messages", "bad-role", "stream-not-bool", "stream-options-without-stream",
        "num-retries-out-of-range", "unknown-model", "unknown-model-stream", "missing-prompt",
        "bad-encoding-format", "missing-input", "bad-moderation-input", "unsupported-operation"])
def test_bad_requests_get_the_exact_envelope(prefix, path, body, status, expected):
    response = post_json(f"{prefix}{path}", body)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


@pytest.mark.usefixtures("nothing_upstream")
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nothing"), ("POST", "/v1/chat/completion"),
                                              ("GET", "/v2/models"), ("DELETE", "/chat")])
def test_unknown_route_is_a_json_404(gateway, method, path):
    response = requests.request(method, f"{gateway.url}{path}", headers=AUTH, timeout=10)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == envelope(f"Unknown route: {method} {path}", type="invalid_request_error",
                                       code="not_found")


@pytest.mark.usefixtures("nothing_upstream")
@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/chat/completions", "POST, OPTIONS"),
    ("PUT", "/completions", "POST, OPTIONS"),
    ("GET", "/embeddings", "POST, OPTIONS"),
    ("DELETE", "/moderations", "POST, OPTIONS"),
    ("POST", "/models", "GET, HEAD, OPTIONS"),
])
def test_wrong_method_is_a_json_405(prefix, method, path, allowed):
    response = requests.request(method, f"{prefix}{path}", headers=AUTH, timeout=10)

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert response.headers["allow"] == allowed
    assert response.json() == envelope(f'Method "{method}" not allowed.', type="invalid_request_error",
                                       code="method_not_allowed")


def test_event_stream_accept_header_is_served_not_406(prefix):
    response = post_json(f"{prefix}/chat/completions", {"model": "mock-stream", "messages": MESSAGES, "stream": True},
                         headers={"Accept": "text/event-stream"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    frames = response.content.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]


def test_event_stream_accept_header_on_an_error_still_gets_json(gateway):
    response = post_json(f"{gateway.v1}/chat/completions", {"model": "nope", "messages": MESSAGES, "stream": True},
                         headers={"Accept": "text/event-stream"})

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "model_not_found"


def test_moderations_without_a_model_use_the_first_moderation_group(gateway, fake_c):
    response = post_json(f"{gateway.v1}/moderations", {"input": "hello"})

    assert response.status_code == 200
    assert response.headers["x-gatehouse-model-group"] == "fake-moderation"
    assert fake_c.requests[0].body == {"input": "hello", "model": "omni-moderation-latest"}
