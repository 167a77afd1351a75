"""Shared pieces of the OpenAPI document: component schemas, error responses and decorators' helpers.

Schemas are written as plain OpenAPI (the wire format is OpenAI's, not a Django model's), added to
the document as components by `add_components`, and referenced from each view's `extend_schema`.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(name: str) -> dict:
    return {"application/json": ref(name)}


NULLABLE_STRING = {"type": "string", "nullable": True}
USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
    "required": ["prompt_tokens", "total_tokens"],
}
CHAT_MESSAGE_IN = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "nullable": True,
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "additionalProperties": True}}],
        },
        "name": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        "tool_call_id": {"type": "string"},
    },
    "required": ["role"],
    "additionalProperties": True,
}
ROUTING_FIELDS = {
    "metadata": {"type": "object", "additionalProperties": True,
                 "description": "Recorded with the request for logs and spend; never forwarded to the provider."},
    "timeout": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                "description": "Total seconds Gatehouse may spend on this request, retries included."},
    "num_retries": {"type": "integer", "minimum": 0, "maximum": 10},
    "fallbacks": {"type": "array", "items": {"type": "string", "minLength": 1},
                  "description": "Model groups to try, in order, when this one fails."},
    "drop_params": {"type": "boolean",
                    "description": "Drop parameters the chosen deployment's provider cannot honour instead of "
                                   "answering 400 (`code: unsupported_parameter`). Overrides the deployment's and "
                                   "the config's `drop_params`."},
}
TOOL_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["function"]},
        "function": {"type": "object", "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}},
    },
}

COMPONENTS: dict[str, dict] = {
    "ErrorEnvelope": {
        "type": "object",
        "description": "OpenAI's error envelope: every error Gatehouse returns has this shape.",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": NULLABLE_STRING,
                    "code": NULLABLE_STRING,
                },
                "required": ["message", "type", "param", "code"],
            }
        },
        "required": ["error"],
    },
    "ChatCompletionRequest": {
        "type": "object",
        "description": "OpenAI's chat completion request. Parameters not listed are passed to the provider untouched.",
        "properties": {
            "model": {"type": "string", "minLength": 1,
                      "description": "A model group configured in Gatehouse, or several separated by commas "
                                     "(`a,b`) to ask each of them (the answer is then an array)."},
            "messages": {"type": "array", "minItems": 1, "items": CHAT_MESSAGE_IN},
            "stream": {"type": "boolean", "default": False},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}},
                               "description": "Only with `stream: true`."},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "tools": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}]},
            "parallel_tool_calls": {"type": "boolean"},
            "response_format": {"type": "object", "additionalProperties": True},
            "user": {"type": "string"},
            **ROUTING_FIELDS,
        },
        "required": ["model", "messages"],
        "additionalProperties": True,
    },
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": {
                            "type": "object",
                            "properties": {
                                "role": {"type": "string"},
                                "content": NULLABLE_STRING,
                                "refusal": NULLABLE_STRING,
                                "tool_calls": {"type": "array", "items": TOOL_CALL},
                            },
                        },
                        "finish_reason": NULLABLE_STRING,
                    },
                },
            },
            "usage": USAGE,
            "system_fingerprint": NULLABLE_STRING,
        },
        "required": ["id", "object", "created", "model", "choices"],
    },
    "ChatCompletionResponse": {
        "description": "One chat completion; for a `model` naming several groups, an array of them.",
        "oneOf": [{"$ref": "#/components/schemas/ChatCompletion"},
                  {"$ref": "#/components/schemas/ChatCompletionFanout"}],
    },
    "ChatCompletionFanout": {
        "type": "array",
        "description": "One item per model named, in the same order: its chat completion, or its error envelope "
                       "when that call failed (the others are unaffected).",
        "items": {"oneOf": [{"$ref": "#/components/schemas/ChatCompletion"},
                            {"$ref": "#/components/schemas/ErrorEnvelope"}]},
    },
    "ChatCompletionChunkStream": {
        "type": "string",
        "description": (
            "Server-sent events: `data: <chat.completion.chunk JSON>` per chunk, then `data: [DONE]`. A failure "
            "after the first chunk ends the stream with one `data: {\"error\": {...}}` event."
        ),
    },
    "CompletionChunkStream": {
        "type": "string",
        "description": (
            "Server-sent events: `data: <text_completion JSON>` per chunk, then `data: [DONE]`. A failure "
            "after the first chunk ends the stream with one `data: {\"error\": {...}}` event."
        ),
    },
    "CompletionRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {}}]},
            "stream": {"type": "boolean", "default": False},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "max_tokens": {"type": "integer", "minimum": 0},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "temperature": {"type": "number"},
            "echo": {"type": "boolean"},
            **ROUTING_FIELDS,
        },
        "required": ["model", "prompt"],
        "additionalProperties": True,
    },
    "Completion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["text_completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "text": {"type": "string"},
                        "finish_reason": NULLABLE_STRING,
                    },
                },
            },
            "usage": USAGE,
        },
        "required": ["id", "object", "created", "model", "choices"],
    },
    "EmbeddingRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {}}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
            "user": {"type": "string"},
            **ROUTING_FIELDS,
        },
        "required": ["model", "input"],
        "additionalProperties": True,
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "enum": ["embedding"]},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}],
                            "description": "Floats, or base64 little-endian float32 with `encoding_format=base64`.",
                        },
                    },
                },
            },
            "usage": USAGE,
        },
        "required": ["object", "data", "model"],
    },
    "ModerationRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "minLength": 1,
                      "description": "Optional: without it, the configured moderation model group answers."},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {}}]},
            **ROUTING_FIELDS,
        },
        "required": ["input"],
        "additionalProperties": True,
    },
    "ModerationResponse": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model": {"type": "string"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "flagged": {"type": "boolean"},
                        "categories": {"type": "object", "additionalProperties": {"type": "boolean"}},
                        "category_scores": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                },
            },
        },
        "required": ["id", "model", "results"],
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
        "required": ["id", "object", "created", "owned_by"],
    },
    "ModelList": {
        "type": "object",
        "properties": {"object": {"type": "string", "enum": ["list"]},
                       "data": {"type": "array", "items": ref("Model")}},
        "required": ["object", "data"],
    },
    "Liveness": {"type": "object", "properties": {"status": {"type": "string", "enum": ["alive"]}},
                 "required": ["status"]},
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
            "db": {"type": "string"},
            "version": {"type": "string"},
        },
        "required": ["status", "db", "version"],
    },
}


def _model_from_path(name: str) -> dict:
    """An OpenAI request component for an Azure route, where the path names the model and `model` is optional."""
    schema = COMPONENTS[name]
    properties = {**schema["properties"],
                  "model": {"type": "string", "description": "Ignored: the path's `{model}` names the model group."}}
    return {**schema, "properties": properties, "required": [field for field in schema["required"] if field != "model"],
            "description": f"As `{name}`, with the model group taken from the path."}


COMPONENTS.update({
    "AzureChatCompletionRequest": _model_from_path("ChatCompletionRequest"),
    "AzureCompletionRequest": _model_from_path("CompletionRequest"),
    "AzureEmbeddingRequest": _model_from_path("EmbeddingRequest"),
})


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ref("ErrorEnvelope"), description=description)


# Errors are always JSON, even on endpoints that can also stream: keyed by (status, media type).
ERRORS_PROXY = {
    (400, "application/json"): error_response(
        "Invalid request: malformed JSON, a missing or mistyped field, an unsupported parameter."),
    (401, "application/json"): error_response("Missing or wrong API key."),
    (404, "application/json"): error_response("Unknown model (`code: model_not_found`)."),
    (413, "application/json"): error_response("The body is larger than the gateway accepts."),
    (429, "application/json"): error_response("Rate limited (by the gateway or the provider); see `Retry-After`."),
    (502, "application/json"): error_response("The provider failed or rejected the deployment's credentials."),
    (503, "application/json"): error_response("The provider or the gateway is temporarily unavailable."),
    (504, "application/json"): error_response("The provider did not answer in time."),
}
ERRORS_AUTH_ONLY = {401: error_response("Missing or wrong API key.")}


def add_components(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: register the hand-written component schemas."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
    # Hand-written request bodies are not marked required by the generator; every one of ours is.
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return result


# Routes served under a second name only for client compatibility; documented once, under the first.
ALIAS_PATHS = frozenset({"/health/liveness", "/metrics/"})


def drop_route_aliases(endpoints: list) -> list:
    """drf-spectacular preprocessing hook: document `/v1/x` and not its unprefixed twin `/x`."""
    paths = {endpoint[0] for endpoint in endpoints}
    return [endpoint for endpoint in endpoints
            if endpoint[0] not in ALIAS_PATHS and f"/v1{endpoint[0]}" not in paths]
