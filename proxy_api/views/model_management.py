"""LiteLLM's model management API: add, change, remove and describe deployments while serving.

Writes need an admin caller (the master key, or a key with the `proxy_admin` role); reads need any
valid key and show only the groups that key may use. Every write goes through the registry's
services, which bump the registry version, so the change serves on every worker within a second.
Secrets are accepted but never returned.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from keys.access import allowed_groups
from keys.principal import Caller
from models_registry.catalog import deployment_info, deployment_info_list, model_group_info_list
from models_registry.choices import DeploymentSource
from models_registry.services import deployment_create, deployment_delete, deployment_patch
from providers.errors import InvalidRequestError, PermissionDeniedError
from proxy_api import openapi_models as schemas
from proxy_api.auth import authenticate
from proxy_api.rendering import json_response
from proxy_api.validation import read_json_object
from proxy_api.views.base import GatewayView

TAG = "Model management"


def authenticate_admin(request: HttpRequest) -> Caller:
    """The caller, who must be an admin: 401 without a valid key, 403 for a key that is not an admin's."""
    caller = authenticate(request)
    if not caller.is_admin:
        raise PermissionDeniedError("Only an admin key (the master key or a proxy_admin key) may do this.",
                                    code="admin_only")
    return caller


def _created(row) -> dict:
    return {"model_id": row.id, **deployment_info(row)}


class ModelNewView(GatewayView):
    @extend_schema(operation_id="model_new", tags=[TAG], summary="Add a deployment",
                   description="LiteLLM's `/model/new`. The deployment serves on every worker within a second. "
                               "`model_info.id` is kept when given, else a UUID is assigned.",
                   request=schemas.json_body("ModelNewRequest"),
                   responses={200: schemas.ref("ModelWriteResponse"), **schemas.ERRORS_WRITE_NEW})
    def post(self, request) -> HttpResponse:
        authenticate_admin(request)
        body = read_json_object(request)
        row = deployment_create(model_name=body.get("model_name"), litellm_params=body.get("litellm_params"),
                                model_info=body.get("model_info"), source=DeploymentSource.API)
        return json_response(_created(row))


class ModelUpdateView(GatewayView):
    @extend_schema(operation_id="model_update", tags=[TAG], summary="Change a deployment (merge by model_info.id)",
                   description="LiteLLM's `/model/update`: the keys sent replace the stored ones, `null` leaves a "
                               "key as it is, an empty string clears a secret. Config-sourced deployments are "
                               "read-only (400).",
                   request=schemas.json_body("ModelUpdateRequest"),
                   responses={200: schemas.ref("ModelWriteResponse"), **schemas.ERRORS_WRITE_EXISTING})
    def post(self, request) -> HttpResponse:
        authenticate_admin(request)
        body = read_json_object(request)
        model_info = body.get("model_info")
        deployment_id = model_info.get("id") if isinstance(model_info, dict) else None
        if not isinstance(deployment_id, str) or not deployment_id:
            raise InvalidRequestError("Send the deployment to change as model_info.id.", param="model_info.id",
                                      code="missing_required_parameter")
        return json_response(_created(deployment_patch(deployment_id=deployment_id, changes=body)))


class ModelPatchView(GatewayView):
    @extend_schema(operation_id="model_patch", tags=[TAG], summary="Change some fields of a deployment",
                   description="LiteLLM's `PATCH /model/{model_id}/update`: a partial update merged like "
                               "`/model/update`.",
                   parameters=[OpenApiParameter("model_id", str, OpenApiParameter.PATH,
                                                description="The deployment's id (model_info.id).")],
                   request=schemas.json_body("ModelPatchRequest"),
                   responses={200: schemas.ref("ModelWriteResponse"), **schemas.ERRORS_WRITE_EXISTING})
    def patch(self, request, model_id: str) -> HttpResponse:
        authenticate_admin(request)
        body = read_json_object(request)
        return json_response(_created(deployment_patch(deployment_id=model_id, changes=body)))


class ModelDeleteView(GatewayView):
    @extend_schema(operation_id="model_delete", tags=[TAG], summary="Remove a deployment",
                   request=schemas.json_body("ModelDeleteRequest"),
                   responses={200: schemas.ref("ModelDeleteResponse"), **schemas.ERRORS_WRITE_EXISTING})
    def post(self, request) -> HttpResponse:
        authenticate_admin(request)
        body = read_json_object(request)
        deployment_id = body.get("id")
        if not isinstance(deployment_id, str) or not deployment_id:
            raise InvalidRequestError("Send the deployment to remove as 'id'.", param="id",
                                      code="missing_required_parameter")
        deployment_delete(deployment_id=deployment_id)
        return json_response({"message": f"Model: {deployment_id} deleted successfully", "model_id": deployment_id})


class ModelInfoView(GatewayView):
    @extend_schema(operation_id="model_info", tags=[TAG], summary="Describe deployments",
                   description="Every deployment with its model info (the cost map's entry under the operator's "
                               "own keys); secrets are never included.",
                   parameters=[OpenApiParameter("litellm_model_id", str, OpenApiParameter.QUERY, required=False,
                                                description="Only this deployment (404 when unknown).")],
                   responses={200: schemas.ref("ModelInfoList"), **schemas.ERRORS_READ})
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        deployment_id = request.GET.get("litellm_model_id") or None
        data = deployment_info_list(allowed_groups=allowed_groups(caller), deployment_id=deployment_id)
        return json_response({"data": data})


class ModelGroupInfoView(GatewayView):
    @extend_schema(operation_id="model_group_info", tags=[TAG], summary="Describe model groups",
                   description="Per serving group: providers, mode, token limits, prices, rpm/tpm and capabilities.",
                   parameters=[OpenApiParameter("model_group", str, OpenApiParameter.QUERY, required=False,
                                                description="Only this group (an empty list when unknown).")],
                   responses={200: schemas.ref("ModelGroupInfoList"), **schemas.ERRORS_AUTH})
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        model_group = request.GET.get("model_group") or None
        data = model_group_info_list(allowed_groups=allowed_groups(caller), model_group=model_group)
        return json_response({"data": data})
