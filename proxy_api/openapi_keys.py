"""OpenAPI components of the key and team management API (LiteLLM's field names).

Registered into `openapi.COMPONENTS` on import (the views import this module), so `add_components`
writes them into the document with the others.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from proxy_api import openapi
from proxy_api.openapi import ref

NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_COUNT = {"type": "integer", "minimum": 0, "nullable": True}
NULLABLE_MONEY = {"type": "number", "minimum": 0, "nullable": True}
DURATION = {"type": "string", "nullable": True, "pattern": r"^\s*\d+\s*(s|m|h|d|w|mo)\s*$",
            "example": "30d", "description": "A duration: `30s`, `30m`, `24h`, `30d`, `2w` or `1mo`."}
DATE_TIME = {"type": "string", "format": "date-time", "nullable": True}
MODEL_LIST = {"type": "array", "items": {"type": "string"},
              "description": "Model groups allowed; empty = no restriction at this level. Special values: "
                             "`all-proxy-models`, and for keys `all-team-models` (the team's models)."}
LIMITS = {
    "max_budget": {**NULLABLE_MONEY, "description": "US dollars per budget period; null = no budget."},
    "budget_duration": {**DURATION, "description": "Budget period; spend resets to 0 when it ends."},
    "rpm_limit": {**NULLABLE_COUNT, "description": "Requests per minute."},
    "tpm_limit": {**NULLABLE_COUNT, "description": "Tokens per minute."},
    "max_parallel_requests": {**NULLABLE_COUNT, "description": "Requests in flight at once."},
    "metadata": {"type": "object", "additionalProperties": True,
                 "description": "Free-form; `disable_fallbacks: true` turns fallbacks off for a key."},
    "blocked": {"type": "boolean", "description": "A blocked key (or a key of a blocked team) gets 401."},
}
KEY_FIELDS = {
    "key_alias": {**NULLABLE_STRING, "description": "A unique, human-readable name."},
    "models": MODEL_LIST,
    "aliases": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Model names rewritten for this key, e.g. `{\"gpt-4\": \"my-group\"}`."},
    **LIMITS,
    "duration": {**DURATION, "description": "The key expires this long after now; null = never."},
    "expires": {**DATE_TIME, "description": "When the key expires (instead of `duration`)."},
    "team_id": {**NULLABLE_STRING, "description": "The team the key belongs to; it never exceeds the team."},
    "user_id": NULLABLE_STRING,
    "role": {"type": "string", "enum": ["internal_user", "proxy_admin"],
             "description": "`proxy_admin` keys may call the management API."},
    "log_prompts": {"type": "boolean", "description": "Write this key's prompts and answers into its request log "
                                                      "lines (default false: never logged). See docs/logging.md."},
}
KEY_REFERENCE = {"type": "string", "description": "The key's plaintext (`sk-...`) or its `token`."}
KEY_INFO = {
    "type": "object",
    "properties": {
        "token": {"type": "string", "description": "The key's stable public id (kept across regenerations)."},
        "key_name": {"type": "string", "description": "The key masked, e.g. `sk-...a1b2`."},
        "key_alias": NULLABLE_STRING,
        "team_id": NULLABLE_STRING,
        "user_id": NULLABLE_STRING,
        "role": {"type": "string", "enum": ["internal_user", "proxy_admin"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "aliases": {"type": "object", "additionalProperties": {"type": "string"}},
        "spend": {"type": "number", "description": "US dollars spent in the current budget period."},
        "max_budget": NULLABLE_MONEY,
        "budget_duration": NULLABLE_STRING,
        "budget_reset_at": DATE_TIME,
        "rpm_limit": NULLABLE_COUNT,
        "tpm_limit": NULLABLE_COUNT,
        "max_parallel_requests": NULLABLE_COUNT,
        "expires": DATE_TIME,
        "metadata": {"type": "object", "additionalProperties": True},
        "blocked": {"type": "boolean"},
        "log_prompts": {"type": "boolean", "description": "Prompts and answers are written into request log lines."},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "last_used_at": DATE_TIME,
    },
    "required": ["token", "key_name", "models", "spend", "blocked", "created_at"],
}
TEAM_FIELDS = {"team_alias": NULLABLE_STRING, "models": MODEL_LIST, **LIMITS}
TEAM = {
    "type": "object",
    "properties": {
        "team_id": {"type": "string"},
        "team_alias": NULLABLE_STRING,
        "models": {"type": "array", "items": {"type": "string"}},
        "spend": {"type": "number", "description": "US dollars spent in the current budget period."},
        "max_budget": NULLABLE_MONEY,
        "budget_duration": NULLABLE_STRING,
        "budget_reset_at": DATE_TIME,
        "rpm_limit": NULLABLE_COUNT,
        "tpm_limit": NULLABLE_COUNT,
        "max_parallel_requests": NULLABLE_COUNT,
        "metadata": {"type": "object", "additionalProperties": True},
        "blocked": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
    "required": ["team_id", "models", "spend", "blocked", "created_at"],
}
GRACE_PERIOD = {**DURATION, "description": "How long the previous secret keeps working; none by default."}

KEY_COMPONENTS: dict[str, dict] = {
    "KeyGenerateRequest": {
        "type": "object",
        "description": "Every field is optional. Unknown fields are ignored.",
        "properties": {**KEY_FIELDS, "key": {"type": "string", "minLength": 20,
                                             "description": "Your own key value (`sk-...`); random if absent."}},
        "additionalProperties": True,
    },
    "KeyUpdateRequest": {
        "type": "object",
        "description": "Only the fields given change; `null` clears a nullable field.",
        "properties": {"key": KEY_REFERENCE, **KEY_FIELDS,
                       "spend": {"type": "number", "minimum": 0,
                                 "description": "Set the current period's spend (e.g. 0 to reset it)."}},
        "required": ["key"],
        "additionalProperties": True,
    },
    "KeyReference": {"type": "object", "properties": {"key": KEY_REFERENCE}, "required": ["key"]},
    "KeyRegenerateRequest": {
        "type": "object",
        "properties": {"key": KEY_REFERENCE, "new_key": {"type": "string", "minLength": 20},
                       "grace_period": GRACE_PERIOD, **KEY_FIELDS},
        "required": ["key"],
        "additionalProperties": True,
    },
    "KeyRegenerateByPathRequest": {
        "type": "object",
        "properties": {"new_key": {"type": "string", "minLength": 20}, "grace_period": GRACE_PERIOD, **KEY_FIELDS},
        "additionalProperties": True,
    },
    "KeyDeleteRequest": {
        "type": "object",
        "description": "Exactly one of `keys` (plaintexts or tokens) and `key_aliases`.",
        "properties": {"keys": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                       "key_aliases": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    },
    "KeyInfo": KEY_INFO,
    "KeyGenerateResponse": {
        "allOf": [ref("KeyInfo"), {
            "type": "object",
            "properties": {"key": {"type": "string", "description": "The plaintext key: shown this once only."},
                           "token_id": {"type": "string"}},
            "required": ["key", "token_id"],
        }],
    },
    "KeyUpdateResponse": {
        "allOf": [ref("KeyInfo"), {"type": "object", "properties": {"key": {"type": "string"}}}],
    },
    "KeyInfoResponse": {
        "type": "object",
        "properties": {"key": {"type": "string", "description": "The key's token."}, "info": ref("KeyInfo")},
        "required": ["key", "info"],
    },
    "KeyDeleteResponse": {
        "type": "object",
        "properties": {"deleted_keys": {"type": "array", "items": {"type": "string"}}},
        "required": ["deleted_keys"],
    },
    "KeyListResponse": {
        "type": "object",
        "properties": {
            "keys": {"type": "array", "items": {"oneOf": [{"type": "string"}, ref("KeyInfo")]},
                     "description": "Tokens, or whole keys with `return_full_object=true`."},
            "total_count": {"type": "integer"},
            "current_page": {"type": "integer"},
            "total_pages": {"type": "integer"},
        },
        "required": ["keys", "total_count", "current_page", "total_pages"],
    },
    "TeamNewRequest": {
        "type": "object",
        "properties": {"team_id": {"type": "string", "description": "Chosen by the caller; a UUID if absent."},
                       **TEAM_FIELDS},
        "additionalProperties": True,
    },
    "TeamUpdateRequest": {
        "type": "object",
        "properties": {"team_id": {"type": "string"}, **TEAM_FIELDS},
        "required": ["team_id"],
        "additionalProperties": True,
    },
    "TeamDeleteRequest": {
        "type": "object",
        "properties": {"team_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["team_ids"],
    },
    "Team": TEAM,
    "TeamList": {"type": "array", "items": ref("Team")},
    "TeamInfoResponse": {
        "type": "object",
        "properties": {"team_id": {"type": "string"}, "team_info": ref("Team"),
                       "keys": {"type": "array", "items": ref("KeyInfo")}},
        "required": ["team_id", "team_info", "keys"],
    },
    "TeamUpdateResponse": {
        "type": "object",
        "properties": {"team_id": {"type": "string"}, "data": ref("Team")},
        "required": ["team_id", "data"],
    },
    "TeamDeleteResponse": {
        "type": "object",
        "properties": {"deleted_teams": {"type": "array", "items": {"type": "string"}}},
        "required": ["deleted_teams"],
    },
}

for _name, _schema in KEY_COMPONENTS.items():
    openapi.COMPONENTS.setdefault(_name, _schema)

ERRORS_MANAGEMENT = {
    400: openapi.error_response("Invalid request: a field is missing or has the wrong type (`param` names it)."),
    401: openapi.error_response("Missing or wrong API key."),
    403: openapi.error_response("The key is not the master key or a proxy_admin key, or a key would exceed "
                                "its team's models."),
}
ERRORS_MANAGEMENT_LOOKUP = {**ERRORS_MANAGEMENT, 404: openapi.error_response("No such key or team.")}


def query(name: str, type_: type, description: str, *, required: bool = False) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, required=required, description=description)
