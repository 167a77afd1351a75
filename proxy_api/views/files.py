"""`/v1/files`: upload (with copies on the named model groups' deployments), list, retrieve, content, delete.

The views parse what only HTTP knows (the multipart form, query strings) and hand everything else to
`files_registry.services`. A multipart body is read by Django straight into a temporary file, behind a
handler that stops counting at the size limit; DRF's parsers are off (see `GatewayView`), so the
Django request's own `POST`/`FILES` are used.
"""
from __future__ import annotations

import orjson
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from drf_spectacular.utils import extend_schema

from files_registry.choices import FilePurpose
from files_registry.presenters import file_deleted_object, file_object
from files_registry.selectors import (
    MAX_LIST_LIMIT,
    managed_file_get_for_caller,
    managed_file_list_for_caller,
    provider_copy_list_for_file,
)
from files_registry.services import FileTooLargeError, FileUpload, managed_file_delete, managed_file_upload
from files_registry.storage import mime_type_for, stored_bytes_open
from providers.errors import InvalidRequestError
from proxy_api import openapi, openapi_files
from proxy_api.auth import authenticate
from proxy_api.relay import release_connections
from proxy_api.rendering import GatewayContentNegotiation, json_response
from proxy_api.validation import list_limit
from proxy_api.views.base import GatewayView

TAG = "Files"
# Room for the form's boundaries, headers and text fields around the file itself.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
MAX_FIELD_CHARS = 10_000


def max_file_bytes() -> int:
    return int(settings.GATEWAY_MAX_FILE_MB * 1024 * 1024)


class FileSizeLimitHandler(FileUploadHandler):
    """First in the chain: refuses a file part as soon as it passes the limit, before the rest is spooled."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            raise _too_large(self.limit)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _too_large(limit: int) -> FileTooLargeError:
    return FileTooLargeError(f"The file is larger than the {limit} bytes this gateway accepts.", param="file")


class FilesView(GatewayView):
    @extend_schema(
        operation_id="create_file", tags=[TAG], summary="Upload a file",
        description=openapi_files.CREATE_DESCRIPTION,
        request={"multipart/form-data": openapi.ref("FileUploadRequest")},
        responses={200: openapi.ref("File"), **openapi_files.UPLOAD_ERRORS},
    )
    def post(self, request) -> HttpResponse:
        caller = authenticate(request)
        form = _form(request._request)
        managed_file = managed_file_upload(
            caller=caller, upload=form["upload"], purpose=form["purpose"],
            target_model_names=form["target_model_names"], expires_after_seconds=form["expires_after_seconds"],
            max_bytes=max_file_bytes())
        return json_response(file_object(managed_file, provider_copy_list_for_file(managed_file=managed_file)))

    @extend_schema(
        operation_id="list_files", tags=[TAG], summary="List your files",
        description="The caller's files (the master key: every file), newest first unless `order=asc`.",
        parameters=openapi_files.LIST_PARAMETERS,
        responses={200: openapi.ref("FileList"), 400: openapi.error_response("A malformed query parameter."),
                   **openapi.ERRORS_AUTH_ONLY},
    )
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        query = request.GET
        purpose = _one_of(query, "purpose", [str(value) for value in FilePurpose])
        order = _one_of(query, "order", ["asc", "desc"]) or "desc"
        limit = list_limit(query.get("limit"), default=MAX_LIST_LIMIT, maximum=MAX_LIST_LIMIT)
        after = query.get("after") or None
        page = managed_file_list_for_caller(caller=caller, purpose=purpose, limit=limit, after=after, order=order)
        data = [file_object(managed_file) for managed_file in page.files]
        return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": page.has_more})


class FileDetailView(GatewayView):
    @extend_schema(
        operation_id="retrieve_file", tags=[TAG], summary="Retrieve a file",
        parameters=[openapi_files.FILE_ID_PARAMETER],
        responses={200: openapi.ref("File"), **openapi_files.FILE_ERRORS},
    )
    def get(self, request, file_id: str) -> HttpResponse:
        caller = authenticate(request)
        managed_file = managed_file_get_for_caller(caller=caller, file_id=file_id)
        return json_response(file_object(managed_file, provider_copy_list_for_file(managed_file=managed_file)))

    @extend_schema(
        operation_id="delete_file", tags=[TAG], summary="Delete a file",
        description=("Gone from the API at once; its bytes and every provider copy are deleted now, and a copy a "
                     "provider would not delete is retried in the background."),
        parameters=[openapi_files.FILE_ID_PARAMETER],
        responses={200: openapi.ref("FileDeleted"), **openapi_files.FILE_ERRORS},
    )
    def delete(self, request, file_id: str) -> HttpResponse:
        caller = authenticate(request)
        managed_file = managed_file_get_for_caller(caller=caller, file_id=file_id)
        managed_file_delete(managed_file=managed_file)
        return json_response(file_deleted_object(managed_file.id))


class AnyAcceptNegotiation(GatewayContentNegotiation):
    """The content route answers raw bytes whatever the client accepts (the OpenAI SDK asks for
    `application/binary`); its errors are still the JSON envelope."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class FileContentView(GatewayView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="retrieve_file_content", tags=[TAG], summary="Download a file's content",
        description="The bytes as uploaded, streamed from Gatehouse's own copy, with the file's content type.",
        parameters=[openapi_files.FILE_ID_PARAMETER],
        responses={(200, "application/octet-stream"): openapi_files.CONTENT_RESPONSE, **openapi_files.FILE_ERRORS},
    )
    def get(self, request, file_id: str) -> HttpResponse:
        caller = authenticate(request)
        managed_file = managed_file_get_for_caller(caller=caller, file_id=file_id)
        handle = stored_bytes_open(managed_file.stored_name)
        # The download may take minutes: no database connection may stay checked out meanwhile.
        release_connections()
        response = FileResponse(handle, content_type=managed_file.mime_type, as_attachment=True,
                                filename=managed_file.filename)
        response["Content-Length"] = str(managed_file.bytes)
        return response


def _form(request: HttpRequest) -> dict:
    """The upload form, read once: exactly one file part, and the text fields Gatehouse owns."""
    content_type = request.META.get("CONTENT_TYPE", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequestError("Upload a file as multipart/form-data (fields `file` and `purpose`).",
                                  code="invalid_content_type")
    limit = max_file_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit + MULTIPART_OVERHEAD_BYTES:
        raise _too_large(limit)
    request.upload_handlers = [FileSizeLimitHandler(request, limit), TemporaryFileUploadHandler(request)]
    try:
        fields, files = request.POST, request.FILES
    except MultiPartParserError as error:
        raise InvalidRequestError(f"The multipart body is malformed: {error}", code="invalid_multipart") from None
    uploads = files.getlist("file")
    if not uploads:
        if "file" in fields:
            raise InvalidRequestError("`file` must be a file part (with a filename), not a text field.",
                                      param="file", code="missing_file")
        raise InvalidRequestError("The form has no `file` part.", param="file", code="missing_file")
    if len(uploads) > 1:
        raise InvalidRequestError("Upload one file per request: the form has several `file` parts.",
                                  param="file", code="duplicate_file")
    uploaded = uploads[0]
    purpose = _single_field(fields, "purpose")
    if purpose is None:
        raise InvalidRequestError("The form has no `purpose` field.", param="purpose",
                                  code="missing_required_parameter")
    filename = uploaded.name or "upload"
    return {
        "upload": FileUpload(content=uploaded, size=uploaded.size, filename=filename,
                             mime_type=mime_type_for(uploaded.content_type, filename)),
        "purpose": purpose,
        "target_model_names": target_model_names_from(fields),
        "expires_after_seconds": _expires_after(fields),
    }


def _single_field(fields, name: str) -> str | None:
    values = fields.getlist(name)
    if len(values) > 1:
        raise InvalidRequestError(f"The form has several `{name}` fields.", param=name, code="duplicate_parameter")
    return values[0].strip() if values else None


def target_model_names_from(fields) -> list[str]:
    """Every form the OpenAI SDK and other clients send: `a, b`; `target_model_names[]` repeated (the SDK's
    encoding of a list in `extra_body`); the field repeated; a JSON array in a string."""
    names: list[str] = []
    for value in fields.getlist("target_model_names") + fields.getlist("target_model_names[]"):
        if len(value) > MAX_FIELD_CHARS:
            raise InvalidRequestError("`target_model_names` is too long.", param="target_model_names",
                                      code="invalid_value")
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
                raise InvalidRequestError("`target_model_names` must be model group names: a comma-separated "
                                          "string or a JSON array of strings.", param="target_model_names",
                                          code="invalid_value")
            pieces = parsed
        else:
            pieces = text.split(",")
        names.extend(piece.strip() for piece in pieces if piece.strip())
    return list(dict.fromkeys(names))


def _expires_after(fields) -> int | None:
    """OpenAI's `expires_after` ({anchor: created_at, seconds}), as bracketed form fields or a JSON string."""
    anchor, seconds = _single_field(fields, "expires_after[anchor]"), _single_field(fields, "expires_after[seconds]")
    packed = _single_field(fields, "expires_after")
    if packed is not None:
        try:
            parsed = orjson.loads(packed)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequestError("`expires_after` must be an object {anchor, seconds}.", param="expires_after",
                                      code="invalid_value")
        anchor, seconds = parsed.get("anchor"), parsed.get("seconds")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError("`expires_after[anchor]` must be 'created_at'.", param="expires_after",
                                  code="invalid_value")
    try:
        return int(seconds)
    except (TypeError, ValueError):
        raise InvalidRequestError("`expires_after[seconds]` must be a whole number of seconds.",
                                  param="expires_after", code="invalid_value") from None


def _one_of(query, name: str, allowed: list[str]) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidRequestError(f"'{name}' must be one of: {', '.join(allowed)}.", param=name, code="invalid_value")
    return value
