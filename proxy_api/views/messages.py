"""Anthropic's `POST /v1/messages` and `POST /v1/messages/count_tokens`, for every model group.

Clients written for Anthropic (its SDKs, Claude Code) point `base_url` at Gatehouse and keep working:
the key is read from `x-api-key` (or `Authorization: Bearer`), the body is Anthropic's, the answer and
every error are in Anthropic's shape. How each provider is reached is `proxy_api/messages_relay.py`'s.
Only the fields Gatehouse reads are checked here; the rest pass through.
"""
from __future__ import annotations

import orjson
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from providers.errors import InvalidRequestError
from proxy_api import openapi
from proxy_api.auth import authenticate
from proxy_api.messages_relay import (
    MessagesRequest,
    anthropic_error,
    respond_count_tokens,
    respond_messages,
    respond_messages_streaming,
)
from proxy_api.openapi_messages import ANTHROPIC_ERRORS
from proxy_api.validation import read_json_object, require_model, routing_options
from proxy_api.views.base import StreamingGatewayView

TAG = "Anthropic"
ROLES = ("user", "assistant")
# Headers of an Anthropic client that an Anthropic deployment should see too.
CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")


def validate_messages_request(body: dict, *, needs_max_tokens: bool = True) -> None:
    """The fields Gatehouse reads or translates, checked with Anthropic's rules."""
    max_tokens = body.get("max_tokens")
    if needs_max_tokens and max_tokens is None:
        raise InvalidRequestError("max_tokens: Field required", param="max_tokens", code="missing_required_parameter")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequestError("max_tokens: must be a whole number of at least 1.", param="max_tokens",
                                  code="invalid_value")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequestError("messages: Field required", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages: must be a non-empty array.", param="messages", code="invalid_type")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where}: must be an object.", param=where, code="invalid_type")
        if message.get("role") not in ROLES:
            raise InvalidRequestError(f"{where}.role: must be 'user' or 'assistant'; got {message.get('role')!r}.",
                                      param=f"{where}.role", code="invalid_value")
        _check_content(message.get("content"), f"{where}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _check_content(system, "system")
    _check_optional(body, "tools", list, "an array")
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequestError(f"tools[{index}]: must be an object with a 'name'.", param=f"tools[{index}]",
                                      code="invalid_value")
    _check_optional(body, "tool_choice", dict, "an object")
    _check_optional(body, "stream", bool, "a boolean")
    _check_optional(body, "metadata", dict, "an object")
    _check_optional(body, "stop_sequences", list, "an array")


def _check_content(content, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(block, dict) and isinstance(block.get("type"), str)
                                                for block in content):
        raise InvalidRequestError(f"{where}: must be a string or an array of content blocks with a 'type'.",
                                  param=where, code="invalid_type")


def _check_optional(body: dict, name: str, kind: type, described: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequestError(f"{name}: must be {described}.", param=name, code="invalid_type")


class AnthropicSurfaceView(StreamingGatewayView):
    """Errors on this surface are Anthropic's: `{"type": "error", "error": {"type", "message"}}`, same status."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        try:
            message = orjson.loads(response.content)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = "The request failed."
        response.content = orjson.dumps(anthropic_error(message, response.status_code, exc, self.call.request_id))
        return response

    def read_request(self, request, *, needs_max_tokens: bool) -> tuple:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = read_json_object(request)
        call.model = model = require_model(body)
        validate_messages_request(body, needs_max_tokens=needs_max_tokens)
        headers = {name: request.headers[name] for name in CLIENT_HEADERS if request.headers.get(name)}
        return caller, MessagesRequest(body, model, headers), routing_options(body)


class MessagesView(AnthropicSurfaceView):
    operation = "messages"

    @extend_schema(
        operation_id="create_message",
        tags=[TAG],
        summary="Create a message (Anthropic Messages API)",
        description="Anthropic's Messages API for any model group. Anthropic deployments receive the request as "
                    "it is; others get it translated to chat completions, and the answer is translated back. "
                    "With `stream: true` the answer is Anthropic's event stream (`message_start`, content "
                    "blocks, `message_delta`, `message_stop`). The key may be sent as `x-api-key`.",
        request=openapi.json_body("AnthropicMessagesRequest"),
        responses={
            (200, "application/json"): openapi.ref("AnthropicMessage"),
            (200, "text/event-stream"): openapi.ref("AnthropicMessageStream"),
            **ANTHROPIC_ERRORS,
        },
    )
    def post(self, request) -> HttpResponse:
        caller, messages_request, options = self.read_request(request, needs_max_tokens=True)
        if messages_request.body.get("stream") is True:
            return respond_messages_streaming(caller=caller, request=messages_request, options=options,
                                              call=self.call)
        return respond_messages(caller=caller, request=messages_request, options=options, call=self.call)


class MessagesCountTokensView(AnthropicSurfaceView):
    operation = "count_tokens"

    @extend_schema(
        operation_id="count_message_tokens",
        tags=[TAG],
        summary="Count a message's input tokens (Anthropic Messages API)",
        description="Anthropic deployments count exactly. For other models the count is an estimate: a token per "
                    "four characters of text (system prompt, messages, tool calls and results, tool definitions "
                    "as JSON), 1,600 tokens per image or base64 document, and 3 tokens per message.",
        request=openapi.json_body("AnthropicCountTokensRequest"),
        responses={(200, "application/json"): openapi.ref("AnthropicTokenCount"), **ANTHROPIC_ERRORS},
    )
    def post(self, request) -> HttpResponse:
        caller, messages_request, options = self.read_request(request, needs_max_tokens=False)
        return respond_count_tokens(caller=caller, request=messages_request, options=options, call=self.call)
