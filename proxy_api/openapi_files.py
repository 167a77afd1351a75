"""OpenAPI pieces of `/v1/files`: the upload form, the file object, the list, and their errors.

The components join the shared ones in `proxy_api.openapi.COMPONENTS` when this module is imported
(by the files views, hence before any schema is generated), so `add_components` registers them too.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from files_registry.choices import UPLOADABLE_PURPOSES, FilePurpose, FileStatus, ProviderFileStatus
from proxy_api import openapi

CREATE_DESCRIPTION = (
    "Stores the file in Gatehouse and returns one file id (`file-…`) usable with every model group named in "
    "`target_model_names`: each enabled deployment of those groups gets its own copy now, in parallel (OpenAI "
    "and Azure Files API, Gemini Files API, Vertex AI through Cloud Storage, Anthropic Files API, the mock "
    "provider). The upload succeeds when at least one deployment of each named group took a copy; "
    "`provider_copies` lists each copy and the failures (the admin can retry them). A group where every copy "
    "failed fails the request with 502, and nothing is kept. Without `target_model_names` the file is only "
    "stored, and copied to a deployment the first time a request to it uses the file. Deployments whose "
    "provider has no files API get the file when a request uses it."
)

NULLABLE_INTEGER = {"type": "integer", "nullable": True}

FILE_COMPONENTS: dict[str, dict] = {
    "FileUploadRequest": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "The file (up to 512 MB by default)."},
            "purpose": {"type": "string", "enum": [str(value) for value in UPLOADABLE_PURPOSES]},
            "target_model_names": {
                "type": "string",
                "description": ("Model groups whose deployments get a copy now: `a, b` (also accepted: "
                                "`target_model_names[]` repeated, as the OpenAI SDK sends a list, or a JSON array)."),
            },
            "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
            "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
        },
        "required": ["file", "purpose"],
    },
    "ProviderCopy": {
        "type": "object",
        "description": "One deployment's copy of the file.",
        "properties": {
            "deployment_id": {"type": "string"},
            "model_group": {"type": "string"},
            "provider": {"type": "string"},
            "status": {"type": "string", "enum": [str(value) for value in ProviderFileStatus]},
            "error": openapi.NULLABLE_STRING,
        },
        "required": ["deployment_id", "model_group", "provider", "status", "error"],
    },
    "File": {
        "type": "object",
        "description": "OpenAI's file object; on upload and retrieve also `target_model_names` and `provider_copies`.",
        "properties": {
            "id": {"type": "string", "example": "file-Xq3v9c0bR2nqT1aZk4Lm8s7D"},
            "object": {"type": "string", "enum": ["file"]},
            "bytes": {"type": "integer"},
            "created_at": {"type": "integer", "description": "Unix seconds."},
            "expires_at": NULLABLE_INTEGER,
            "filename": {"type": "string", "description": "The uploader's own filename."},
            "purpose": {"type": "string", "enum": [str(value) for value in FilePurpose]},
            "status": {"type": "string", "enum": [str(value) for value in FileStatus]},
            "status_details": openapi.NULLABLE_STRING,
            "target_model_names": {"type": "array", "items": {"type": "string"}},
            "provider_copies": {"type": "array", "items": openapi.ref("ProviderCopy")},
        },
        "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "status"],
    },
    "FileList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": openapi.ref("File")},
            "first_id": openapi.NULLABLE_STRING,
            "last_id": openapi.NULLABLE_STRING,
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "first_id", "last_id", "has_more"],
    },
    "FileDeleted": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["file"]},
            "deleted": {"type": "boolean"},
        },
        "required": ["id", "object", "deleted"],
    },
}
openapi.COMPONENTS.update(FILE_COMPONENTS)

FILE_ID_PARAMETER = OpenApiParameter("file_id", str, OpenApiParameter.PATH, description="A Gatehouse file id.")
LIST_PARAMETERS = [
    OpenApiParameter("purpose", str, OpenApiParameter.QUERY, required=False, description="Only files of this purpose."),
    OpenApiParameter("limit", int, OpenApiParameter.QUERY, required=False,
                     description="Files per page (1-10000, default 10000)."),
    OpenApiParameter("after", str, OpenApiParameter.QUERY, required=False,
                     description="The last id of the previous page (its `last_id`)."),
    OpenApiParameter("order", str, OpenApiParameter.QUERY, required=False, enum=["asc", "desc"],
                     description="By creation time; default `desc`."),
]
CONTENT_RESPONSE = OpenApiResponse(response={"type": "string", "format": "binary"},
                                   description="The file's bytes, with its content type.")

UPLOAD_ERRORS = {
    400: openapi.error_response("Not multipart, no `file` part or several, an empty file, an unknown purpose, "
                                "an unknown model group in `target_model_names`."),
    401: openapi.error_response("Missing or wrong API key."),
    403: openapi.error_response("The key may not use a group named in `target_model_names`."),
    413: openapi.error_response("The file is larger than the gateway accepts (`code: file_too_large`)."),
    502: openapi.error_response("No deployment of a named group took a copy (`code: file_upload_failed`)."),
}
FILE_ERRORS = {
    401: openapi.error_response("Missing or wrong API key."),
    404: openapi.error_response("No such file for this key (`code: file_not_found`): unknown, deleted, or another "
                                "key's."),
}
