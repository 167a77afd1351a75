"""Health: unauthenticated probes for load balancers, and the admin's check of every deployment."""
from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from models_registry.health import health_report
from proxy_api import openapi
from proxy_api import openapi_models as schemas
from proxy_api.rendering import json_response
from proxy_api.views.base import GatewayView
from proxy_api.views.model_management import authenticate_admin

TAG = "Health"


class LivenessView(GatewayView):
    @extend_schema(operation_id="health_liveness", tags=[TAG], summary="The process is up", auth=[],
                   responses={200: openapi.ref("Liveness")})
    def get(self, request) -> HttpResponse:
        return json_response({"status": "alive"})


class ReadinessView(GatewayView):
    @extend_schema(operation_id="health_readiness", tags=[TAG], summary="Ready to serve: the database answers",
                   auth=[], responses={200: openapi.ref("Readiness"), 503: openapi.ref("Readiness")})
    def get(self, request) -> HttpResponse:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as error:
            return json_response({"status": "unhealthy", "db": f"unreachable: {type(error).__name__}",
                                  "version": settings.GATEWAY_VERSION}, status=503)
        return json_response({"status": "healthy", "db": "connected", "version": settings.GATEWAY_VERSION})


class HealthView(GatewayView):
    @extend_schema(
        operation_id="health_deployments",
        tags=[TAG],
        summary="Check every deployment with a minimal real call",
        description="Admin only. Calls every enabled deployment in parallel (chat: a one-token 'ping'; "
                    "embedding: 'ping') and lists the healthy and unhealthy ones, without secrets.",
        parameters=[OpenApiParameter("model", str, OpenApiParameter.QUERY, required=False,
                                     description="Check only the deployments of this model group.")],
        responses={200: schemas.ref("HealthReport"), **schemas.ERRORS_ADMIN_READ},
    )
    def get(self, request) -> HttpResponse:
        authenticate_admin(request)
        return json_response(health_report(model_group=request.GET.get("model") or None))
