"""Taking a failing deployment out of rotation for a while, agreed on by every worker and instance.

A cooldown is one shared counter per deployment holding the moment (epoch milliseconds) it ends,
expiring on its own shortly after; nothing needs to clear it. Failures are counted per deployment in
fixed one-minute windows: `allowed_fails` of them within a minute start a cooldown, and so does one
answer that says the deployment itself cannot serve now (429 rate limited, 401/403 bad credentials,
404 unknown model), since the next request would get the same answer.

A group with a single deployment is never cooled down by its failures: there is nowhere else to send
the traffic, and refusing every request for `cooldown_time` would turn one bad answer into many.
Health checks may still take it out explicitly (`cooldown_start`).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping

from models_registry.counters import counter_add, counter_delete, counter_get_many, counter_set, window_key
from providers.errors import (
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
)

logger = logging.getLogger("gatehouse.router")

COOLDOWN_PREFIX = "deployment:cooldown:"
FAILURES_PREFIX = "deployment:failures:"
FAILURE_WINDOW_SECONDS = 60
# A provider's `Retry-After` may lengthen a cooldown, but never beyond this.
LONGEST_PROVIDER_COOLDOWN_SECONDS = 300.0
# Answers that say this deployment, not this request, is the problem: cool down at the first one.
IMMEDIATE_COOLDOWN_ERRORS = (UpstreamRateLimitError, UpstreamAuthenticationError, UpstreamNotFoundError)


def cooldown_key(deployment_id: str) -> str:
    return f"{COOLDOWN_PREFIX}{deployment_id}"


def cooldown_start(deployment_id: str, *, seconds: float, reason: str) -> None:
    """Take `deployment_id` out of every worker's routing for `seconds` (a longer cooldown already running wins)."""
    if seconds <= 0:
        return
    key = cooldown_key(deployment_id)
    now = time.time()
    until_ms = int((now + seconds) * 1000)
    current = counter_get_many([key]).get(key, 0)
    if current >= until_ms:
        return
    counter_set(key, until_ms, ttl=math.ceil(seconds) + 1)
    logger.warning("deployment %s cooling down for %.1f s: %s", deployment_id, seconds, reason,
                   extra={"deployment_id": deployment_id, "cooldown_seconds": seconds, "reason": reason})


def cooldown_end(deployment_id: str) -> None:
    """Put a deployment back at once (a health check saw it answer again)."""
    counter_delete(cooldown_key(deployment_id))


def cooldowns_active(deployment_ids: Iterable[str]) -> dict[str, float]:
    """Seconds left of every running cooldown among `deployment_ids` (deployments not cooling are absent)."""
    ids = list(deployment_ids)
    values = counter_get_many([cooldown_key(deployment_id) for deployment_id in ids])
    return cooldowns_from(values, ids, now=time.time())


def cooldowns_from(values: Mapping[str, int], deployment_ids: Iterable[str], *, now: float) -> dict[str, float]:
    """`cooldowns_active` from counter values the caller already read (the router reads all it needs at once)."""
    remaining = {}
    for deployment_id in deployment_ids:
        until_ms = values.get(cooldown_key(deployment_id))
        if until_ms:
            left = until_ms / 1000 - now
            if left > 0:
                remaining[deployment_id] = left
    return remaining


def counts_as_failure(error: ProviderError) -> bool:
    """A failure of the deployment, as opposed to a request the caller got wrong (a 400 of any kind)."""
    return not isinstance(error, UpstreamBadRequestError)


def cooldown_after_failure(deployment_id: str, error: ProviderError, *, group_size: int, allowed_fails: int,
                           cooldown_time: float) -> float | None:
    """Count one failed call; start a cooldown when it is due. Returns the cooldown's length, or None."""
    if group_size < 2 or cooldown_time <= 0 or not counts_as_failure(error):
        return None
    if isinstance(error, IMMEDIATE_COOLDOWN_ERRORS):
        seconds = cooldown_time
        if isinstance(error, UpstreamRateLimitError) and error.retry_after:
            seconds = max(seconds, min(error.retry_after, LONGEST_PROVIDER_COOLDOWN_SECONDS))
        reason = f"upstream answered {type(error).__name__} (HTTP {error.status_code})"
    else:
        key, ttl = window_key(f"{FAILURES_PREFIX}{deployment_id}", FAILURE_WINDOW_SECONDS)
        failures = counter_add(key, 1, ttl=ttl)
        if failures < max(1, allowed_fails):
            return None
        counter_delete(key)  # a deployment back from its cooldown gets the full allowance again
        seconds = cooldown_time
        reason = f"{failures} failures within a minute, the last {type(error).__name__}"
    cooldown_start(deployment_id, seconds=seconds, reason=reason)
    return seconds
