"""OpenAPI pieces of `GET /spend/logs`: its query parameters and its two answer shapes.

The components join the shared ones in `proxy_api.openapi.COMPONENTS` when this module is imported
(by the spend view, hence before any schema is generated), so `add_components` registers them too.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from proxy_api import openapi

NULLABLE_NUMBER = {"type": "number", "nullable": True}
SPEND_BY_NAME = {"type": "object", "additionalProperties": {"type": "number"}}

SPEND_COMPONENTS: dict[str, dict] = {
    "SpendLog": {
        "type": "object",
        "description": "One proxied request, under LiteLLM's spend log field names plus Gatehouse's own.",
        "properties": {
            "request_id": {"type": "string", "description": "The `x-request-id` the response carried."},
            "call_type": {"type": "string", "enum": ["acompletion", "atext_completion", "aembedding", "amoderation"]},
            "api_key": {"type": "string", "description": "The key's id (empty for the master key)."},
            "key_alias": openapi.NULLABLE_STRING,
            "team_id": openapi.NULLABLE_STRING,
            "user": {"type": "string"},
            "model": {"type": "string", "description": "The provider's model name the deployment called."},
            "model_id": {"type": "string", "description": "The deployment id (`model_info.id`)."},
            "model_group": {"type": "string", "description": "The model group the client asked for."},
            "custom_llm_provider": {"type": "string"},
            "spend": {"type": "number", "description": "Cost in USD: tokens times the deployment's prices."},
            "total_tokens": {"type": "integer"},
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "startTime": {"type": "string", "format": "date-time"},
            "endTime": {"type": "string", "format": "date-time"},
            "completionStartTime": {"type": "string", "format": "date-time", "nullable": True,
                                    "description": "When the first chunk of a stream arrived."},
            "status": {"type": "string", "enum": ["success", "failure"]},
            "request_status": {"type": "string", "enum": ["ok", "error", "client_disconnected"]},
            "status_code": {"type": "integer", "description": "The HTTP status (499: the client hung up)."},
            "error_type": openapi.NULLABLE_STRING,
            "stream": {"type": "boolean"},
            "latency_ms": {"type": "number"},
            "time_to_first_token_ms": NULLABLE_NUMBER,
            "attempts": {"type": "integer"},
            "fallbacks": {"type": "integer"},
            "metadata": {"type": "object", "additionalProperties": True,
                         "description": "The request body's `metadata`."},
        },
        "required": ["request_id", "call_type", "api_key", "model_group", "spend", "total_tokens", "prompt_tokens",
                     "completion_tokens", "startTime", "endTime", "status", "status_code", "metadata"],
    },
    "SpendDay": {
        "type": "object",
        "description": "One day's spend (`summarize`): totals, and spend (USD) per model group, key id, team and user.",
        "properties": {
            "startTime": {"type": "string", "format": "date"},
            "spend": {"type": "number"},
            "requests": {"type": "integer"},
            "errors": {"type": "integer"},
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "models": SPEND_BY_NAME,
            "api_keys": SPEND_BY_NAME,
            "teams": SPEND_BY_NAME,
            "users": SPEND_BY_NAME,
        },
        "required": ["startTime", "spend", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
                     "models", "api_keys", "teams", "users"],
    },
    "SpendLogsResponse": {
        "description": "A list of spend logs, or of days when summarised.",
        "type": "array",
        "items": {"oneOf": [openapi.ref("SpendLog"), openapi.ref("SpendDay")]},
    },
}
openapi.COMPONENTS.update(SPEND_COMPONENTS)


def _query(name: str, description: str, type_: type = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, required=False, description=description)


SPEND_LOG_PARAMETERS = [
    _query("api_key", "A key, as its plaintext (`sk-...`) or its id."),
    _query("key_id", "A key's id (LiteLLM's `token`; `token` is accepted too)."),
    _query("team_id", "A team's id."),
    _query("user_id", "The `user_id` of the keys whose logs to list."),
    _query("model", "A model group."),
    _query("request_id", "One request (its `x-request-id`); never summarised."),
    _query("start_date", "First day (`YYYY-MM-DD`, UTC) or moment (ISO 8601) included."),
    _query("end_date", "Last day included (`YYYY-MM-DD`, UTC), or an ISO 8601 moment (excluded)."),
    _query("summarize", "One entry per day. Default: true when both dates are given, else false.", bool),
    _query("limit", "Logs per page (1-10000, default 1000); not for summaries.", int),
    _query("offset", "Logs to skip, for the next page.", int),
]
