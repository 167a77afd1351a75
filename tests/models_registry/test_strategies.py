"""Each routing strategy's distribution, measured over many real calls to loopback fakes.

Deployments share one fake and are told apart by a path prefix (`/a/v1`, `/b/v1`); per-prefix latency
(`path_latency`) makes some slower than others. Tolerances are wide enough for a loaded machine but
each fails when the strategy is wrong (simple-shuffle would split every test here about evenly).
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from models_registry.router import route
from models_registry.snapshot import current_snapshot
from tests.fakes.openai_server import FakeOpenAI
from tests.models_registry.support import CHAT_BODY, chat_call, openai_entry


def _served(fake) -> Counter:
    return Counter(request.path.split("/")[1] for request in fake.requests)


def _config(fake, strategy: str, *entries, **router) -> dict:
    return {"model_list": [openai_entry("g", fake.url, prefix, **params) for prefix, params in entries],
            "router_settings": {"routing_strategy": strategy, **router}}


def _call_and_finish(tokens: dict[str, int] | None = None) -> str:
    response, outcome = route(model_group="g", operation="chat", call=chat_call)
    used = (tokens or {}).get(outcome.deployment.id, response.parsed["usage"]["total_tokens"])
    outcome.finish(total_tokens=used)
    return outcome.deployment.id


@pytest.fixture
def second_fake():
    fake = FakeOpenAI()
    yield fake
    fake.close()


# -- simple-shuffle ---------------------------------------------------------------------------------

def test_simple_shuffle_splits_by_weight(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "simple-shuffle", ("a", {"weight": 1}), ("b", {"weight": 3})))

    served = Counter(_call_and_finish() for _ in range(200))

    # 150 expected for b; the binomial standard deviation is ~6.1, so +-25 is four of them.
    assert 125 <= served["b"] <= 175
    assert served == _served(fake_openai)


# -- least-busy -------------------------------------------------------------------------------------

def test_least_busy_sends_the_next_call_to_the_deployment_with_nothing_in_flight(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "least-busy", ("a", {}), ("b", {}), ("c", {})))

    held = [route(model_group="g", operation="chat", call=chat_call)[1] for _ in range(3)]

    # Three calls still open: one on each deployment, whatever the order.
    assert sorted(outcome.deployment.id for outcome in held) == ["a", "b", "c"]
    held[1].finish(total_tokens=18)
    freed = held[1].deployment.id
    assert {_call_and_finish() for _ in range(5)} == {freed}  # the only one with nothing in flight
    for outcome in held:
        outcome.finish(total_tokens=18)
        outcome.finish(total_tokens=18)  # a second finish gives nothing back twice
    assert Counter(_call_and_finish() for _ in range(30)).keys() == {"a", "b", "c"}


def test_least_busy_favours_the_faster_deployment_under_concurrency(configure_gateway, fake_openai, settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 3600  # the threads route from the snapshot built here
    configure_gateway(_config(fake_openai, "least-busy", ("slow", {}), ("fast", {})))
    fake_openai.path_latency = {"/slow/": 0.2, "/fast/": 0.01}
    current_snapshot()
    served: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(12):
                served.append(_call_and_finish())
        except BaseException as error:  # surfaced below: a failed thread must fail the test
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    counts = Counter(served)
    assert sum(counts.values()) == 72
    # The slow deployment holds each call 20 times longer, so it is busier whenever a call is routed:
    # about 9 in 10 calls go to the fast one (half would, by shuffling).
    assert counts["fast"] >= 54
    assert counts == _served(fake_openai)


# -- latency-based-routing --------------------------------------------------------------------------

def test_latency_based_explores_each_deployment_once_then_keeps_to_the_fastest(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "latency-based-routing", ("a", {}), ("b", {}), ("c", {})))
    fake_openai.path_latency = {"/b/": 0.08, "/c/": 0.2}

    first_three = [_call_and_finish() for _ in range(3)]
    rest = Counter(_call_and_finish() for _ in range(27))

    assert sorted(first_three) == ["a", "b", "c"]  # unmeasured deployments are tried first
    assert rest == {"a": 27}


def test_latency_buffer_shares_traffic_among_deployments_nearly_as_fast(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "latency-based-routing", ("a", {}), ("b", {}), ("c", {}),
                              routing_strategy_args={"lowest_latency_buffer": 1.0}))
    fake_openai.path_latency = {"/a/": 0.02, "/b/": 0.025, "/c/": 0.15}

    served = Counter(_call_and_finish() for _ in range(43))

    # c (six times slower) is measured once and never chosen again; a and b share the other 42.
    assert served["c"] == 1
    assert served["a"] >= 11 and served["b"] >= 11
    assert served == _served(fake_openai)


def test_latency_of_a_stream_is_its_time_to_first_chunk(configure_gateway, fake_openai, second_fake):
    # `trickle` answers at once but spaces its chunks out; `late` waits before its first chunk, then
    # sends the rest at once. By total time trickle is slower; by time to first chunk, faster.
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "trickle"),
                                      openai_entry("g", second_fake.url, "late")],
                       "router_settings": {"routing_strategy": "latency-based-routing"}})
    fake_openai.stream_interval = 0.02  # 6 gaps: ~0.12 s in all
    second_fake.latency = 0.06

    def open_stream(deployment, target, deadline, first_chunk_timeout):
        stream = deployment.adapter.chat_stream(target, {**CHAT_BODY, "stream": True}, deadline, first_chunk_timeout)
        return stream, next(stream.chunks)

    chosen = []
    for _ in range(12):
        (stream, _first), outcome = route(model_group="g", operation="chat", call=open_stream)
        remaining = list(stream.chunks)  # the rest of the stream is relayed after routing, as the API does
        stream.close()
        outcome.finish(total_tokens=18)
        assert len(remaining) == 6
        chosen.append(outcome.deployment.id)

    assert sorted(chosen[:2]) == ["late", "trickle"]
    assert chosen[2:] == ["trickle"] * 10


def test_a_timed_out_deployment_loses_its_good_latency(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "latency-based-routing", ("a", {"timeout": 0.3}), ("b", {}),
                              num_retries=1))
    fake_openai.path_latency = {"/b/": 0.05}
    assert sorted(_call_and_finish() for _ in range(2)) == ["a", "b"]  # a measured fastest
    fake_openai.fail_next(kind="hang", seconds=1.0, path_contains="/a/")

    assert _call_and_finish() == "b"  # a timed out; the retry went to b
    assert Counter(_call_and_finish() for _ in range(5)) == {"b": 5}


# -- usage-based-routing ----------------------------------------------------------------------------

def test_usage_based_sends_each_call_to_the_deployment_with_the_fewest_tokens_this_minute(configure_gateway,
                                                                                         fake_openai):
    configure_gateway(_config(fake_openai, "usage-based-routing", ("big", {}), ("small", {})))

    # Calls served by `big` use 100 tokens, by `small` 10: small must take ten calls for each of big's.
    served = Counter(_call_and_finish(tokens={"big": 100, "small": 10}) for _ in range(55))

    assert 4 <= served["big"] <= 6
    assert served["big"] + served["small"] == 55
    assert served == _served(fake_openai)


def test_usage_based_with_equal_calls_alternates(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "usage-based-routing", ("a", {}), ("b", {}), ("c", {})))

    served = Counter(_call_and_finish() for _ in range(30))  # 18 tokens each (the fake's usage)

    assert served == {"a": 10, "b": 10, "c": 10}


def test_usage_based_skips_a_deployment_at_its_tpm(configure_gateway, fake_openai):
    configure_gateway(_config(fake_openai, "usage-based-routing", ("capped", {"tpm": 36}), ("open", {})))

    served = Counter(_call_and_finish(tokens={"capped": 18, "open": 30}) for _ in range(20))

    # By usage alone `capped` (cheaper calls) would take about 12 of 20; its tpm stops it at 36 tokens.
    assert served == {"capped": 2, "open": 18}


# -- order tiers come first in every strategy -------------------------------------------------------

@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy", "latency-based-routing",
                                      "usage-based-routing"])
def test_the_lowest_order_tier_is_used_in_every_strategy(configure_gateway, fake_openai, strategy):
    configure_gateway(_config(fake_openai, strategy, ("primary1", {"order": 1}), ("primary2", {"order": 1}),
                              ("backup", {"order": 2, "weight": 1000})))
    fake_openai.path_latency = {"/primary1/": 0.03, "/primary2/": 0.03}  # backup would win on latency

    served = Counter(_call_and_finish(tokens={"primary1": 500, "primary2": 500, "backup": 1}) for _ in range(12))

    assert set(served) == {"primary1", "primary2"}
    fake_openai.fail_next(status=503, path_contains="/primary1/")
    fake_openai.fail_next(status=503, path_contains="/primary2/")
    _, outcome = route(model_group="g", operation="chat", call=chat_call)
    outcome.finish(total_tokens=1)
    assert (outcome.deployment.id, outcome.attempts, outcome.retries) == ("backup", 3, 2)
