"""How one deployment is picked among the usable ones of a priority tier (`router_settings.routing_strategy`).

- simple-shuffle: random, weighted by `weight` (else `rpm`, else `tpm`; the snapshot folds these into
  `weight`). Reads nothing shared: the cheapest, and the default.
- least-busy: the fewest calls in flight, counted across every worker.
- latency-based-routing: the lowest moving average of recent latency (for a stream, the time to its
  first chunk). A deployment with no measurement yet is tried first, so a new or recovered one gets
  explored; `routing_strategy_args.lowest_latency_buffer` (a fraction, 0.5 = 50 %) spreads traffic
  randomly over every deployment within that margin of the best, so one fast deployment is not
  flooded while others nearly as fast sit idle.
- usage-based-routing: the fewest tokens this minute (deployments over their rpm/tpm never get here).

Ties are broken at random so that workers reading the same counters do not all pick the same one.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from models_registry.choices import RoutingStrategy
from models_registry.counters import counter_set
from models_registry.deployment_limits import Usage
from models_registry.snapshot import RoutableDeployment

LATENCY_PREFIX = "deployment:latency_us:"
# Weight of the newest sample in the moving average: about the last eight calls count.
LATENCY_SMOOTHING = 0.25
# A measurement older than this (no traffic since) is forgotten and the deployment explored again.
LATENCY_TTL_SECONDS = 3600


def latency_key(deployment_id: str) -> str:
    return f"{LATENCY_PREFIX}{deployment_id}"


def strategy_keys(deployments: Sequence[RoutableDeployment], strategy: str) -> list[str]:
    """Shared counters the strategy reads beyond usage (only latency-based reads any)."""
    if strategy == RoutingStrategy.LATENCY_BASED:
        return [latency_key(deployment.id) for deployment in deployments]
    return []


def pick(deployments: Sequence[RoutableDeployment], *, strategy: str, values: Mapping[str, int],
         usage: Mapping[str, Usage], args: Mapping[str, object],
         prefer: frozenset[str] | None = None) -> RoutableDeployment:
    """One deployment of the lowest `order` tier among `deployments` (all usable), chosen by `strategy`.

    When some deployments of that tier are in `prefer` (they hold the request's files already), the
    strategy chooses among those alone; the tier itself is still the lowest usable one.
    """
    if len(deployments) == 1:
        return deployments[0]
    tier = min(deployment.order for deployment in deployments)
    tiered = [deployment for deployment in deployments if deployment.order == tier]
    if prefer:
        preferred = [deployment for deployment in tiered if deployment.id in prefer]
        if preferred:
            tiered = preferred
    if len(tiered) == 1:
        return tiered[0]
    if strategy == RoutingStrategy.LEAST_BUSY:
        return _fewest(tiered, lambda deployment: usage[deployment.id].in_flight)
    if strategy == RoutingStrategy.USAGE_BASED:
        return _fewest(tiered, lambda deployment: usage[deployment.id].tokens)
    if strategy == RoutingStrategy.LATENCY_BASED:
        return _lowest_latency(tiered, values, float(args.get("lowest_latency_buffer", 0.0)))
    return weighted_choice(tiered)


def weighted_choice(deployments: Sequence[RoutableDeployment]) -> RoutableDeployment:
    """Random choice in proportion to `weight`; weight 0 takes no traffic while another has some."""
    weights = [deployment.weight for deployment in deployments]
    if not any(weights):
        return random.choice(deployments)  # every deployment set to weight 0: share evenly rather than refuse
    return random.choices(deployments, weights=weights, k=1)[0]


def _fewest(deployments: list[RoutableDeployment], measure) -> RoutableDeployment:
    lowest = min(measure(deployment) for deployment in deployments)
    return random.choice([deployment for deployment in deployments if measure(deployment) == lowest])


def _lowest_latency(deployments: list[RoutableDeployment], values: Mapping[str, int],
                    buffer: float) -> RoutableDeployment:
    measured = {deployment.id: values.get(latency_key(deployment.id)) for deployment in deployments}
    unexplored = [deployment for deployment in deployments if not measured[deployment.id]]
    if unexplored:
        return random.choice(unexplored)
    best = min(measured.values())
    ceiling = best * (1 + buffer)
    return random.choice([deployment for deployment in deployments if measured[deployment.id] <= ceiling])


def latency_record(deployment_id: str, seconds: float, *, previous_us: int | None) -> None:
    """Fold one call's latency into the deployment's shared moving average.

    `previous_us` is the average read when the call was routed: concurrent calls may overwrite each
    other's update, which only makes the average a little less smooth.
    """
    sample = max(1, int(seconds * 1_000_000))
    average = sample if not previous_us else int(previous_us + LATENCY_SMOOTHING * (sample - previous_us))
    counter_set(latency_key(deployment_id), max(1, average), ttl=LATENCY_TTL_SECONDS)
