"""Every error the API returns is OpenAI's envelope: DRF's, Django's and our own.

`api_exception_handler` is DRF's EXCEPTION_HANDLER; `bad_request`, `not_found`, `server_error` are
Django's handler400/404/500, so even a request that never reaches a view (an unknown path, a body
over the size limit) gets JSON, never an HTML page.
"""
from __future__ import annotations

import logging

from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions

from providers.errors import GatewayError
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")

ADMIN_PREFIXES = ("/admin/", "/static/")


def envelope(message: str, *, type: str, code: str | None = None, param: str | None = None) -> dict:  # noqa: A002
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: GatewayError) -> HttpResponse:
    return json_response(error.envelope(), status=error.status_code, headers=error.headers or None)


def body_too_large() -> GatewayError:
    return GatewayError("The request body is larger than this gateway accepts.", status_code=413,
                        type="invalid_request_error", code="request_too_large")


def api_exception_handler(exc: Exception, context: dict) -> HttpResponse:
    """Render any exception raised inside a DRF view as the envelope with the right status."""
    if isinstance(exc, GatewayError):
        return error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return error_response(body_too_large())
    if isinstance(exc, drf_exceptions.APIException):
        return _drf_error(exc)
    if isinstance(exc, Http404):
        return json_response(envelope("Not found.", type="invalid_request_error", code="not_found"), status=404)
    if isinstance(exc, PermissionDenied):
        return json_response(envelope("Permission denied.", type="permission_denied"), status=403)
    if isinstance(exc, SuspiciousOperation | BadRequest):
        return json_response(envelope("Bad request.", type="invalid_request_error"), status=400)
    view = context.get("view")
    logger.error("unhandled error in %s", type(view).__name__ if view else "view", exc_info=exc)
    return _internal_error()


def _drf_error(exc: drf_exceptions.APIException) -> HttpResponse:
    detail = exc.detail
    if isinstance(detail, dict):
        field, messages = next(iter(detail.items()), (None, ""))
        message = f"{field}: {messages[0] if isinstance(messages, list) and messages else messages}"
        param = field
    elif isinstance(detail, list):
        message, param = (str(detail[0]) if detail else str(exc)), None
    else:
        message, param = str(detail), None
    kinds = {
        401: ("authentication_error", "invalid_api_key"),
        403: ("permission_denied", None),
        404: ("invalid_request_error", "not_found"),
        405: ("invalid_request_error", "method_not_allowed"),
        406: ("invalid_request_error", "not_acceptable"),
        415: ("invalid_request_error", "unsupported_media_type"),
        429: ("rate_limit_error", "rate_limit_exceeded"),
    }
    kind, code = kinds.get(exc.status_code, ("invalid_request_error", exc.default_code))
    response = json_response(envelope(message, type=kind, code=code, param=param), status=exc.status_code)
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    return response


def _internal_error() -> HttpResponse:
    return json_response(
        envelope("The gateway hit an internal error; it has been logged.", type="api_error", code="internal_error"),
        status=500,
    )


def _is_admin(request: HttpRequest) -> bool:
    return request.path.startswith(ADMIN_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_response(body_too_large())
    if _is_admin(request):
        return defaults.bad_request(request, exception)
    return json_response(envelope("Bad request.", type="invalid_request_error"), status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_admin(request):
        return defaults.permission_denied(request, exception)
    return json_response(envelope("Permission denied.", type="permission_denied"), status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_admin(request):
        return defaults.page_not_found(request, exception)
    message = f"Unknown route: {request.method} {request.path}"
    return json_response(envelope(message, type="invalid_request_error", code="not_found"), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_admin(request):
        return defaults.server_error(request)
    return _internal_error()
