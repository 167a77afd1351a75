"""Checks of the request fields Gatehouse itself reads. Everything else passes through untouched:
a new provider parameter must never be rejected by the gateway."""
from __future__ import annotations

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from providers.errors import InvalidRequestError
from proxy_api.errors import body_too_large

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def read_json_object(request: HttpRequest) -> dict:
    """The body as a dict, or a precise 4xx: too large (413), empty, not JSON, not an object (400)."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large() from None
    if not raw:
        raise InvalidRequestError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestError(f"The request body is not valid JSON: {error}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError(f"The request body must be a JSON object, not {_json_type(body)}.",
                                  code="invalid_json")
    return body


def list_limit(value: str | None, *, default: int, maximum: int) -> int:
    """A list endpoint's `limit` query parameter: `default` when absent, else a whole number from 1 to
    `maximum` (a 400 naming `limit` otherwise)."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise InvalidRequestError(f"'limit' must be a whole number from 1 to {maximum}.", param="limit",
                                  code="invalid_value")
    return number


def require_model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequestError("you must provide a model parameter", param="model",
                                  code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("'model' must be a non-empty string.", param="model", code="invalid_type")
    return model.strip()


def stream_requested(body: dict) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be a boolean.", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequestError("'stream_options' must be an object.", param="stream_options",
                                      code="invalid_type")
        if not stream:
            raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.",
                                      param="stream_options", code="invalid_value")
    return stream


def routing_options(body: dict) -> dict:
    """The per-request routing knobs (`timeout`, `num_retries`, `fallbacks`), validated."""
    options: dict = {}
    timeout = body.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidRequestError("'timeout' must be a positive number of seconds.", param="timeout",
                                      code="invalid_type")
        options["timeout"] = float(timeout)
    retries = body.get("num_retries")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise InvalidRequestError("'num_retries' must be a whole number from 0 to 10.", param="num_retries",
                                      code="invalid_type")
        options["num_retries"] = retries
    fallbacks = body.get("fallbacks")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(item, str) and item for item in fallbacks):
            raise InvalidRequestError("'fallbacks' must be a list of model names.", param="fallbacks",
                                      code="invalid_type")
        options["fallbacks"] = fallbacks
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequestError("'metadata' must be an object.", param="metadata", code="invalid_type")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128):
        raise InvalidRequestError("'n' must be a whole number from 1 to 128.", param="n", code="invalid_value")
    return options


def validate_chat(body: dict) -> None:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequestError("'messages' is a required property.", param="messages",
                                  code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{index}] must be an object.", param=f"messages[{index}]",
                                      code="invalid_type")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise InvalidRequestError(
                f"messages[{index}].role must be one of {', '.join(sorted(CHAT_ROLES))}; got {role!r}.",
                param=f"messages[{index}].role", code="invalid_value",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequestError(f"messages[{index}].content must be a string or an array of parts.",
                                      param=f"messages[{index}].content", code="invalid_type")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be an array.", param="tools", code="invalid_type")
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise InvalidRequestError("'response_format' must be an object.", param="response_format", code="invalid_type")


def validate_completion(body: dict) -> None:
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequestError("'prompt' is a required property.", param="prompt", code="missing_required_parameter")
    if not isinstance(prompt, str | list):
        raise InvalidRequestError("'prompt' must be a string, an array of strings or of token arrays.",
                                  param="prompt", code="invalid_type")


def validate_embedding(body: dict) -> None:
    value = body.get("input")
    if value is None:
        raise InvalidRequestError("'input' is a required property.", param="input", code="missing_required_parameter")
    if not _is_text_or_tokens(value):
        raise InvalidRequestError("'input' must be a non-empty string, array of strings, or token arrays.",
                                  param="input", code="invalid_type")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise InvalidRequestError("'encoding_format' must be 'float' or 'base64'.", param="encoding_format",
                                  code="invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or not 1 <= dimensions <= 65536):
        raise InvalidRequestError("'dimensions' must be a whole number from 1 to 65536.", param="dimensions",
                                  code="invalid_value")


def validate_moderation(body: dict) -> None:
    value = body.get("input")
    if value is None:
        raise InvalidRequestError("'input' is a required property.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value or not all(isinstance(item, str | dict) for item in value):
        raise InvalidRequestError("'input' must be a string, an array of strings, or an array of content parts.",
                                  param="input", code="invalid_type")


def _is_text_or_tokens(value) -> bool:
    """A non-empty string, a non-empty list of non-empty strings, a token array, or a list of token arrays."""
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(item, str) for item in value):
        return all(value)
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return True
    return all(isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
               for item in value)


def _json_type(value) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null")
