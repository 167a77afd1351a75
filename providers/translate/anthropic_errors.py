"""Anthropic's error answers and `error` events as the gateway's error classes.

Retries and fallbacks read `retryable` and `failover` from these classes, so an Anthropic failure must
land in the same class as the equivalent OpenAI failure: 529 `overloaded_error` is a retryable 503, a
prompt over the context window is `context_length_exceeded`, and an auth failure never repeats the
provider's text.
"""
from __future__ import annotations

import orjson

from providers.errors import (
    ContextWindowExceededError,
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.http import error_for_status, parse_retry_after

CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "exceeds the context window",
                   "context window")


def error_for_response(status: int, payload: bytes, headers) -> ProviderError:
    """An Anthropic error answer (`{"type": "error", "error": {"type", "message"}}`) as our error class.

    Only what Anthropic says differently from OpenAI is decided here: 529 `overloaded_error` is a
    retryable 503, a prompt over the context window is `context_length_exceeded`, billing refusals
    are the operator's problem. Everything else (429 with `Retry-After`, 401/403, 404, 5xx) reads
    the same as any provider's.
    """
    kind, message = _error_fields(payload)
    retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None)
    if status == 529 or kind == "overloaded_error":
        return error_from_type("overloaded_error", message, retry_after=retry_after)
    if status == 400 and message and _is_context_error(message):
        return ContextWindowExceededError(message, code="context_length_exceeded")
    if kind == "billing_error" or status == 402:
        return error_from_type("billing_error", message)
    return error_for_status(status, payload, headers)


def error_from_type(kind: str | None, message: str | None, *, retry_after: float | None = None) -> ProviderError:
    """An error Anthropic named by its type (a mid-stream `error` event has no HTTP status)."""
    text = message or f"The upstream provider failed ({kind or 'unknown error'})."
    if kind == "overloaded_error":
        return UpstreamServerError(text, status_code=503, retry_after=retry_after)
    if kind == "rate_limit_error":
        headers = {"Retry-After": str(int(retry_after + 0.999))} if retry_after is not None else None
        return UpstreamRateLimitError(text, retry_after=retry_after, headers=headers)
    if kind in ("authentication_error", "permission_error"):
        return UpstreamAuthenticationError(
            "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.")
    if kind == "billing_error":
        return UpstreamAuthenticationError(
            "The upstream provider refused this deployment's account (billing); the gateway operator must fix it.")
    if kind == "not_found_error":
        return UpstreamNotFoundError(text)
    if kind == "invalid_request_error":
        if _is_context_error(text):
            return ContextWindowExceededError(text, code="context_length_exceeded")
        return UpstreamBadRequestError(text)
    if kind == "request_too_large":
        return UpstreamBadRequestError(text, status_code=413)
    if kind == "timeout_error":
        return UpstreamTimeoutError(text)
    return UpstreamServerError(text)


def _error_fields(payload: bytes) -> tuple[str | None, str | None]:
    try:
        parsed = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (str(kind) if kind else None), (str(message) if message else None)


def _is_context_error(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in CONTEXT_PHRASES)
