"""Choosing a deployment for a request, and retrying and falling back when it fails.

`route` runs one call: the model group's usable deployments (not cooling down, within their own
rpm/tpm/parallel limits) are read from the shared counters in one round trip; the lowest `order`
tier among them is picked from by the configured strategy (`strategies`); the chosen deployment's
slot is taken (`deployment_limits`); the call runs under the deployment's timeout inside the
request's. A failure is counted towards the deployment's cooldown (`cooldowns`), and the request
retries as `retry_policy` allows, on a deployment not yet tried first, waiting (Retry-After or a
short backoff) only when the same one must be tried again. An exhausted group hands over to the
fallback groups its last failure calls for, each with the same retry budget.

When no deployment of the group can take the request at all (every one cooling down or at its
limits), nothing is sent and the client gets 429 with `Retry-After`, unless a fallback group can
serve it.

The call's slot stays held after `route` returns: `RouteOutcome.finish` gives it back when the call
is really over (a stream's last byte), with the tokens it used.

`prefer_deployments` (a request that quotes managed files: the deployments already holding a copy of
every one) narrows the strategy's choice within the chosen `order` tier to those deployments while any
of them is usable; when none is (cooling down, at its limits, or already failed for this request),
the others of the tier are chosen as usual and receive their copy on first use. The operator's tiers
still come first: a cheaper copy never outranks a preferred tier.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from models_registry import cooldowns, deployment_limits, strategies
from models_registry.choices import RoutingStrategy
from models_registry.config import RouterSettings
from models_registry.counters import counter_get_many
from models_registry.retry_policy import fallback_groups, falls_back, pause_before_retry, retries_allowed
from models_registry.runtime import gateway_config
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.base import DeploymentTarget
from providers.errors import (
    GatewayError,
    NoDeploymentAvailableError,
    NotFoundError,
    ProviderError,
    UnsupportedOperationError,
    UpstreamTimeoutError,
)
from providers.http import Deadline

logger = logging.getLogger("gatehouse.router")

Result = TypeVar("Result")
Call = Callable[[RoutableDeployment, DeploymentTarget, Deadline, float | None], Result]


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RouteOutcome:
    """Which deployment finally answered, and what it took to get there (for headers and logs)."""

    __slots__ = ("_slot", "attempts", "deployment", "fallbacks_used", "model_group", "retries")

    def __init__(self, *, deployment: RoutableDeployment, model_group: str, attempts: int, fallbacks_used: int,
                 retries: int = 0, slot: deployment_limits.Slot | None = None) -> None:
        self.deployment = deployment
        self.model_group = model_group
        self.attempts = attempts
        self.retries = retries
        self.fallbacks_used = fallbacks_used
        self._slot = slot

    def finish(self, *, total_tokens: int = 0) -> None:
        """The call is over (the answer sent, a stream's last byte, a client gone): release its in-flight
        place and count its tokens towards the deployment's tpm and usage-based routing. Idempotent."""
        if self._slot is not None:
            self._slot.release(total_tokens=total_tokens)


def model_not_found(model: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class _Attempts:
    """What one request spent across all its groups."""

    def __init__(self) -> None:
        self.attempts = 0
        self.retries = 0


class _GroupExhaustedError(Exception):
    def __init__(self, error: GatewayError) -> None:
        super().__init__(str(error))
        self.error = error


def route(
    *,
    model_group: str,
    operation: str,
    call: Call,
    timeout: float | None = None,
    num_retries: int | None = None,
    fallbacks: list[str] | None = None,
    disable_fallbacks: bool = False,
    prefer_deployments: frozenset[str] | None = None,
) -> tuple[Result, RouteOutcome]:
    """Run `call` against deployments of `model_group` (then its fallbacks) until one succeeds.

    `num_retries` and `fallbacks` are the request's own (they replace the configured ones);
    `disable_fallbacks` (from the key's metadata) keeps the request on its own group;
    `prefer_deployments` are tried first within the chosen tier, in every group, while any is usable.
    """
    snapshot = current_snapshot()
    if not snapshot.group(model_group):
        raise model_not_found(model_group)
    settings = gateway_config().router
    deadline = Deadline.after(timeout if timeout else settings.timeout)
    spent = _Attempts()
    candidates = _supporting(snapshot.group(model_group), operation)
    if not candidates:
        raise UnsupportedOperationError(
            f"The model `{model_group}` does not support {operation}.", param="model", code="unsupported_model"
        )
    try:
        return _answered(_attempt_group(model_group, candidates, call, deadline, settings, num_retries, spent,
                                        prefer_deployments),
                         model_group, 0, spent)
    except _GroupExhaustedError as exhausted:
        error = exhausted.error
    chain = fallback_groups(error, group=model_group, settings=settings, requested=fallbacks,
                            disabled=disable_fallbacks)
    for position, group in enumerate(chain, start=1):
        candidates = _supporting(snapshot.group(group), operation)
        if not candidates:
            continue
        try:
            return _answered(_attempt_group(group, candidates, call, deadline, settings, num_retries, spent,
                                            prefer_deployments),
                             group, position, spent)
        except _GroupExhaustedError as exhausted:
            # The last upstream answer is the one to relay; "nothing was available" in a fallback group
            # would only hide it (or, when nothing answered at all, name a group the client never asked for).
            if isinstance(exhausted.error, ProviderError):
                error = exhausted.error
    raise error


def _supporting(deployments: Sequence[RoutableDeployment], operation: str) -> list[RoutableDeployment]:
    return [deployment for deployment in deployments if deployment.adapter.supports(operation)]


def _answered(found, group: str, position: int, spent: _Attempts):
    result, deployment, slot = found
    outcome = RouteOutcome(deployment=deployment, model_group=group, attempts=spent.attempts,
                           retries=spent.retries, fallbacks_used=position, slot=slot)
    return result, outcome


def _attempt_group(group: str, candidates: list[RoutableDeployment], call: Call, deadline: Deadline,
                   settings: RouterSettings, requested_retries: int | None, spent: _Attempts,
                   prefer: frozenset[str] | None = None):
    """Attempts within one group until one succeeds; returns (result, deployment, slot)."""
    strategy = settings.routing_strategy
    failed: set[str] = set()
    lost_race: set[str] = set()
    last_error: ProviderError | None = None
    retries = 0
    while True:
        if last_error is not None and deadline.remaining() <= 0:
            break  # no time left: another attempt would only fail at once and be blamed on its deployment
        view = _read_group(candidates, strategy)
        usable = [deployment for deployment in candidates
                  if deployment.id not in view.waits and deployment.id not in lost_race]
        if last_error is None:
            pool = usable
            if not pool:
                raise _GroupExhaustedError(_unavailable(group, view, len(candidates)))
        else:
            pool = [deployment for deployment in usable if deployment.id not in failed]
            if not pool:
                pool = usable if last_error.retryable else []
                if not pool:
                    break
                pause = pause_before_retry(last_error, retries + 1, settings.retry_after)
                if pause is None or pause >= deadline.remaining():
                    break
                time.sleep(pause)
        deployment = strategies.pick(pool, strategy=strategy, values=view.values, usage=view.usage,
                                     args=settings.routing_strategy_args, prefer=prefer)
        slot = deployment_limits.slot_take(deployment, strategy)
        if slot is None:
            lost_race.add(deployment.id)
            continue
        spent.attempts += 1
        if last_error is not None:
            retries += 1
            spent.retries += 1
        started = time.monotonic()
        try:
            target = deployment.target()
            attempt_deadline = deadline
            if deployment.timeout:
                attempt_deadline = Deadline(min(deadline.at, time.monotonic() + deployment.timeout))
            result = call(deployment, target, attempt_deadline, deployment.stream_timeout)
        except ProviderError as error:
            slot.release()
            _note_failure(deployment, error, len(candidates), settings, view, time.monotonic() - started)
            last_error = error
            failed.add(deployment.id)
            allowed = retries_allowed(error, settings=settings, requested=requested_retries)
            if retries >= allowed:
                if falls_back(error):
                    break
                raise
            logger.info("deployment %s failed (%s); %d of %d retries used", deployment.id, type(error).__name__,
                        retries, allowed)
            continue
        except BaseException:
            slot.release()
            raise
        if strategy == RoutingStrategy.LATENCY_BASED:
            strategies.latency_record(deployment.id, time.monotonic() - started,
                                      previous_us=view.values.get(strategies.latency_key(deployment.id)))
        return result, deployment, slot
    logger.warning("model group %s exhausted: %s", group, type(last_error).__name__)
    raise _GroupExhaustedError(last_error)


def _note_failure(deployment: RoutableDeployment, error: ProviderError, group_size: int, settings: RouterSettings,
                  view: _GroupView, elapsed: float) -> None:
    cooldowns.cooldown_after_failure(deployment.id, error, group_size=group_size,
                                     allowed_fails=settings.allowed_fails, cooldown_time=settings.cooldown_time)
    if settings.routing_strategy == RoutingStrategy.LATENCY_BASED and isinstance(error, UpstreamTimeoutError):
        # A timeout is the slowest answer of all: without this a hanging deployment would keep its good average.
        strategies.latency_record(deployment.id, elapsed,
                                  previous_us=view.values.get(strategies.latency_key(deployment.id)))


class _GroupView:
    """The shared state of one group's deployments, read in one round trip."""

    __slots__ = ("cooling", "usage", "values", "waits")

    def __init__(self, values: dict[str, int], usage: dict[str, deployment_limits.Usage],
                 waits: dict[str, float], cooling: set[str]) -> None:
        self.values = values
        self.usage = usage
        self.waits = waits  # deployment id -> seconds until it may take a call again
        self.cooling = cooling


def _read_group(candidates: list[RoutableDeployment], strategy: str) -> _GroupView:
    now = time.time()
    keys = [cooldowns.cooldown_key(deployment.id) for deployment in candidates]
    for deployment in candidates:
        keys.extend(deployment_limits.usage_keys(deployment, strategy, now))
    keys.extend(strategies.strategy_keys(candidates, strategy))
    values = counter_get_many(keys)
    waits = cooldowns.cooldowns_from(values, [deployment.id for deployment in candidates], now=now)
    cooling = set(waits)
    usage = {}
    for deployment in candidates:
        usage[deployment.id] = deployment_limits.usage_from(values, deployment, now)
        wait = deployment_limits.limit_wait(deployment, usage[deployment.id], now)
        if wait is not None:
            waits[deployment.id] = max(wait, waits.get(deployment.id, 0.0))
    return _GroupView(values, usage, waits, cooling)


def _unavailable(group: str, view: _GroupView, group_size: int) -> NoDeploymentAvailableError:
    """Nothing was sent: say why, and when the first deployment of the group comes back."""
    retry_after = min(view.waits.values()) if view.waits else deployment_limits.PARALLEL_RETRY_SECONDS
    if view.cooling and len(view.cooling) == len(view.waits) == group_size:
        why = "cooling down after failures"
    elif not view.cooling:
        why = "at their rate limits (rpm, tpm or parallel requests)"
    else:
        why = "cooling down after failures or at their rate limits"
    count = "its only deployment is" if group_size == 1 else f"all {group_size} deployments are"
    return NoDeploymentAvailableError(
        f"No deployment of `{group}` can take this request now: {count} {why}. "
        f"Try again in {max(1, int(retry_after + 0.999))} seconds.",
        retry_after=retry_after,
    )
