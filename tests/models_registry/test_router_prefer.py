"""`route(..., prefer_deployments=...)`: deployments holding a request's files are chosen first within the
chosen `order` tier while any of them is usable, and the others take over (and get a copy) when none is.

Deployments share one loopback fake and are told apart by a path prefix (`/a/v1`, `/b/v1`), so every
request the fake received is attributed to the deployment that sent it.
"""
from __future__ import annotations

from collections import Counter

import pytest

from models_registry.cooldowns import cooldown_start
from models_registry.router import route
from providers.errors import UpstreamServerError
from tests.models_registry.support import chat_call, openai_entry


def _prefixes(fake) -> list[str]:
    return [request.path.split("/")[1] for request in fake.requests]


def _send(group: str = "g", *, prefer: frozenset[str] | None, **options):
    response, outcome = route(model_group=group, operation="chat", call=chat_call, prefer_deployments=prefer,
                              **options)
    outcome.finish(total_tokens=response.parsed["usage"]["total_tokens"])
    return outcome


def _served(count: int, *, prefer: frozenset[str] | None, group: str = "g") -> Counter:
    return Counter(_send(group, prefer=prefer).deployment.id for _ in range(count))


def test_a_preferred_deployment_wins_over_far_heavier_weights(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=1000),
                                      openai_entry("g", fake_openai.url, "b", weight=1),
                                      openai_entry("g", fake_openai.url, "c", weight=1000)]})

    served = _served(30, prefer=frozenset({"b"}))

    assert served == {"b": 30}
    assert _prefixes(fake_openai) == ["b"] * 30


def test_the_strategy_still_chooses_among_several_preferred_deployments(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=3),
                                      openai_entry("g", fake_openai.url, "b", weight=1),
                                      openai_entry("g", fake_openai.url, "c", weight=1000)]})

    served = _served(200, prefer=frozenset({"a", "b"}))

    # c (no copy) gets nothing; a:b is 3:1 (150 expected, sd ~6.1).
    assert set(served) == {"a", "b"}
    assert 120 <= served["a"] <= 180
    assert Counter(_prefixes(fake_openai)) == served


@pytest.mark.parametrize("prefer", [None, frozenset(), frozenset({"not-in-this-group"})])
def test_no_preference_or_no_preferred_deployment_in_the_group_routes_as_usual(configure_gateway, fake_openai,
                                                                               prefer):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=1),
                                      openai_entry("g", fake_openai.url, "b", weight=1)]})

    served = _served(60, prefer=prefer)

    assert set(served) == {"a", "b"}  # both explored: the chance that 60 even draws miss one is 2 ** -59


def test_a_preferred_deployment_never_outranks_a_lower_order_tier(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "first", order=1),
                                      openai_entry("g", fake_openai.url, "copy", order=2)]})

    assert _served(10, prefer=frozenset({"copy"})) == {"first": 10}


def test_preference_applies_within_the_tier_that_is_usable(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "first", order=1),
                                      openai_entry("g", fake_openai.url, "plain", order=2, weight=1000),
                                      openai_entry("g", fake_openai.url, "copy", order=2, weight=1)]})
    cooldown_start("first", seconds=60, reason="test")

    assert _served(20, prefer=frozenset({"copy"})) == {"copy": 20}


def test_a_cooling_preferred_deployment_gives_way_to_the_others(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b")]})
    cooldown_start("a", seconds=60, reason="test")

    assert _served(10, prefer=frozenset({"a"})) == {"b": 10}
    assert fake_openai.requests_to("/a/") == []


def test_a_preferred_deployment_at_its_rpm_gives_way_for_the_rest_of_the_minute(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=10_000),
                                      openai_entry("g", fake_openai.url, "b", rpm=2)]})

    served = [_send(prefer=frozenset({"b"})).deployment.id for _ in range(5)]

    assert served[:2] == ["b", "b"]
    assert served[2:] == ["a", "a", "a"]


def test_a_failed_preferred_deployment_is_retried_on_another_one_at_once(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b")],
                       "router_settings": {"num_retries": 1, "allowed_fails": 100}})
    fake_openai.fail_next(status=500, path_contains="/b/")

    outcome = _send(prefer=frozenset({"b"}))

    assert (outcome.deployment.id, outcome.attempts, outcome.retries) == ("a", 2, 1)
    assert _prefixes(fake_openai) == ["b", "a"]
    assert _send(prefer=frozenset({"b"})).deployment.id == "b"  # the next request prefers it again


def test_with_every_deployment_failing_the_preferred_one_is_tried_again_after_the_rest(configure_gateway,
                                                                                      fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b")],
                       "router_settings": {"num_retries": 2, "allowed_fails": 100}})
    fake_openai.fail_next(count=3, status=500)

    with pytest.raises(UpstreamServerError):
        _send(prefer=frozenset({"b"}))

    # First the copy holder, then the other, then (both failed) the preferred one again after a backoff.
    assert _prefixes(fake_openai) == ["b", "a", "b"]


def test_preference_carries_over_to_a_fallback_group(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "p"),
                                      openai_entry("backup", fake_openai.url, "x", weight=1000),
                                      openai_entry("backup", fake_openai.url, "y", weight=1)],
                       "router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["backup"]}]}})
    fake_openai.fail_next(count=5, status=503, path_contains="/p/")

    outcomes = [_send("primary", prefer=frozenset({"p", "y"})) for _ in range(5)]

    assert [(outcome.model_group, outcome.deployment.id) for outcome in outcomes] == [("backup", "y")] * 5


@pytest.mark.parametrize("strategy", ["least-busy", "usage-based-routing", "latency-based-routing"])
def test_every_strategy_keeps_to_the_preferred_deployments(configure_gateway, fake_openai, strategy):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b"),
                                      openai_entry("g", fake_openai.url, "c")],
                       "router_settings": {"routing_strategy": strategy}})

    # Each of these strategies alone would spread the calls (in flight, tokens, or exploring the unmeasured).
    assert _served(12, prefer=frozenset({"a", "c"})).keys() == {"a", "c"}
    held = [route(model_group="g", operation="chat", call=chat_call, prefer_deployments=frozenset({"c"}))[1]
            for _ in range(3)]
    assert [outcome.deployment.id for outcome in held] == ["c", "c", "c"]
    for outcome in held:
        outcome.finish(total_tokens=18)
