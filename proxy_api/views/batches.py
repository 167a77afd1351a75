"""`/v1/batches`: create, list, retrieve and cancel managed batches, with OpenAI's batch object.

The views read what only HTTP knows (the JSON body, the query string, and the JSON body the OpenAI SDK
sends with a GET when `extra_body` is used) and hand the rest to `batches.services` and
`batches.selectors`. A batch another key owns is the same 404 as an unknown one.
"""
from __future__ import annotations

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from batches import services as batch_services
from batches.presenters import batch_list_objects, batch_object
from batches.selectors import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, batch_get_for_caller, batch_list_for_caller
from providers.errors import InvalidRequestError
from proxy_api import openapi, openapi_batches
from proxy_api.auth import authenticate
from proxy_api.errors import body_too_large
from proxy_api.rendering import json_response
from proxy_api.validation import list_limit, read_json_object
from proxy_api.views.base import GatewayView

TAG = "Batches"
MAX_NAMES_CHARS = 10_000


class BatchesView(GatewayView):
    @extend_schema(
        operation_id="create_batch", tags=[TAG], summary="Create a batch",
        description=openapi_batches.CREATE_DESCRIPTION,
        request=openapi.json_body("BatchCreateRequest"),
        responses={200: openapi.ref("Batch"), **openapi_batches.CREATE_ERRORS},
    )
    def post(self, request) -> HttpResponse:
        caller = authenticate(request)
        body = read_json_object(request)
        batch = batch_services.batch_create(
            caller=caller, input_file_id=body.get("input_file_id"), endpoint=body.get("endpoint"),
            completion_window=body.get("completion_window"), metadata=body.get("metadata"))
        return json_response(batch_object(batch))

    @extend_schema(
        operation_id="list_batches", tags=[TAG], summary="List your batches",
        description="The caller's batches (the master key and admin keys: every batch), newest first.",
        parameters=openapi_batches.LIST_PARAMETERS,
        responses={200: openapi.ref("BatchList"), **openapi_batches.LIST_ERRORS},
    )
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        query = request.GET
        limit = list_limit(query.get("limit"), default=DEFAULT_LIST_LIMIT, maximum=MAX_LIST_LIMIT)
        page = batch_list_for_caller(caller=caller, limit=limit, after=query.get("after") or None,
                                     model_names=_target_model_names(query, _optional_json_body(request)))
        data = batch_list_objects(page.batches)
        return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": page.has_more})


class BatchDetailView(GatewayView):
    @extend_schema(
        operation_id="retrieve_batch", tags=[TAG], summary="Retrieve a batch",
        description="Its status, every timestamp and live request counts.",
        parameters=[openapi_batches.BATCH_ID_PARAMETER],
        responses={200: openapi.ref("Batch"), **openapi_batches.BATCH_ERRORS},
    )
    def get(self, request, batch_id: str) -> HttpResponse:
        caller = authenticate(request)
        return json_response(batch_object(batch_get_for_caller(caller=caller, batch_id=batch_id)))


class BatchCancelView(GatewayView):
    @extend_schema(
        operation_id="cancel_batch", tags=[TAG], summary="Cancel a batch",
        description=("A native part's provider batch is cancelled; gateway-executed lines not started yet never "
                     "start, lines in flight finish. The batch is `cancelling` until then, then `cancelled`, "
                     "with the lines that finished in its output and error files."),
        request=None,
        parameters=[openapi_batches.BATCH_ID_PARAMETER],
        responses={200: openapi.ref("Batch"), **openapi_batches.CANCEL_ERRORS},
    )
    def post(self, request, batch_id: str) -> HttpResponse:
        caller = authenticate(request)
        batch = batch_get_for_caller(caller=caller, batch_id=batch_id)
        return json_response(batch_object(batch_services.batch_cancel(batch=batch)))


def _optional_json_body(request) -> dict:
    """A GET's JSON body, when there is one (the OpenAI SDK sends `extra_body` there); else nothing."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large() from None
    if not raw or not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestError(f"The request body is not valid JSON: {error}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    return body


def _target_model_names(query, body: dict) -> list[str]:
    """Names from the query string (`a,b`, or the parameter repeated) and from a JSON body (a string or a list)."""
    values: list[object] = [*query.getlist("target_model_names"), *query.getlist("target_model_names[]")]
    if "target_model_names" in body:
        given = body["target_model_names"]
        values.extend(given if isinstance(given, list) else [given])
    names: list[str] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_NAMES_CHARS:
            raise InvalidRequestError("'target_model_names' must be model group names: a comma-separated string "
                                      "or a list of strings.", param="target_model_names", code="invalid_value")
        names.extend(piece.strip() for piece in value.split(",") if piece.strip())
    return list(dict.fromkeys(names))
