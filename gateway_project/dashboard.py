"""The operator dashboard's JSON endpoints, drawn by the admin's index page (`templates/admin/index.html`).

Staff only, like every admin page: anyone else is sent to the admin login. Each endpoint validates its
query string, calls one selector and returns JSON; the selectors read the daily, hourly and minute
aggregates (never the request log), the registry snapshot and the active batches, so each answer costs
a handful of indexed queries whatever the traffic. Errors are OpenAI's envelope, like the API's.

    GET /admin/dashboard/traffic.json?range=hour|day|30d[&key_id=...][&team_id=...]
    GET /admin/dashboard/deployments.json?range=hour|day|30d
    GET /admin/dashboard/cooldowns.json
    GET /admin/dashboard/batches.json
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone

from batches.dashboard import batch_list_in_progress
from keys.dashboard_selectors import RANGES, DashboardWindow, dashboard_window, deployment_health, usage_traffic
from models_registry.dashboard import deployments_cooling_down
from providers.errors import GatewayError, InvalidRequestError
from proxy_api.errors import envelope, error_response
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.admin")

DEFAULT_RANGE = "day"
# Key and team ids are at most this long (their columns): anything longer names nothing.
MAX_ID_LENGTH = 64

View = Callable[[HttpRequest], HttpResponse]


def _dashboard_json(view: View) -> View:
    """GET only; a `GatewayError` becomes its envelope and anything unexpected a logged 500 envelope, never
    Django's HTML error page (which is what the admin's URLs would otherwise get)."""

    @wraps(view)
    def endpoint(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            body = envelope(f"Method {request.method} is not allowed here; use GET.", type="invalid_request_error",
                            code="method_not_allowed")
            return json_response(body, status=405, headers={"Allow": "GET, HEAD"})
        try:
            return view(request)
        except GatewayError as error:
            return error_response(error)
        except Exception:
            logger.exception("dashboard endpoint %s failed", request.path)
            body = envelope("The dashboard hit an internal error; it has been logged.", type="api_error",
                            code="internal_error")
            return json_response(body, status=500)

    return admin.site.admin_view(endpoint)


def _window(request: HttpRequest) -> DashboardWindow:
    range_name = request.GET.get("range") or DEFAULT_RANGE
    if range_name not in RANGES:
        raise InvalidRequestError(
            f"range must be one of {', '.join(RANGES)}; got '{range_name[:40]}'.", param="range", code="invalid_value")
    return dashboard_window(range_name, now=timezone.now())


def _id_filter(request: HttpRequest, name: str) -> str | None:
    """An optional id filter: absent or blank means no filter."""
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequestError(f"{name} must be at most {MAX_ID_LENGTH} characters.", param=name,
                                  code="invalid_value")
    return value


@_dashboard_json
def traffic(request: HttpRequest) -> HttpResponse:
    """Requests, errors, spend and tokens over time per model group, totals and top keys by spend."""
    window = _window(request)
    return json_response(usage_traffic(window=window, key_id=_id_filter(request, "key_id"),
                                       team_id=_id_filter(request, "team_id")))


@_dashboard_json
def deployments(request: HttpRequest) -> HttpResponse:
    """Per deployment: requests, error rate, mean and p50/p95 latency over the range, and any cooldown now."""
    return json_response(deployment_health(window=_window(request)))


@_dashboard_json
def cooldowns(request: HttpRequest) -> HttpResponse:
    """The deployments out of rotation right now and the seconds left of their cooldown."""
    cooling = [{"deployment_id": deployment.id, "model_group": deployment.model_group,
                "provider": deployment.provider, "seconds_left": round(deployment.cooldown_seconds or 0.0, 1)}
               for deployment in deployments_cooling_down()]
    return json_response({"cooldowns": cooling})


@_dashboard_json
def batches(request: HttpRequest) -> HttpResponse:
    """The newest batches still under way, with live progress."""
    return json_response({"batches": batch_list_in_progress()})


urlpatterns = [
    path("traffic.json", traffic, name="dashboard-traffic"),
    path("deployments.json", deployments, name="dashboard-deployments"),
    path("cooldowns.json", cooldowns, name="dashboard-cooldowns"),
    path("batches.json", batches, name="dashboard-batches"),
]
