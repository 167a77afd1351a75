"""Choosing a deployment for a request, and retrying and falling back when it fails.

First cut (the fuller router has its own issue): weighted random choice among the enabled
deployments of a group, lowest `order` tier first; retries on retryable failures, preferring a
deployment not yet tried in this request and backing off (honouring `Retry-After`) only when the
same one must be tried again; then the configured or per-request fallback groups, each with the
same retry budget. A client error (400) is never retried: no other deployment would answer it
differently.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from models_registry.runtime import gateway_config
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.base import DeploymentTarget
from providers.errors import NotFoundError, ProviderError, UnsupportedOperationError
from providers.http import Deadline

logger = logging.getLogger("gatehouse.router")

Result = TypeVar("Result")
Call = Callable[[RoutableDeployment, DeploymentTarget, Deadline, float | None], Result]

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


@dataclass(frozen=True, slots=True)
class RouteOutcome:
    """Which deployment finally answered, and what it took to get there (for headers and logs)."""

    deployment: RoutableDeployment
    model_group: str
    attempts: int
    fallbacks_used: int

    def finish(self, *, total_tokens: int = 0) -> None:
        """The call is over (a stream's last byte, or the answer): release what routing holds for it."""


def model_not_found(model: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"The model `{model}` does not exist or you do not have access to it.", param="model")


def route(
    *,
    model_group: str,
    operation: str,
    call: Call,
    timeout: float | None = None,
    num_retries: int | None = None,
    fallbacks: list[str] | None = None,
) -> tuple[Result, RouteOutcome]:
    """Run `call` against deployments of `model_group` (then its fallbacks) until one succeeds."""
    snapshot = current_snapshot()
    if not snapshot.group(model_group):
        raise model_not_found(model_group)
    router_settings = gateway_config().router
    deadline = Deadline.after(timeout if timeout else router_settings.timeout)
    retries = router_settings.num_retries if num_retries is None else num_retries
    chain = [model_group, *(fallbacks if fallbacks is not None else router_settings.fallbacks.get(model_group, []))]
    last_error: ProviderError | None = None
    attempts = 0
    for position, group in enumerate(chain):
        candidates = [d for d in snapshot.group(group) if d.adapter.supports(operation)]
        if not candidates:
            if position == 0:
                raise UnsupportedOperationError(
                    f"The model `{group}` does not support {operation}.", param="model", code="unsupported_model"
                )
            continue
        try:
            result, deployment, group_attempts = _attempt_group(candidates, call, deadline, retries,
                                                                router_settings.retry_after)
        except _GroupExhaustedError as exhausted:
            attempts += exhausted.attempts
            last_error = exhausted.error
            logger.warning("model group %s exhausted after %d attempts: %s", group, exhausted.attempts,
                           type(exhausted.error).__name__)
            continue
        attempts += group_attempts
        return result, RouteOutcome(deployment=deployment, model_group=group, attempts=attempts,
                                    fallbacks_used=position)
    assert last_error is not None
    raise last_error


class _GroupExhaustedError(Exception):
    def __init__(self, error: ProviderError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def _attempt_group(candidates: list[RoutableDeployment], call: Call, deadline: Deadline, retries: int,
                   retry_after_cap: float):
    """Up to `retries + 1` attempts within one group; returns (result, deployment, attempts made)."""
    failed: set[str] = set()
    last_error: ProviderError | None = None
    attempts = 0
    for attempt in range(retries + 1):
        untried = [d for d in candidates if d.id not in failed]
        if attempt and not untried:
            if not last_error.retryable:
                break  # a deployment-specific failure: trying the same deployment again cannot help
            pause = _pause_before_retry(last_error, attempt, retry_after_cap)
            if pause is None or pause >= deadline.remaining():
                break
            time.sleep(pause)
        deployment = choose(untried or candidates)
        attempts += 1
        try:
            target = deployment.target()
            attempt_deadline = deadline
            if deployment.timeout:
                attempt_deadline = Deadline(min(deadline.at, time.monotonic() + deployment.timeout))
            result = call(deployment, target, attempt_deadline, deployment.stream_timeout)
        except ProviderError as error:
            if not error.failover:
                raise
            failed.add(deployment.id)
            last_error = error
            logger.info("deployment %s failed (%s); %d retries left", deployment.id, type(error).__name__,
                        retries - attempt)
            continue
        return result, deployment, attempts
    raise _GroupExhaustedError(last_error, attempts)


def choose(deployments: list[RoutableDeployment]) -> RoutableDeployment:
    """Weighted random choice within the lowest `order` tier present; weight 0 takes no traffic."""
    if len(deployments) == 1:
        return deployments[0]
    tier = min(d.order for d in deployments)
    tiered = [d for d in deployments if d.order == tier]
    if len(tiered) == 1:
        return tiered[0]
    weights = [d.weight for d in tiered]
    if not any(weights):
        return random.choice(tiered)  # every deployment set to weight 0: share evenly rather than refuse
    return random.choices(tiered, weights=weights, k=1)[0]


def _pause_before_retry(error: ProviderError, attempt: int, retry_after_cap: float) -> float | None:
    """How long to wait before trying the same deployment again; None when waiting is not worth it."""
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= retry_after_cap else None
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)
