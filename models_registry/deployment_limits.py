"""A deployment's own limits (`rpm`, `tpm`, `max_parallel_requests`), held across workers and instances.

Requests and tokens are counted per deployment in fixed one-minute windows; calls in flight in one
counter that every call increments when it starts and decrements when it is over (a stream: at its
last byte). Only what something reads is counted: requests when the deployment has an `rpm`, tokens
when it has a `tpm` or the strategy ranks by usage, calls in flight when it has a parallel limit or
the strategy ranks by them. A deployment with no limits under simple-shuffle costs nothing here.

Taking a slot is check-then-increment made safe: the increment's result is checked again, and a call
that pushed a counter over its limit takes its increment back and tries another deployment.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from models_registry.choices import RoutingStrategy
from models_registry.counters import counter_add, window_key
from models_registry.snapshot import RoutableDeployment

logger = logging.getLogger("gatehouse.router")

WINDOW_SECONDS = 60
# An in-flight count is a running total, not a window: it expires only to forget the slots of a process
# that died mid-call. A live count reset by the expiry is corrected by `_release_in_flight`.
IN_FLIGHT_TTL_SECONDS = 3600
# How soon to look again at a deployment that is full of parallel calls (they usually end within seconds).
PARALLEL_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What one deployment used this minute, and how many calls it has open now."""

    requests: int = 0
    tokens: int = 0
    in_flight: int = 0


def requests_key(deployment_id: str, now: float) -> tuple[str, int]:
    return window_key(f"deployment:requests:{deployment_id}", WINDOW_SECONDS, now)


def tokens_key(deployment_id: str, now: float) -> tuple[str, int]:
    return window_key(f"deployment:tokens:{deployment_id}", WINDOW_SECONDS, now)


def in_flight_key(deployment_id: str) -> str:
    return f"deployment:in_flight:{deployment_id}"


def counts_requests(deployment: RoutableDeployment) -> bool:
    return deployment.rpm is not None


def counts_tokens(deployment: RoutableDeployment, strategy: str) -> bool:
    return deployment.tpm is not None or strategy == RoutingStrategy.USAGE_BASED


def counts_in_flight(deployment: RoutableDeployment, strategy: str) -> bool:
    return deployment.max_parallel_requests is not None or strategy == RoutingStrategy.LEAST_BUSY


def usage_keys(deployment: RoutableDeployment, strategy: str, now: float) -> list[str]:
    """The counters `usage_from` reads for this deployment (only those that are kept)."""
    keys = []
    if counts_requests(deployment):
        keys.append(requests_key(deployment.id, now)[0])
    if counts_tokens(deployment, strategy):
        keys.append(tokens_key(deployment.id, now)[0])
    if counts_in_flight(deployment, strategy):
        keys.append(in_flight_key(deployment.id))
    return keys


def usage_from(values: Mapping[str, int], deployment: RoutableDeployment, now: float) -> Usage:
    return Usage(
        requests=values.get(requests_key(deployment.id, now)[0], 0),
        tokens=values.get(tokens_key(deployment.id, now)[0], 0),
        in_flight=max(0, values.get(in_flight_key(deployment.id), 0)),
    )


def limit_wait(deployment: RoutableDeployment, usage: Usage, now: float) -> float | None:
    """Seconds until the deployment may take another call, or None when it may now."""
    waits = []
    if deployment.rpm is not None and usage.requests >= deployment.rpm:
        waits.append(requests_key(deployment.id, now)[1])
    if deployment.tpm is not None and usage.tokens >= deployment.tpm:
        waits.append(tokens_key(deployment.id, now)[1])
    if deployment.max_parallel_requests is not None and usage.in_flight >= deployment.max_parallel_requests:
        waits.append(PARALLEL_RETRY_SECONDS)
    return max(waits) if waits else None


class Slot:
    """One call's hold on a deployment: its request counted, its in-flight place taken until `release`."""

    __slots__ = ("counts_tokens", "deployment", "holds_in_flight", "released")

    def __init__(self, deployment: RoutableDeployment, *, holds_in_flight: bool, counts_tokens: bool) -> None:
        self.deployment = deployment
        self.holds_in_flight = holds_in_flight
        self.counts_tokens = counts_tokens
        self.released = False

    def release(self, *, total_tokens: int = 0) -> None:
        """The call is over: give back its in-flight place and count its tokens. Safe to call twice."""
        if self.released:
            return
        self.released = True
        if self.holds_in_flight:
            _release_in_flight(self.deployment.id)
        if self.counts_tokens and total_tokens > 0:
            key, ttl = tokens_key(self.deployment.id, time.time())
            counter_add(key, int(total_tokens), ttl=ttl)


def slot_take(deployment: RoutableDeployment, strategy: str) -> Slot | None:
    """Count a call against the deployment's limits; None when another call took the last place first."""
    now = time.time()
    request_key = None
    if counts_requests(deployment):
        request_key, ttl = requests_key(deployment.id, now)
        if counter_add(request_key, 1, ttl=ttl) > deployment.rpm:
            counter_add(request_key, -1, ttl=ttl)
            return None
    holds_in_flight = counts_in_flight(deployment, strategy)
    if holds_in_flight:
        in_flight = counter_add(in_flight_key(deployment.id), 1, ttl=IN_FLIGHT_TTL_SECONDS)
        limit = deployment.max_parallel_requests
        if limit is not None and in_flight > limit:
            _release_in_flight(deployment.id)
            if request_key is not None:
                counter_add(request_key, -1, ttl=WINDOW_SECONDS)
            return None
    return Slot(deployment, holds_in_flight=holds_in_flight, counts_tokens=counts_tokens(deployment, strategy))


def _release_in_flight(deployment_id: str) -> None:
    """Decrement, never below zero: a count that expired while calls were open would otherwise go negative."""
    key = in_flight_key(deployment_id)
    value = counter_add(key, -1, ttl=IN_FLIGHT_TTL_SECONDS)
    if value < 0:
        counter_add(key, -value, ttl=IN_FLIGHT_TTL_SECONDS)
