"""Bad request bodies get OpenAI's envelope with the exact status, type, param and code, and never reach upstream."""
from __future__ import annotations

import pytest

from tests.proxy_api.helpers import envelope, error_body, post_json

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"

USER_MESSAGE = {"role": "user", "content": "hi"}
VALID_BODIES = {
    CHAT: {"model": "gpt-fake", "messages": [USER_MESSAGE]},
    COMPLETIONS: {"model": "gpt-fake", "prompt": "Say hi"},
    EMBEDDINGS: {"model": "embed-fake", "input": "hello"},
    MODERATIONS: {"model": "moderation-fake", "input": "hello"},
}
UPSTREAM_PATHS = {CHAT: "/v1/chat/completions", COMPLETIONS: "/v1/completions", EMBEDDINGS: "/v1/embeddings",
                  MODERATIONS: "/v1/moderations"}


def invalid(message: str, param: str | None = None, code: str | None = None) -> dict:
    return envelope(message, "invalid_request_error", param, code)


def with_fields(path: str, drop: tuple[str, ...] = (), **fields) -> dict:
    body = {key: value for key, value in VALID_BODIES[path].items() if key not in drop}
    body.update(fields)
    return body


def assert_rejected(client, fake, auth_headers, path: str, body, status: int, expected: dict) -> None:
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == status
    assert error_body(response) == expected
    assert fake.requests == []


@pytest.mark.parametrize("path", list(VALID_BODIES))
def test_each_valid_body_reaches_the_fake_once(client, fake_gateway, auth_headers, path):
    """The control for every rejection below: the same body, made valid, is proxied upstream."""
    response = post_json(client, path, VALID_BODIES[path], auth_headers)
    assert response.status_code == 200
    assert [(r.method, r.path) for r in fake_gateway.requests] == [("POST", UPSTREAM_PATHS[path])]


BODY_CASES = [
    pytest.param(b'{"model": ',
                 "The request body is not valid JSON: unexpected end of data: line 1 column 11 (char 10).",
                 id="truncated-json"),
    pytest.param(b"{not json}",
                 "The request body is not valid JSON: unexpected character, expected a string key: line 1 column 2 "
                 "(char 1).", id="garbage"),
    pytest.param(b"", "The request body is empty; send a JSON object.", id="empty"),
    pytest.param(b'[{"model": "gpt-fake"}]', "The request body must be a JSON object, not an array.", id="array"),
    pytest.param(b'"hello"', "The request body must be a JSON object, not a string.", id="string"),
    pytest.param(b"42", "The request body must be a JSON object, not a number.", id="integer"),
    pytest.param(b"4.5", "The request body must be a JSON object, not a number.", id="float"),
    pytest.param(b"true", "The request body must be a JSON object, not a boolean.", id="boolean"),
    pytest.param(b"null", "The request body must be a JSON object, not null.", id="null"),
]


@pytest.mark.parametrize("path", list(VALID_BODIES))
@pytest.mark.parametrize(("raw", "message"), BODY_CASES)
def test_a_body_that_is_not_a_json_object_is_rejected(client, fake_gateway, auth_headers, path, raw, message):
    assert_rejected(client, fake_gateway, auth_headers, path, raw, 400, invalid(message, code="invalid_json"))


MISSING_MODEL = invalid("you must provide a model parameter", "model", "missing_required_parameter")
BAD_MODEL = invalid("'model' must be a non-empty string.", "model", "invalid_type")


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, EMBEDDINGS])
@pytest.mark.parametrize(("fields", "drop", "expected"), [
    pytest.param({}, ("model",), MISSING_MODEL, id="missing"),
    pytest.param({"model": None}, (), MISSING_MODEL, id="null"),
    pytest.param({"model": 42}, (), BAD_MODEL, id="number"),
    pytest.param({"model": ["gpt-fake"]}, (), BAD_MODEL, id="array"),
    pytest.param({"model": ""}, (), BAD_MODEL, id="empty"),
    pytest.param({"model": "   "}, (), BAD_MODEL, id="blank"),
])
def test_model_must_be_a_non_empty_string(client, fake_gateway, auth_headers, path, fields, drop, expected):
    assert_rejected(client, fake_gateway, auth_headers, path, with_fields(path, drop, **fields), 400, expected)


@pytest.mark.parametrize("model", [42, "", {"id": "moderation-fake"}])
def test_moderation_model_when_given_must_be_a_non_empty_string(client, fake_gateway, auth_headers, model):
    assert_rejected(client, fake_gateway, auth_headers, MODERATIONS, with_fields(MODERATIONS, model=model), 400,
                    BAD_MODEL)


ROLES = "assistant, developer, function, system, tool, user"
CHAT_CASES = [
    pytest.param({"messages": None}, invalid("'messages' is a required property.", "messages",
                                             "missing_required_parameter"), id="messages-null"),
    pytest.param({"messages": "hi"}, invalid("'messages' must be a non-empty array.", "messages", "invalid_type"),
                 id="messages-string"),
    pytest.param({"messages": {"role": "user", "content": "hi"}},
                 invalid("'messages' must be a non-empty array.", "messages", "invalid_type"), id="messages-object"),
    pytest.param({"messages": []}, invalid("'messages' must be a non-empty array.", "messages", "invalid_type"),
                 id="messages-empty"),
    pytest.param({"messages": ["hi"]}, invalid("messages[0] must be an object.", "messages[0]", "invalid_type"),
                 id="message-string"),
    pytest.param({"messages": [USER_MESSAGE, None]},
                 invalid("messages[1] must be an object.", "messages[1]", "invalid_type"), id="message-null"),
    pytest.param({"messages": [USER_MESSAGE, {"role": "robot", "content": "beep"}]},
                 invalid(f"messages[1].role must be one of {ROLES}; got 'robot'.", "messages[1].role",
                         "invalid_value"), id="role-unknown"),
    pytest.param({"messages": [{"content": "hi"}]},
                 invalid(f"messages[0].role must be one of {ROLES}; got None.", "messages[0].role", "invalid_value"),
                 id="role-missing"),
    pytest.param({"messages": [{"role": "USER", "content": "hi"}]},
                 invalid(f"messages[0].role must be one of {ROLES}; got 'USER'.", "messages[0].role",
                         "invalid_value"), id="role-wrong-case"),
    pytest.param({"messages": [{"role": "user", "content": 42}]},
                 invalid("messages[0].content must be a string or an array of parts.", "messages[0].content",
                         "invalid_type"), id="content-number"),
    pytest.param({"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]},
                 invalid("messages[0].content must be a string or an array of parts.", "messages[0].content",
                         "invalid_type"), id="content-object"),
    pytest.param({"messages": [{"role": "user", "content": True}]},
                 invalid("messages[0].content must be a string or an array of parts.", "messages[0].content",
                         "invalid_type"), id="content-boolean"),
    pytest.param({"tools": {"type": "function"}}, invalid("'tools' must be an array.", "tools", "invalid_type"),
                 id="tools-object"),
    pytest.param({"tools": "get_weather"}, invalid("'tools' must be an array.", "tools", "invalid_type"),
                 id="tools-string"),
    pytest.param({"response_format": "json_object"},
                 invalid("'response_format' must be an object.", "response_format", "invalid_type"),
                 id="response-format-string"),
    pytest.param({"response_format": ["json_object"]},
                 invalid("'response_format' must be an object.", "response_format", "invalid_type"),
                 id="response-format-array"),
]


@pytest.mark.parametrize(("fields", "expected"), CHAT_CASES)
def test_chat_fields_are_checked(client, fake_gateway, auth_headers, fields, expected):
    assert_rejected(client, fake_gateway, auth_headers, CHAT, with_fields(CHAT, **fields), 400, expected)


def test_chat_without_messages_is_rejected(client, fake_gateway, auth_headers):
    assert_rejected(client, fake_gateway, auth_headers, CHAT, with_fields(CHAT, ("messages",)), 400,
                    invalid("'messages' is a required property.", "messages", "missing_required_parameter"))


STREAM_NOT_BOOLEAN = invalid("'stream' must be a boolean.", "stream", "invalid_type")
STREAM_OPTIONS_NOT_OBJECT = invalid("'stream_options' must be an object.", "stream_options", "invalid_type")
STREAM_OPTIONS_WITHOUT_STREAM = invalid("'stream_options' is only allowed when 'stream' is true.", "stream_options",
                                        "invalid_value")
STREAM_CASES = [
    pytest.param({"stream": "true"}, STREAM_NOT_BOOLEAN, id="stream-string"),
    pytest.param({"stream": 1}, STREAM_NOT_BOOLEAN, id="stream-number"),
    pytest.param({"stream": {"enabled": True}}, STREAM_NOT_BOOLEAN, id="stream-object"),
    pytest.param({"stream_options": {"include_usage": True}}, STREAM_OPTIONS_WITHOUT_STREAM,
                 id="options-without-stream"),
    pytest.param({"stream": False, "stream_options": {"include_usage": True}}, STREAM_OPTIONS_WITHOUT_STREAM,
                 id="options-with-stream-false"),
    pytest.param({"stream": True, "stream_options": "include_usage"}, STREAM_OPTIONS_NOT_OBJECT,
                 id="options-string"),
    pytest.param({"stream": True, "stream_options": [{"include_usage": True}]}, STREAM_OPTIONS_NOT_OBJECT,
                 id="options-array"),
]


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize(("fields", "expected"), STREAM_CASES)
def test_stream_fields_are_checked(client, fake_gateway, auth_headers, path, fields, expected):
    assert_rejected(client, fake_gateway, auth_headers, path, with_fields(path, **fields), 400, expected)


N_OUT_OF_RANGE = invalid("'n' must be a whole number from 1 to 128.", "n", "invalid_value")
TIMEOUT_INVALID = invalid("'timeout' must be a positive number of seconds.", "timeout", "invalid_type")
RETRIES_INVALID = invalid("'num_retries' must be a whole number from 0 to 10.", "num_retries", "invalid_type")
FALLBACKS_INVALID = invalid("'fallbacks' must be a list of model names.", "fallbacks", "invalid_type")
METADATA_INVALID = invalid("'metadata' must be an object.", "metadata", "invalid_type")
ROUTING_CASES = [
    pytest.param({"n": 0}, N_OUT_OF_RANGE, id="n-zero"),
    pytest.param({"n": 129}, N_OUT_OF_RANGE, id="n-too-many"),
    pytest.param({"n": -1}, N_OUT_OF_RANGE, id="n-negative"),
    pytest.param({"n": 2.5}, N_OUT_OF_RANGE, id="n-fraction"),
    pytest.param({"n": "2"}, N_OUT_OF_RANGE, id="n-string"),
    pytest.param({"n": True}, N_OUT_OF_RANGE, id="n-boolean"),
    pytest.param({"timeout": "30"}, TIMEOUT_INVALID, id="timeout-string"),
    pytest.param({"timeout": 0}, TIMEOUT_INVALID, id="timeout-zero"),
    pytest.param({"timeout": -5}, TIMEOUT_INVALID, id="timeout-negative"),
    pytest.param({"timeout": True}, TIMEOUT_INVALID, id="timeout-boolean"),
    pytest.param({"timeout": {"seconds": 3}}, TIMEOUT_INVALID, id="timeout-object"),
    pytest.param({"num_retries": "2"}, RETRIES_INVALID, id="retries-string"),
    pytest.param({"num_retries": -1}, RETRIES_INVALID, id="retries-negative"),
    pytest.param({"num_retries": 11}, RETRIES_INVALID, id="retries-too-many"),
    pytest.param({"num_retries": 1.5}, RETRIES_INVALID, id="retries-fraction"),
    pytest.param({"num_retries": False}, RETRIES_INVALID, id="retries-boolean"),
    pytest.param({"fallbacks": "gpt-fake"}, FALLBACKS_INVALID, id="fallbacks-string"),
    pytest.param({"fallbacks": {"gpt-fake": ["embed-fake"]}}, FALLBACKS_INVALID, id="fallbacks-object"),
    pytest.param({"fallbacks": [""]}, FALLBACKS_INVALID, id="fallbacks-empty-name"),
    pytest.param({"fallbacks": ["gpt-fake", 7]}, FALLBACKS_INVALID, id="fallbacks-number"),
    pytest.param({"metadata": "team-a"}, METADATA_INVALID, id="metadata-string"),
    pytest.param({"metadata": ["team-a"]}, METADATA_INVALID, id="metadata-array"),
    pytest.param({"metadata": 1}, METADATA_INVALID, id="metadata-number"),
]


@pytest.mark.parametrize(("fields", "expected"), ROUTING_CASES)
def test_routing_fields_are_checked_on_chat(client, fake_gateway, auth_headers, fields, expected):
    assert_rejected(client, fake_gateway, auth_headers, CHAT, with_fields(CHAT, **fields), 400, expected)


@pytest.mark.parametrize("path", [COMPLETIONS, EMBEDDINGS, MODERATIONS])
@pytest.mark.parametrize(("fields", "expected"), [
    pytest.param({"timeout": "30"}, TIMEOUT_INVALID, id="timeout"),
    pytest.param({"num_retries": 11}, RETRIES_INVALID, id="retries"),
    pytest.param({"fallbacks": "gpt-fake"}, FALLBACKS_INVALID, id="fallbacks"),
    pytest.param({"metadata": "team-a"}, METADATA_INVALID, id="metadata"),
])
def test_routing_fields_are_checked_on_every_endpoint(client, fake_gateway, auth_headers, path, fields, expected):
    assert_rejected(client, fake_gateway, auth_headers, path, with_fields(path, **fields), 400, expected)


PROMPT_MISSING = invalid("'prompt' is a required property.", "prompt", "missing_required_parameter")
PROMPT_INVALID = invalid("'prompt' must be a string, an array of strings or of token arrays.", "prompt",
                         "invalid_type")


@pytest.mark.parametrize(("fields", "drop", "expected"), [
    pytest.param({}, ("prompt",), PROMPT_MISSING, id="missing"),
    pytest.param({"prompt": None}, (), PROMPT_MISSING, id="null"),
    pytest.param({"prompt": 42}, (), PROMPT_INVALID, id="number"),
    pytest.param({"prompt": {"text": "hi"}}, (), PROMPT_INVALID, id="object"),
])
def test_completions_need_a_prompt(client, fake_gateway, auth_headers, fields, drop, expected):
    assert_rejected(client, fake_gateway, auth_headers, COMPLETIONS, with_fields(COMPLETIONS, drop, **fields), 400,
                    expected)


INPUT_MISSING = invalid("'input' is a required property.", "input", "missing_required_parameter")
EMBEDDING_INPUT_INVALID = invalid("'input' must be a non-empty string, array of strings, or token arrays.", "input",
                                  "invalid_type")
ENCODING_INVALID = invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format", "invalid_value")
DIMENSIONS_INVALID = invalid("'dimensions' must be a whole number from 1 to 65536.", "dimensions", "invalid_value")
EMBEDDING_CASES = [
    pytest.param({}, ("input",), INPUT_MISSING, id="input-missing"),
    pytest.param({"input": None}, (), INPUT_MISSING, id="input-null"),
    pytest.param({"input": 42}, (), EMBEDDING_INPUT_INVALID, id="input-number"),
    pytest.param({"input": []}, (), EMBEDDING_INPUT_INVALID, id="input-empty-array"),
    pytest.param({"input": ""}, (), EMBEDDING_INPUT_INVALID, id="input-empty-string"),
    pytest.param({"input": ["hello", ""]}, (), EMBEDDING_INPUT_INVALID, id="input-empty-string-item"),
    pytest.param({"input": {"text": "hello"}}, (), EMBEDDING_INPUT_INVALID, id="input-object"),
    pytest.param({"input": ["hello", 7]}, (), EMBEDDING_INPUT_INVALID, id="input-mixed"),
    pytest.param({"input": [[]]}, (), EMBEDDING_INPUT_INVALID, id="input-empty-token-array"),
    pytest.param({"input": [[1, "2"]]}, (), EMBEDDING_INPUT_INVALID, id="input-bad-token"),
    pytest.param({"input": [True, False]}, (), EMBEDDING_INPUT_INVALID, id="input-booleans"),
    pytest.param({"encoding_format": "binary"}, (), ENCODING_INVALID, id="encoding-unknown"),
    pytest.param({"encoding_format": "FLOAT"}, (), ENCODING_INVALID, id="encoding-wrong-case"),
    pytest.param({"encoding_format": 1}, (), ENCODING_INVALID, id="encoding-number"),
    pytest.param({"dimensions": 0}, (), DIMENSIONS_INVALID, id="dimensions-zero"),
    pytest.param({"dimensions": 65537}, (), DIMENSIONS_INVALID, id="dimensions-too-many"),
    pytest.param({"dimensions": "256"}, (), DIMENSIONS_INVALID, id="dimensions-string"),
    pytest.param({"dimensions": 25.5}, (), DIMENSIONS_INVALID, id="dimensions-fraction"),
    pytest.param({"dimensions": True}, (), DIMENSIONS_INVALID, id="dimensions-boolean"),
]


@pytest.mark.parametrize(("fields", "drop", "expected"), EMBEDDING_CASES)
def test_embedding_fields_are_checked(client, fake_gateway, auth_headers, fields, drop, expected):
    assert_rejected(client, fake_gateway, auth_headers, EMBEDDINGS, with_fields(EMBEDDINGS, drop, **fields), 400,
                    expected)


@pytest.mark.parametrize("value", ["hello", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_every_documented_embedding_input_shape_is_accepted(client, fake_gateway, auth_headers, value):
    response = post_json(client, EMBEDDINGS, with_fields(EMBEDDINGS, input=value), auth_headers)
    assert response.status_code == 200
    assert [r.body["input"] for r in fake_gateway.requests] == [value]


MODERATION_INPUT_INVALID = invalid("'input' must be a string, an array of strings, or an array of content parts.",
                                   "input", "invalid_type")


@pytest.mark.parametrize(("fields", "drop", "expected"), [
    pytest.param({}, ("input",), INPUT_MISSING, id="missing"),
    pytest.param({"input": None}, (), INPUT_MISSING, id="null"),
    pytest.param({"input": 42}, (), MODERATION_INPUT_INVALID, id="number"),
    pytest.param({"input": []}, (), MODERATION_INPUT_INVALID, id="empty-array"),
    pytest.param({"input": {"type": "text", "text": "hi"}}, (), MODERATION_INPUT_INVALID, id="object"),
    pytest.param({"input": ["fine", 3]}, (), MODERATION_INPUT_INVALID, id="mixed"),
])
def test_moderation_input_is_checked(client, fake_gateway, auth_headers, fields, drop, expected):
    assert_rejected(client, fake_gateway, auth_headers, MODERATIONS, with_fields(MODERATIONS, drop, **fields), 400,
                    expected)
