"""Running spend of keys and teams, shared by every worker through the counters.

Money is counted in micro-dollars (counters hold integers). `spend_record` is called once per
finished request, off the hot path's critical section (after the response is complete).
"""
from __future__ import annotations

from keys.principal import Caller
from models_registry.counters import counter_add

MICRO_DOLLARS = 1_000_000
SPEND_TTL_SECONDS = 40 * 24 * 3600


def spend_counter_key(scope: str, scope_id: str) -> str:
    return f"spend:{scope}:{scope_id}"


def spend_record(*, caller: Caller, cost: float) -> None:
    """Add a finished request's cost to its key's and its team's running spend."""
    key = caller.key
    if key is None or cost <= 0:
        return
    micros = round(cost * MICRO_DOLLARS)
    counter_add(spend_counter_key("key", key.id), micros, ttl=SPEND_TTL_SECONDS)
    if key.team_id:
        counter_add(spend_counter_key("team", key.team_id), micros, ttl=SPEND_TTL_SECONDS)
