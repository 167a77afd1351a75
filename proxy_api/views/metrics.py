"""`GET /metrics`: the gateway's Prometheus metrics, for the master key or a `proxy_admin` key.

`GATEWAY_METRICS_PUBLIC=1` opens it to any caller (a Prometheus without credentials on a private network).
Under gunicorn the page adds up every worker's (and the embedded batch worker's) metrics files; this worker
first counts its own requests not yet observed by its flusher, so what it just answered is on the page.
Other workers' newest requests show within one flush interval. See docs/metrics.md.
"""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation

from keys.log_buffer import metrics_observe_pending
from keys.metrics import CONTENT_TYPE, metrics_exposition
from proxy_api import openapi_models as schemas
from proxy_api.auth import authenticate, require_admin
from proxy_api.views.base import GatewayView


class AnyAccept(BaseContentNegotiation):
    """Scrapers ask for OpenMetrics or `text/plain;version=0.0.4`: the page is the text format whatever
    `Accept` says, and an error is the JSON envelope (DRF would answer 406 to a scraper's header)."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MetricsView(GatewayView):
    content_negotiation_class = AnyAccept

    @extend_schema(
        operation_id="metrics",
        tags=["Health"],
        summary="Prometheus metrics",
        description="Requests, errors, latency and time-to-first-token histograms per model group and deployment, "
                    "tokens, spend, in-flight requests, deployment cooldowns, batch lines and the request log "
                    "buffer, in Prometheus' text format (0.0.4), summed over every worker. Admin only, unless the "
                    "gateway runs with `GATEWAY_METRICS_PUBLIC=1`. The metrics are listed in docs/metrics.md.",
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The metrics page."),
                   **schemas.ERRORS_ADMIN_READ},
    )
    def get(self, request) -> HttpResponse:
        if not settings.GATEWAY_METRICS_PUBLIC:
            require_admin(authenticate(request), "GET /metrics")
        metrics_observe_pending()
        return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE)


class MetricsSlashView(MetricsView):
    """`/metrics/`, for scrape configs written with the slash: the same page, documented once (as `/metrics`)."""

    @extend_schema(exclude=True)
    def get(self, request) -> HttpResponse:
        return super().get(request)
