"""Planning a batch: which deployments of its group run which lines, and with which engine.

A plan is a list of contiguous line ranges in input order that together cover every line exactly
once, each on one deployment (never a range of 0 lines). Three cases:

- the group's operator asked for sharding (`model_info.batch_sharding: true` on any deployment): the
  lines are split evenly across every deployment of the group, each with its own engine;
- otherwise one deployment is picked, so that successive batches on a group spread across it. With
  the default `simple-shuffle` strategy the pick is a deterministic rotation by the number of batches
  the group has already started (weighted random would put two batches of a quiet group on the same
  deployment half the time); the other strategies pick with the router's own rule from the shared
  counters (fewest in flight, fewest tokens, lowest latency). Only the lowest `order` tier is
  considered, as for calls;
- a picked deployment that runs batches natively takes the whole file as one native part; a
  gateway-executed pick means the gateway's workers run the lines, and those are always spread across
  every gateway-executed deployment of the group (more deployments, more rpm, sooner done).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from models_registry import deployment_limits, strategies
from models_registry.batch_engines import GATEWAY, NATIVE, engine_for, sharding_on
from models_registry.choices import RoutingStrategy
from models_registry.counters import counter_get_many
from models_registry.runtime import gateway_config
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class PlannedPart:
    """One deployment's share: lines `[first_line, first_line + line_count)`."""

    index: int
    deployment: RoutableDeployment
    engine: str
    first_line: int
    line_count: int


def usable_deployments(group: str, operation: str) -> list[RoutableDeployment]:
    """The group's deployments that can run `operation` lines: natively (a batch API) or through the router."""
    usable = []
    for deployment in current_snapshot().group(group):
        if engine_for(deployment) == NATIVE or deployment.adapter.supports(operation):
            usable.append(deployment)
    return usable


def split_ranges(total: int, shares: int) -> list[tuple[int, int]]:
    """`total` lines as at most `shares` contiguous (first, count) ranges, sizes differing by one at most."""
    shares = max(1, min(shares, total))
    size, extra = divmod(total, shares)
    ranges = []
    first = 0
    for position in range(shares):
        count = size + (1 if position < extra else 0)
        ranges.append((first, count))
        first += count
    return ranges


def parts_plan(*, group: str, operation: str, total: int, batches_on_group: int) -> list[PlannedPart]:
    """The parts of a batch of `total` lines on `group`; a 400 when no deployment of it can run them.

    `batches_on_group` (how many batches the group had started before this one, from a shared counter)
    drives the rotation that spreads successive batches when the strategy is `simple-shuffle`.
    """
    deployments = usable_deployments(group, operation)
    if not deployments:
        raise InvalidRequestError(f"No deployment of '{group}' can run {operation} requests.",
                                  param="body.model", code="model_not_supported")
    if total <= 0:
        raise InvalidRequestError("The batch input holds no requests.", code="empty_file")
    if sharding_on(deployments):
        return _spread(deployments, total, None)
    chosen = deployment_pick(deployments, batches_on_group)
    if engine_for(chosen) == NATIVE:
        return [PlannedPart(index=0, deployment=chosen, engine=NATIVE, first_line=0, line_count=total)]
    gateway = [deployment for deployment in deployments
               if engine_for(deployment) == GATEWAY and deployment.adapter.supports(operation)]
    return _spread(gateway, total, GATEWAY)


def deployment_pick(deployments: Sequence[RoutableDeployment], batches_on_group: int) -> RoutableDeployment:
    """One deployment of the lowest `order` tier, by the configured routing strategy (see the module doc)."""
    tier = min(deployment.order for deployment in deployments)
    tiered = sorted((deployment for deployment in deployments if deployment.order == tier),
                    key=lambda deployment: deployment.id)
    if len(tiered) == 1:
        return tiered[0]
    router = gateway_config().router
    strategy = router.routing_strategy
    if strategy == RoutingStrategy.SIMPLE_SHUFFLE or not strategy:
        return tiered[batches_on_group % len(tiered)]
    now = time.time()
    keys = [key for deployment in tiered for key in deployment_limits.usage_keys(deployment, strategy, now)]
    keys.extend(strategies.strategy_keys(tiered, strategy))
    values = counter_get_many(keys)
    usage = {deployment.id: deployment_limits.usage_from(values, deployment, now) for deployment in tiered}
    return strategies.pick(tiered, strategy=strategy, values=values, usage=usage,
                           args=router.routing_strategy_args)


def _spread(deployments: Sequence[RoutableDeployment], total: int, engine: str | None) -> list[PlannedPart]:
    ordered = sorted(deployments, key=lambda deployment: (deployment.order, deployment.id))
    return [PlannedPart(index=index, deployment=deployment, engine=engine or engine_for(deployment),
                        first_line=first, line_count=count)
            for index, (deployment, (first, count)) in enumerate(zip(ordered, split_ranges(total, len(ordered)),
                                                                        strict=False))]
