"""`GET /models` and `GET /models/{id}`: the model groups a caller can use (a virtual key sees only the
groups its models and its team's allow)."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from keys.access import allowed_groups
from models_registry.catalog import model_group_get, model_group_list
from proxy_api import openapi
from proxy_api.auth import authenticate
from proxy_api.rendering import json_response
from proxy_api.views.base import GatewayView

TAG = "Models"


class ModelsView(GatewayView):
    @extend_schema(operation_id="list_models", tags=[TAG], summary="List model groups",
                   responses={200: openapi.ref("ModelList"), **openapi.ERRORS_AUTH_ONLY})
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        return json_response({"object": "list", "data": model_group_list(allowed_groups=allowed_groups(caller))})


class ModelDetailView(GatewayView):
    @extend_schema(
        operation_id="retrieve_model",
        tags=[TAG],
        summary="Retrieve a model group",
        parameters=[OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="A model group name.")],
        responses={200: openapi.ref("Model"), 404: openapi.error_response("Unknown model."),
                   **openapi.ERRORS_AUTH_ONLY},
    )
    def get(self, request, model_id: str) -> HttpResponse:
        caller = authenticate(request)
        return json_response(model_group_get(model_id, allowed_groups=allowed_groups(caller)))
