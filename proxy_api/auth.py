"""Who is calling: the key in `Authorization: Bearer`, `x-api-key` or `api-key`.

Keys are compared in constant time; a missing and a wrong key get the same 401, and nothing is
sent upstream. (Virtual keys arrive with their own issue; today the master key is the only key.)
"""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest

from keys.principal import MASTER, Caller
from models_registry.runtime import gateway_config
from models_registry.secrets import SecretUnavailableError, resolve_value
from providers.errors import AuthenticationError, GatewayError

KEY_HEADERS = ("HTTP_X_API_KEY", "HTTP_API_KEY")



def presented_key(request: HttpRequest) -> str | None:
    meta = request.META
    authorization = meta.get("HTTP_AUTHORIZATION")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for header in KEY_HEADERS:
        value = meta.get(header)
        if value:
            return value.strip()
    return None


def master_key() -> str | None:
    """`GATEWAY_MASTER_KEY`, else the config's `general_settings.master_key` (references read now)."""
    if settings.GATEWAY_MASTER_KEY:
        return settings.GATEWAY_MASTER_KEY
    configured = gateway_config().master_key
    if not configured:
        return None
    try:
        return resolve_value(configured)
    except SecretUnavailableError:
        return None


def authenticate(request: HttpRequest) -> Caller:
    key = presented_key(request)
    if not key:
        raise AuthenticationError(
            "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
        )
    expected = master_key()
    if expected is None:
        raise GatewayError("The gateway has no master key configured; set general_settings.master_key.",
                           status_code=503, type="api_error", code="gateway_not_configured")
    if hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8")):
        return MASTER
    raise AuthenticationError("Incorrect API key provided.")
