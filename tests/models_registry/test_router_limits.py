"""A deployment's own rpm, tpm and max_parallel_requests: skipped when over, 429 when the whole group is,
slots given back when a call ends (answered or failed). Across processes: tests/e2e/test_routing_production.py."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from models_registry.counters import counter_get
from models_registry.deployment_limits import WINDOW_SECONDS, requests_key, slot_take
from models_registry.router import route
from models_registry.snapshot import current_snapshot
from providers.errors import NoDeploymentAvailableError
from tests.models_registry.support import openai_entry, send_chat


def _prefixes(fake) -> list[str]:
    return [request.path.split("/")[1] for request in fake.requests]


def _finished(count: int, tokens: int = 18) -> Counter:
    served = Counter()
    for _ in range(count):
        _, outcome = send_chat("g")
        outcome.finish(total_tokens=tokens)
        served[outcome.deployment.id] += 1
    return served


@pytest.fixture(autouse=True)
def _not_at_the_end_of_a_minute():
    """Counts live in one-minute windows: a test that straddles two would see its counts reset."""
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 3:
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.05)


def test_limits_are_read_from_litellm_params_or_model_info(configure_gateway, fake_openai):
    configure_gateway({"model_list": [
        openai_entry("g", fake_openai.url, "params", rpm=10, tpm=1000, max_parallel_requests=3),
        {**openai_entry("g", fake_openai.url, "info"),
         "model_info": {"id": "info", "rpm": 20, "tpm": 2000, "max_parallel_requests": 4}},
        openai_entry("g", fake_openai.url, "none"),
    ]})
    snapshot = current_snapshot()

    assert sorted((d.id, d.rpm, d.tpm, d.max_parallel_requests, d.weight) for d in snapshot.group("g")) == [
        ("info", 20, 2000, 4, 20.0), ("none", None, None, None, 1.0), ("params", 10, 1000, 3, 10.0)]


def test_a_deployment_at_its_rpm_is_skipped_for_the_rest_of_the_minute(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=3, weight=1000),
                                      openai_entry("g", fake_openai.url, "b", weight=1)]})

    served = _finished(10)

    assert served == {"a": 3, "b": 7}
    assert Counter(_prefixes(fake_openai)) == served


def test_failed_attempts_count_against_the_rpm_too(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=2, order=1),
                                      openai_entry("g", fake_openai.url, "b", order=2)],
                       "router_settings": {"num_retries": 1}})
    fake_openai.fail_next(status=500, path_contains="/a/")

    assert [outcome.deployment.id for outcome in (send_chat("g")[1], send_chat("g")[1], send_chat("g")[1])] == \
        ["b", "a", "b"]
    assert _prefixes(fake_openai) == ["a", "b", "a", "b"]


def test_every_deployment_at_its_rpm_is_a_429_until_the_window_ends(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=1),
                                      openai_entry("g", fake_openai.url, "b", rpm=1)]})
    assert sorted(_finished(2)) == ["a", "b"]

    with pytest.raises(NoDeploymentAvailableError) as raised:
        send_chat("g")

    seconds_left = int(raised.value.headers["Retry-After"])
    assert 1 <= seconds_left <= WINDOW_SECONDS
    assert abs(seconds_left - (WINDOW_SECONDS - time.time() % WINDOW_SECONDS)) < 2
    assert raised.value.envelope() == {"error": {
        "message": "No deployment of `g` can take this request now: all 2 deployments are at their rate limits "
                   f"(rpm, tpm or parallel requests). Try again in {seconds_left} seconds.",
        "type": "rate_limit_error", "param": None, "code": "no_deployment_available"}}
    assert len(fake_openai.requests) == 2  # the refused request sent nothing


def test_a_deployment_at_its_tpm_is_skipped_once_its_calls_have_reported_their_tokens(configure_gateway,
                                                                                     fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", tpm=40, weight=1000),
                                      openai_entry("g", fake_openai.url, "b", weight=1)]})

    # 0, 18 and 36 tokens are under 40: three calls; the fourth would start at 54.
    assert _finished(8) == {"a": 3, "b": 5}


def test_max_parallel_requests_holds_calls_until_they_finish(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", max_parallel_requests=2, order=1),
                                      openai_entry("g", fake_openai.url, "b", max_parallel_requests=1, order=2)]})

    open_calls = [send_chat("g")[1] for _ in range(3)]
    assert [outcome.deployment.id for outcome in open_calls] == ["a", "a", "b"]
    with pytest.raises(NoDeploymentAvailableError) as raised:
        send_chat("g")
    assert raised.value.headers == {"Retry-After": "1"}

    open_calls[0].finish(total_tokens=18)
    assert _finished(3) == {"a": 3}  # one place free on a again, given back after each call
    assert len(fake_openai.requests) == 6


def test_a_failed_attempt_gives_its_parallel_place_back(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", max_parallel_requests=1, order=1),
                                      openai_entry("g", fake_openai.url, "b", order=2)],
                       "router_settings": {"num_retries": 1}})
    fake_openai.fail_next(status=503, path_contains="/a/")

    _, failed_over = send_chat("g")
    assert failed_over.deployment.id == "b"
    failed_over.finish()

    assert _finished(2) == {"a": 2}


def test_an_exception_inside_the_call_gives_the_place_back(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", max_parallel_requests=1)]})

    def broken(deployment, target, deadline, first_chunk_timeout):
        raise KeyboardInterrupt  # anything at all, even what is not an Exception

    with pytest.raises(KeyboardInterrupt):
        route(model_group="g", operation="chat", call=broken)

    assert _finished(1) == {"a": 1}


def test_a_group_at_its_limits_hands_over_to_its_fallbacks(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=1),
                                      openai_entry("spare", fake_openai.url, "s")],
                       "router_settings": {"fallbacks": [{"g": ["spare"]}]}})

    outcomes = [send_chat("g")[1] for _ in range(3)]

    assert [(outcome.model_group, outcome.fallbacks_used, outcome.attempts) for outcome in outcomes] == \
        [("g", 0, 1), ("spare", 1, 1), ("spare", 1, 1)]
    assert _prefixes(fake_openai) == ["a", "s", "s"]


def test_a_slot_that_would_pass_the_limit_is_refused_and_takes_its_count_back(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=1, max_parallel_requests=5)]})
    deployment = current_snapshot().group("g")[0]

    first = slot_take(deployment, "simple-shuffle")
    second = slot_take(deployment, "simple-shuffle")  # as if two workers had read 0 at the same moment

    assert first is not None and second is None
    assert counter_get(requests_key("a", time.time())[0]) == 1
    first.release(total_tokens=10)
    first.release(total_tokens=10)
    assert counter_get("deployment:in_flight:a") == 0


def test_limits_and_cooldowns_never_query_the_database(configure_gateway, fake_openai, settings,
                                                      django_assert_num_queries):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", rpm=100, tpm=10000,
                                                   max_parallel_requests=5),
                                      openai_entry("g", fake_openai.url, "b", rpm=100)],
                       "router_settings": {"routing_strategy": "usage-based-routing"}})
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 3600
    current_snapshot()
    fake_openai.fail_next(3, status=500, path_contains="/a/")

    with django_assert_num_queries(0):
        assert sum(_finished(10).values()) == 10
