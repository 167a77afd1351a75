"""OpenAPI pieces of the model management API (`/model/*`, `/model_group/info`) and of `GET /health`.

Component schemas follow LiteLLM's field names. They join the shared component table when this
module is imported (the views import it, so before any schema is generated), and `add_components`
then writes them into the document like every other component.
"""
from __future__ import annotations

from proxy_api import openapi
from proxy_api.openapi import error_response, json_body, ref

__all__ = ["ERRORS_ADMIN_READ", "ERRORS_AUTH", "ERRORS_READ", "ERRORS_WRITE_EXISTING", "ERRORS_WRITE_NEW",
           "json_body", "ref"]

NULLABLE_NUMBER = {"type": "number", "nullable": True}
LITELLM_PARAMS = {
    "type": "object",
    "description": "Provider parameters as in config.yaml. `model` is `provider/model` (e.g. `azure/my-gpt`). "
                   "Secrets (`api_key`, `azure_ad_token`, `vertex_credentials`, ...) are encrypted at rest and "
                   "never returned; `os.environ/NAME` keeps a reference read at call time.",
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "api_base": {"type": "string"},
        "api_key": {"type": "string", "writeOnly": True},
        "api_version": {"type": "string"},
        "rpm": {"type": "integer", "minimum": 0},
        "tpm": {"type": "integer", "minimum": 0},
        "weight": {"type": "number", "minimum": 0},
        "order": {"type": "integer", "minimum": 0},
        "timeout": {"type": "number", "minimum": 0},
        "stream_timeout": {"type": "number", "minimum": 0},
    },
    "additionalProperties": True,
}
MODEL_INFO_IN = {
    "type": "object",
    "description": "Free-form model metadata; `id` names the deployment, `mode` says what it serves, "
                   "`base_model` picks the cost map entry, prices here override the map's.",
    "properties": {
        "id": {"type": "string", "maxLength": 64},
        "mode": {"type": "string", "enum": ["chat", "completion", "embedding", "moderation", "batch"]},
        "base_model": {"type": "string"},
        "input_cost_per_token": {"type": "number", "minimum": 0},
        "output_cost_per_token": {"type": "number", "minimum": 0},
    },
    "additionalProperties": True,
}
MODEL_INFO_OUT = {
    "type": "object",
    "description": "The cost map's entry for the model, the operator's own keys over it, then the gateway's.",
    "properties": {
        "id": {"type": "string"},
        "mode": {"type": "string"},
        "key": {"type": "string", "nullable": True, "description": "The cost map entry used, if any."},
        "db_model": {"type": "boolean", "description": "Made through the API or the admin (not config.yaml)."},
        "source": {"type": "string", "enum": ["config", "api", "admin"]},
        "enabled": {"type": "boolean"},
        "litellm_provider": {"type": "string"},
        "max_tokens": NULLABLE_NUMBER,
        "max_input_tokens": NULLABLE_NUMBER,
        "max_output_tokens": NULLABLE_NUMBER,
        "input_cost_per_token": NULLABLE_NUMBER,
        "output_cost_per_token": NULLABLE_NUMBER,
    },
    "required": ["id", "mode", "key", "db_model", "source", "enabled", "litellm_provider"],
    "additionalProperties": True,
}
CAPABILITIES = {flag: {"type": "boolean"} for flag in (
    "supports_function_calling", "supports_parallel_function_calling", "supports_tool_choice", "supports_vision",
    "supports_response_schema", "supports_system_messages", "supports_prompt_caching", "supports_reasoning",
    "supports_pdf_input", "supports_audio_input", "supports_web_search")}
ENDPOINT = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_id": {"type": "string"},
        "model": {"type": "string"},
        "api_base": {"type": "string"},
        "api_version": {"type": "string"},
        "mode": {"type": "string"},
        "latency_ms": {"type": "number", "description": "Healthy endpoints only."},
        "error": {"type": "string", "description": "Unhealthy endpoints only."},
    },
    "required": ["model_name", "model_id", "model", "mode"],
}

COMPONENTS: dict[str, dict] = {
    "ModelNewRequest": {
        "type": "object",
        "properties": {"model_name": {"type": "string", "minLength": 1, "description": "The group clients call."},
                       "litellm_params": LITELLM_PARAMS, "model_info": MODEL_INFO_IN},
        "required": ["model_name", "litellm_params"],
    },
    "ModelUpdateRequest": {
        "type": "object",
        "properties": {"model_name": {"type": "string", "minLength": 1}, "litellm_params": LITELLM_PARAMS,
                       "model_info": {**MODEL_INFO_IN, "required": ["id"]}},
        "required": ["model_info"],
    },
    "ModelPatchRequest": {
        "type": "object",
        "properties": {"model_name": {"type": "string", "minLength": 1}, "litellm_params": LITELLM_PARAMS,
                       "model_info": MODEL_INFO_IN},
    },
    "ModelDeleteRequest": {"type": "object", "properties": {"id": {"type": "string", "minLength": 1}},
                           "required": ["id"]},
    "ModelInfo": {
        "type": "object",
        "properties": {"model_name": {"type": "string"},
                       "litellm_params": {**LITELLM_PARAMS, "description": "Without any secret."},
                       "model_info": MODEL_INFO_OUT},
        "required": ["model_name", "litellm_params", "model_info"],
    },
    "ModelWriteResponse": {
        "allOf": [ref("ModelInfo"), {"type": "object", "properties": {"model_id": {"type": "string"}},
                                     "required": ["model_id"]}],
    },
    "ModelDeleteResponse": {"type": "object", "properties": {"message": {"type": "string"},
                                                             "model_id": {"type": "string"}},
                            "required": ["message", "model_id"]},
    "ModelInfoList": {"type": "object", "properties": {"data": {"type": "array", "items": ref("ModelInfo")}},
                      "required": ["data"]},
    "ModelGroupInfo": {
        "type": "object",
        "properties": {
            "model_group": {"type": "string"},
            "providers": {"type": "array", "items": {"type": "string"}},
            "mode": {"type": "string"},
            "max_input_tokens": NULLABLE_NUMBER,
            "max_output_tokens": NULLABLE_NUMBER,
            "input_cost_per_token": NULLABLE_NUMBER,
            "output_cost_per_token": NULLABLE_NUMBER,
            "rpm": {"type": "integer", "nullable": True},
            "tpm": {"type": "integer", "nullable": True},
            "deployments": {"type": "integer"},
            **CAPABILITIES,
        },
        "required": ["model_group", "providers", "mode", "max_input_tokens", "max_output_tokens",
                     "input_cost_per_token", "output_cost_per_token", "rpm", "tpm", "deployments", *CAPABILITIES],
    },
    "ModelGroupInfoList": {"type": "object",
                           "properties": {"data": {"type": "array", "items": ref("ModelGroupInfo")}},
                           "required": ["data"]},
    "HealthReport": {
        "type": "object",
        "properties": {"healthy_endpoints": {"type": "array", "items": ENDPOINT},
                       "unhealthy_endpoints": {"type": "array", "items": ENDPOINT},
                       "healthy_count": {"type": "integer"}, "unhealthy_count": {"type": "integer"}},
        "required": ["healthy_endpoints", "unhealthy_endpoints", "healthy_count", "unhealthy_count"],
    },
}

_UNAUTHENTICATED = error_response("Missing or wrong API key.")
_NOT_ADMIN = error_response("The key is not an admin's (`code: admin_only`).")
ERRORS_AUTH = {401: _UNAUTHENTICATED}
ERRORS_READ = {401: _UNAUTHENTICATED, 404: error_response("No deployment has that id.")}
ERRORS_ADMIN_READ = {401: _UNAUTHENTICATED, 403: _NOT_ADMIN}
ERRORS_WRITE_NEW = {
    400: error_response("Invalid deployment: a missing or mistyped field, a parameter the provider requires."),
    401: _UNAUTHENTICATED,
    403: _NOT_ADMIN,
    409: error_response("A deployment with that `model_info.id` already exists."),
}
ERRORS_WRITE_EXISTING = {
    400: error_response("Invalid change, or a config.yaml deployment (`code: config_deployment_read_only`)."),
    401: _UNAUTHENTICATED,
    403: _NOT_ADMIN,
    404: error_response("No deployment has that id."),
}

openapi.COMPONENTS.update(COMPONENTS)
