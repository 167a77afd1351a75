"""Unauthenticated probes for load balancers and orchestrators."""
from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from proxy_api import openapi
from proxy_api.rendering import json_response
from proxy_api.views.base import GatewayView

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
