"""OpenAPI pieces of the Anthropic surface (`/v1/messages`): Anthropic's request, message, stream and error.

Registered into `openapi.COMPONENTS` on import (the messages views import this module), so
`add_components` publishes them with the others.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

from proxy_api import openapi

CONTENT = {
    "oneOf": [{"type": "string"},
              {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}},
                                          "required": ["type"], "additionalProperties": True}}],
    "description": "Text, or content blocks (`text`, `image`, `document`, `tool_use`, `tool_result`, ...).",
}
MESSAGE_IN = {
    "type": "object",
    "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": CONTENT},
    "required": ["role", "content"],
}
TOOL = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                   "input_schema": {"type": "object", "additionalProperties": True}},
    "required": ["name"],
    "additionalProperties": True,
}
REQUEST_PROPERTIES = {
    "model": {"type": "string", "minLength": 1, "description": "A model group configured in Gatehouse (any provider)."},
    "messages": {"type": "array", "minItems": 1, "items": MESSAGE_IN},
    "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object",
                                                                          "additionalProperties": True}}]},
    "tools": {"type": "array", "items": TOOL},
    "tool_choice": {"type": "object", "additionalProperties": True,
                    "description": "`{\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}`."},
}

COMPONENTS: dict[str, dict] = {
    "AnthropicMessagesRequest": {
        "type": "object",
        "description": "Anthropic's Messages request. Fields not listed pass through to Anthropic deployments.",
        "properties": {
            **REQUEST_PROPERTIES,
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean", "default": False},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number"},
            "top_k": {"type": "integer"},
            "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}},
                         "additionalProperties": True,
                         "description": "Recorded with the request; `user_id` is its user. Only `user_id` is "
                                        "forwarded (to Anthropic; as `user` to other providers)."},
        },
        "required": ["model", "max_tokens", "messages"],
        "additionalProperties": True,
    },
    "AnthropicCountTokensRequest": {
        "type": "object",
        "properties": REQUEST_PROPERTIES,
        "required": ["model", "messages"],
        "additionalProperties": True,
    },
    "AnthropicTokenCount": {
        "type": "object",
        "properties": {"input_tokens": {"type": "integer"}},
        "required": ["input_tokens"],
    },
    "AnthropicMessage": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "enum": ["message"]},
            "role": {"type": "string", "enum": ["assistant"]},
            "model": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object", "additionalProperties": True,
                                                   "description": "`text` or `tool_use` blocks (and, from "
                                                                  "Anthropic models, any block they return)."}},
            "stop_reason": {"type": "string", "nullable": True},
            "stop_sequence": {"type": "string", "nullable": True},
            "usage": {"type": "object", "properties": {"input_tokens": {"type": "integer"},
                                                       "output_tokens": {"type": "integer"}},
                      "additionalProperties": True},
        },
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
    },
    "AnthropicMessageStream": {
        "type": "string",
        "description": "Server-sent events, each `event: <type>` with its JSON `data:`: one `message_start`; per "
                       "content block `content_block_start`, `content_block_delta` (`text_delta` or "
                       "`input_json_delta`), `content_block_stop`; then `message_delta` (stop reason, usage) and "
                       "`message_stop`. A failure after the first event ends the stream with one `error` event.",
    },
    "AnthropicError": {
        "type": "object",
        "description": "Anthropic's error shape: every error on the Anthropic surface has it.",
        "properties": {
            "type": {"type": "string", "enum": ["error"]},
            "error": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error",
                                                        "permission_error", "not_found_error", "rate_limit_error",
                                                        "timeout_error", "api_error", "overloaded_error"]},
                    "message": {"type": "string"},
                },
                "required": ["type", "message"],
            },
            "request_id": {"type": "string"},
        },
        "required": ["type", "error"],
    },
}
openapi.COMPONENTS.update(COMPONENTS)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=openapi.ref("AnthropicError"), description=description)


ANTHROPIC_ERRORS = {
    (400, "application/json"): _error("Invalid request (`invalid_request_error`)."),
    (401, "application/json"): _error("Missing or wrong API key (`authentication_error`)."),
    (403, "application/json"): _error("The key may not use this model (`permission_error`)."),
    (404, "application/json"): _error("Unknown model (`not_found_error`)."),
    (413, "application/json"): _error("The body is larger than the gateway accepts (`invalid_request_error`)."),
    (429, "application/json"): _error("Rate limited (`rate_limit_error`); see `Retry-After`."),
    (502, "application/json"): _error("The provider failed or rejected the deployment's credentials (`api_error`)."),
    (503, "application/json"): _error("The provider is overloaded or unavailable (`overloaded_error`)."),
    (504, "application/json"): _error("The provider did not answer in time (`timeout_error`)."),
}
