"""OpenAPI pieces of `/v1/batches`: the create request, OpenAI's batch object, the list, and their errors.

The components join the shared ones in `proxy_api.openapi.COMPONENTS` when this module is imported
(by the batches views, hence before any schema is generated), so `add_components` registers them too.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from batches.choices import BatchStatus
from batches.selectors import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from files_registry.batch_input import BATCH_ENDPOINTS
from proxy_api import openapi

CREATE_DESCRIPTION = (
    "Creates a batch from a file uploaded with `purpose=batch` (and `target_model_names` naming the model "
    "group its lines call). The batch starts as `validating`; a batch worker then checks every line, picks "
    "the group's deployments and runs the lines either on a provider's own batch API (OpenAI, Azure) or "
    "through Gatehouse's router (any other deployment, or `model_info.batch_engine: gateway`). Results land "
    "in `output_file_id` and `error_file_id`, managed files read with `GET /v1/files/{id}/content`. "
    "`completion_window` accepts any duration from `1m` to `7d`; lines not finished by then end as "
    "`batch_expired` errors. A key over its budget cannot create a batch."
)

TIMESTAMP = {"type": "integer", "nullable": True, "description": "Unix seconds, or null until it happens."}
COUNT = {"type": "integer", "minimum": 0}
METADATA = {
    "type": "object", "nullable": True, "maxProperties": 16,
    "additionalProperties": {"type": "string", "maxLength": 512},
    "description": "Up to 16 string pairs (keys up to 64 characters, values up to 512).",
}

BATCH_COMPONENTS: dict[str, dict] = {
    "BatchCreateRequest": {
        "type": "object",
        "properties": {
            "input_file_id": {"type": "string", "description": "A Gatehouse file id (`file-…`) of purpose `batch`."},
            "endpoint": {"type": "string", "enum": list(BATCH_ENDPOINTS)},
            "completion_window": {"type": "string", "example": "24h",
                                  "description": "How long the batch may run: `24h` (OpenAI's only value), or any "
                                                 "duration from `1m` to `7d` such as `30m` or `2d`."},
            "metadata": METADATA,
        },
        "required": ["input_file_id", "endpoint", "completion_window"],
        "additionalProperties": True,
    },
    "BatchError": {
        "type": "object",
        "properties": {
            "code": openapi.NULLABLE_STRING,
            "message": openapi.NULLABLE_STRING,
            "param": openapi.NULLABLE_STRING,
            "line": {"type": "integer", "nullable": True, "description": "The 1-based line of the input file."},
        },
        "required": ["code", "message", "param", "line"],
    },
    "Batch": {
        "type": "object",
        "description": "OpenAI's batch object.",
        "properties": {
            "id": {"type": "string", "example": "batch_Xq3v9c0bR2nqT1aZk4Lm8s7D"},
            "object": {"type": "string", "enum": ["batch"]},
            "endpoint": {"type": "string"},
            "model": {**openapi.NULLABLE_STRING, "description": "The model the lines name; null until validated."},
            "errors": {
                "type": "object", "nullable": True,
                "description": "Why the batch failed (each invalid line with its number), else null.",
                "properties": {"object": {"type": "string", "enum": ["list"]},
                               "data": {"type": "array", "items": openapi.ref("BatchError")}},
                "required": ["object", "data"],
            },
            "input_file_id": {"type": "string"},
            "completion_window": {"type": "string"},
            "status": {"type": "string", "enum": [str(value) for value in BatchStatus]},
            "output_file_id": openapi.NULLABLE_STRING,
            "error_file_id": openapi.NULLABLE_STRING,
            "created_at": {"type": "integer", "description": "Unix seconds."},
            "in_progress_at": TIMESTAMP,
            "expires_at": {"type": "integer", "description": "Unix seconds: the end of the completion window."},
            "finalizing_at": TIMESTAMP,
            "completed_at": TIMESTAMP,
            "failed_at": TIMESTAMP,
            "expired_at": TIMESTAMP,
            "cancelling_at": TIMESTAMP,
            "cancelled_at": TIMESTAMP,
            "request_counts": {
                "type": "object",
                "description": "Live: lines recorded so far, plus what running provider batches report.",
                "properties": {"total": COUNT, "completed": COUNT, "failed": COUNT},
                "required": ["total", "completed", "failed"],
            },
            "metadata": METADATA,
            "usage": {
                "type": "object",
                "properties": {
                    "input_tokens": COUNT,
                    "input_tokens_details": {"type": "object", "properties": {"cached_tokens": COUNT},
                                             "required": ["cached_tokens"]},
                    "output_tokens": COUNT,
                    "output_tokens_details": {"type": "object", "properties": {"reasoning_tokens": COUNT},
                                              "required": ["reasoning_tokens"]},
                    "total_tokens": COUNT,
                },
                "required": ["input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details",
                             "total_tokens"],
            },
        },
        "required": ["id", "object", "endpoint", "input_file_id", "completion_window", "status", "created_at",
                     "expires_at", "request_counts"],
    },
    "BatchList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": openapi.ref("Batch")},
            "first_id": openapi.NULLABLE_STRING,
            "last_id": openapi.NULLABLE_STRING,
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "first_id", "last_id", "has_more"],
    },
}
openapi.COMPONENTS.update(BATCH_COMPONENTS)

BATCH_ID_PARAMETER = OpenApiParameter("batch_id", str, OpenApiParameter.PATH, description="A Gatehouse batch id.")
LIST_PARAMETERS = [
    OpenApiParameter("limit", int, OpenApiParameter.QUERY, required=False,
                     description=f"Batches per page (1-{MAX_LIST_LIMIT}, default {DEFAULT_LIST_LIMIT})."),
    OpenApiParameter("after", str, OpenApiParameter.QUERY, required=False,
                     description="The last id of the previous page (its `last_id`)."),
    OpenApiParameter("target_model_names", str, OpenApiParameter.QUERY, required=False,
                     description="Only batches on these model groups (comma-separated; a key's aliases count). "
                                 "Also read from a JSON body, where the OpenAI SDK puts `extra_body`."),
]

CREATE_ERRORS = {
    400: openapi.error_response("A bad endpoint, completion window or metadata; an input file that is not of "
                                "purpose `batch`; a key over its budget (`code: budget_exceeded`)."),
    401: openapi.error_response("Missing or wrong API key."),
    404: openapi.error_response("No such input file for this key (`code: file_not_found`)."),
}
LIST_ERRORS = {
    400: openapi.error_response("A malformed `limit`, an `after` that is not one of your batches, a malformed "
                                "`target_model_names`."),
    401: openapi.error_response("Missing or wrong API key."),
}
BATCH_ERRORS = {
    401: openapi.error_response("Missing or wrong API key."),
    404: openapi.error_response("No such batch for this key (`code: batch_not_found`): unknown, or another key's."),
}
CANCEL_ERRORS = {
    400: openapi.error_response("The batch is already over and cannot be cancelled."),
    **BATCH_ERRORS,
}
