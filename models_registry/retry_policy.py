"""What the router does after a failed attempt: how many retries the failure allows, how long to wait
before trying the same deployment again, and which groups to fall back to once the group is exhausted.

Retries. A request gets `num_retries` retries (router_settings, or the request's own `num_retries`,
which wins). `router_settings.retry_policy` replaces that number per kind of failure, by LiteLLM's
class names. A 400 of any kind (the caller's request, a context too long, a content refusal) is not
retried unless the policy says so: every deployment of the model would answer it the same way.

Fallbacks. Once a group is exhausted, the kind of its last failure chooses the list: a context
window too small goes to `context_window_fallbacks`, a content-policy refusal to
`content_policy_fallbacks`, anything else another group might not suffer (outages, rate limits,
timeouts, every deployment cooling down) to the request's `fallbacks`, else the group's configured
`fallbacks`, else `default_fallbacks`. A plain 400 never falls back.
"""
from __future__ import annotations

import random

from models_registry.config import RouterSettings
from providers.errors import (
    ContentPolicyViolationError,
    ContextWindowExceededError,
    GatewayError,
    NoDeploymentAvailableError,
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0

# Most specific first: the two fallback kinds are bad requests too.
POLICY_NAMES: tuple[tuple[type[ProviderError], str], ...] = (
    (ContentPolicyViolationError, "ContentPolicyViolationErrorRetries"),
    (ContextWindowExceededError, "BadRequestErrorRetries"),
    (UpstreamBadRequestError, "BadRequestErrorRetries"),
    (UpstreamRateLimitError, "RateLimitErrorRetries"),
    (UpstreamTimeoutError, "TimeoutErrorRetries"),
    (UpstreamAuthenticationError, "AuthenticationErrorRetries"),
    (UpstreamServerError, "InternalServerErrorRetries"),
    (UpstreamConnectionError, "InternalServerErrorRetries"),
)


def policy_name(error: ProviderError) -> str | None:
    """LiteLLM's retry-policy class name for a failure, or None for kinds the policy does not name."""
    for error_class, name in POLICY_NAMES:
        if isinstance(error, error_class):
            return name
    return None


def retries_allowed(error: ProviderError, *, settings: RouterSettings, requested: int | None) -> int:
    """How many retries (in all, for this group) a request may spend after this failure."""
    name = policy_name(error)
    if isinstance(error, UpstreamBadRequestError):
        return settings.retry_policy.get(name, 0)
    if requested is not None:
        return requested
    return settings.retry_policy.get(name, settings.num_retries) if name else settings.num_retries


def falls_back(error: GatewayError) -> bool:
    """Whether a group that failed this way may hand the request to a fallback group."""
    if isinstance(error, ContextWindowExceededError | ContentPolicyViolationError | NoDeploymentAvailableError):
        return True
    return isinstance(error, ProviderError) and error.failover


def fallback_groups(error: GatewayError, *, group: str, settings: RouterSettings, requested: list[str] | None,
                    disabled: bool) -> list[str]:
    """The groups to try, in order, after `group` was exhausted by `error`."""
    if disabled or not falls_back(error):
        return []
    if isinstance(error, ContextWindowExceededError):
        chain = settings.context_window_fallbacks.get(group, [])
    elif isinstance(error, ContentPolicyViolationError):
        chain = settings.content_policy_fallbacks.get(group, [])
    elif requested is not None:
        chain = requested
    elif group in settings.fallbacks:
        chain = settings.fallbacks[group]
    else:
        chain = settings.default_fallbacks
    seen = {group}
    ordered = []
    for name in chain:
        if name not in seen:
            seen.add(name)
            ordered.append(name)
    return ordered


def pause_before_retry(error: ProviderError, retry: int, retry_after_cap: float) -> float | None:
    """How long to wait before trying the same deployment again; None when waiting is not worth it.

    The provider's `Retry-After` when it gave one (up to `router_settings.retry_after`), else a
    jittered exponential backoff: 0.05-0.1 s, then 0.1-0.2 s, ... up to 2 s.
    """
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= retry_after_cap else None
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** (retry - 1))) * random.uniform(0.5, 1.0)
