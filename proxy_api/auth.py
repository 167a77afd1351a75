"""Who is calling: the key in `Authorization: Bearer`, `x-api-key`, `api-key` or `x-goog-api-key`.

The master key is compared in constant time; any other key is looked up by its digest in this
worker's key cache (no query in steady state). A missing key, a wrong key, and a key that is
expired, blocked or deleted all get a 401 envelope, and nothing is sent upstream.
"""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from keys.key_cache import key_lookup
from keys.maintenance import key_used
from keys.principal import MASTER, Caller, KeyView
from models_registry.runtime import gateway_config
from models_registry.secrets import SecretUnavailableError, resolve_value
from providers.errors import AuthenticationError, GatewayError, PermissionDeniedError

KEY_HEADERS = ("HTTP_X_API_KEY", "HTTP_API_KEY", "HTTP_X_GOOG_API_KEY")


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
    view = key_lookup(key)
    if view is None:
        raise AuthenticationError("Incorrect API key provided.")
    _check_usable(view)
    key_used(view.id)
    return Caller(key=view)


def _check_usable(view: KeyView) -> None:
    now = timezone.now()
    if view.valid_until is not None and view.valid_until <= now:
        # The secret replaced by a regeneration, after its grace period: as good as unknown.
        raise AuthenticationError("Incorrect API key provided.")
    if view.blocked:
        raise AuthenticationError("This API key is blocked.", code="key_blocked")
    if view.team_blocked:
        raise AuthenticationError(f"The team of this API key ('{view.team_alias or view.team_id}') is blocked.",
                                  code="team_blocked")
    if view.expires is not None and view.expires <= now:
        raise AuthenticationError(f"This API key expired at {view.expires.isoformat()}.", code="key_expired")


def require_admin(caller: Caller, route: str) -> None:
    """Management routes: the master key or a `proxy_admin` key only."""
    if not caller.is_admin:
        raise PermissionDeniedError(f"Only the master key or a proxy_admin key may call {route}.",
                                    code="admin_only")
