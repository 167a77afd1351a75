"""Cooldowns: the public API health checks use, failures that start one, recovery, and the 429 when a
whole group is cooling down (through the router, and through the HTTP API)."""
from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from models_registry.cooldowns import cooldown_end, cooldown_start, cooldowns_active
from models_registry.router import route
from providers.errors import (
    ContextWindowExceededError,
    NoDeploymentAvailableError,
    UpstreamBadRequestError,
    UpstreamRateLimitError,
    UpstreamServerError,
)
from tests.models_registry.support import chat_call, openai_entry, send_chat

CHAT_PATH = "/v1/chat/completions"


def _prefixes(fake) -> list[str]:
    return [request.path.split("/")[1] for request in fake.requests]


def _served(count: int, group: str = "g") -> Counter:
    served = Counter()
    for _ in range(count):
        _, outcome = send_chat(group)
        outcome.finish(total_tokens=18)
        served[outcome.deployment.id] += 1
    return served


def _pair(fake, **router) -> dict:
    """a (tier 1) is always tried first while it is usable; b (tier 2) takes over when it is not."""
    return {"model_list": [openai_entry("g", fake.url, "a", order=1), openai_entry("g", fake.url, "b", order=2)],
            "router_settings": {"num_retries": 1, **router}}


# -- the public API -------------------------------------------------------------------------------

def test_cooldown_start_and_active_report_the_seconds_left():
    assert cooldowns_active(["x", "y"]) == {}

    cooldown_start("x", seconds=30, reason="health check failed")
    cooldown_start("y", seconds=2, reason="health check failed")
    active = cooldowns_active(["x", "y", "z"])

    assert set(active) == {"x", "y"}
    assert 29 < active["x"] <= 30
    assert 1 < active["y"] <= 2


def test_a_shorter_cooldown_never_cuts_a_longer_one_and_zero_starts_none():
    cooldown_start("x", seconds=30, reason="first")
    cooldown_start("x", seconds=1, reason="second")
    cooldown_start("y", seconds=0, reason="nothing")

    assert 29 < cooldowns_active(["x"])["x"] <= 30
    assert cooldowns_active(["y"]) == {}


def test_a_cooldown_ends_by_itself_or_when_ended():
    cooldown_start("x", seconds=0.3, reason="short")
    cooldown_start("y", seconds=60, reason="long")
    cooldown_end("y")

    assert set(cooldowns_active(["x", "y"])) == {"x"}
    time.sleep(0.35)
    assert cooldowns_active(["x", "y"]) == {}


# -- failures that start a cooldown, and recovery ---------------------------------------------------

def test_allowed_fails_within_a_minute_cool_a_deployment_down_until_cooldown_time(configure_gateway, fake_openai):
    configure_gateway(_pair(fake_openai, allowed_fails=3, cooldown_time=1))
    fake_openai.fail_next(3, status=500, path_contains="/a/")

    outcomes = [send_chat("g")[1] for _ in range(2)]
    assert [outcome.deployment.id for outcome in outcomes] == ["b", "b"]  # each failed on a, retried on b
    assert cooldowns_active(["a", "b"]) == {}  # two failures: still in rotation

    _, third = send_chat("g")
    assert third.deployment.id == "b"
    assert set(cooldowns_active(["a", "b"])) == {"a"}  # the third failure within the minute
    fake_openai.reset()

    assert _served(10) == {"b": 10}
    assert _prefixes(fake_openai) == ["b"] * 10  # nothing reached a while it cooled down

    time.sleep(1.05)
    assert _served(3) == {"a": 3}  # back after cooldown_time, with a fresh allowance
    assert cooldowns_active(["a"]) == {}


@pytest.mark.parametrize(("status", "retry_after"), [(429, None), (401, None), (403, None), (404, None)])
def test_one_answer_saying_the_deployment_cannot_serve_cools_it_down_at_once(configure_gateway, fake_openai,
                                                                           status, retry_after):
    configure_gateway(_pair(fake_openai, allowed_fails=3, cooldown_time=5))
    fake_openai.fail_next(status=status, path_contains="/a/")

    _, outcome = send_chat("g")

    assert (outcome.deployment.id, outcome.attempts) == ("b", 2)
    assert 4 < cooldowns_active(["a", "b"])["a"] <= 5
    assert _served(5) == {"b": 5}


def test_a_provider_retry_after_longer_than_cooldown_time_lengthens_the_cooldown(configure_gateway, fake_openai):
    configure_gateway(_pair(fake_openai, cooldown_time=1))
    fake_openai.fail_next(status=429, headers={"Retry-After": "20"}, path_contains="/a/")

    send_chat("g")

    assert 19 < cooldowns_active(["a"])["a"] <= 20


@pytest.mark.parametrize("code", [None, "context_length_exceeded"])
def test_a_bad_request_is_the_callers_fault_and_never_cools_a_deployment(configure_gateway, fake_openai, code):
    configure_gateway(_pair(fake_openai, allowed_fails=1))
    fake_openai.fail_next(4, status=400, body={"error": {"message": "bad", "type": "invalid_request_error",
                                                         "param": None, "code": code}})

    for _ in range(4):
        with pytest.raises(UpstreamBadRequestError) as raised:
            send_chat("g")
        assert isinstance(raised.value, ContextWindowExceededError) is (code is not None)

    assert cooldowns_active(["a", "b"]) == {}
    assert _prefixes(fake_openai) == ["a"] * 4


def test_a_single_deployment_group_is_never_cooled_down_by_its_failures(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("solo", fake_openai.url, "s")],
                       "router_settings": {"num_retries": 0, "allowed_fails": 1}})
    fake_openai.fail_next(status=429, path_contains="/s/")
    fake_openai.fail_next(status=500, path_contains="/s/")

    with pytest.raises(UpstreamRateLimitError):
        send_chat("solo")
    with pytest.raises(UpstreamServerError):
        send_chat("solo")

    assert cooldowns_active(["s"]) == {}
    assert _served(2, "solo") == {"s": 2}


# -- a whole group cooling down ---------------------------------------------------------------------

def test_every_deployment_cooling_is_a_429_with_retry_after_and_nothing_sent(configure_gateway, fake_openai):
    configure_gateway(_pair(fake_openai))
    cooldown_start("a", seconds=30, reason="test")
    cooldown_start("b", seconds=7.2, reason="test")

    with pytest.raises(NoDeploymentAvailableError) as raised:
        send_chat("g")

    assert raised.value.status_code == 429
    assert raised.value.headers == {"Retry-After": "8"}  # when b, the first, comes back
    assert raised.value.envelope() == {"error": {
        "message": "No deployment of `g` can take this request now: all 2 deployments are cooling down after "
                   "failures. Try again in 8 seconds.",
        "type": "rate_limit_error", "param": None, "code": "no_deployment_available"}}
    assert fake_openai.requests == []


def test_a_single_deployment_taken_out_by_a_health_check_is_a_429(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("solo", fake_openai.url, "s")]})
    cooldown_start("s", seconds=3, reason="health check failed")

    with pytest.raises(NoDeploymentAvailableError) as raised:
        send_chat("solo")

    assert raised.value.message == ("No deployment of `solo` can take this request now: its only deployment is "
                                    "cooling down after failures. Try again in 3 seconds.")
    assert raised.value.headers == {"Retry-After": "3"}
    assert fake_openai.requests == []


def test_failures_that_cool_the_whole_group_down_answer_the_next_request_with_429(configure_gateway, fake_openai):
    configure_gateway(_pair(fake_openai, cooldown_time=5))
    fake_openai.fail_next(status=429, path_contains="/a/")
    fake_openai.fail_next(status=429, path_contains="/b/")

    with pytest.raises(UpstreamRateLimitError) as first:
        send_chat("g")
    assert first.value.message == "fake failure 429"  # this request got the upstream's own answer
    with pytest.raises(NoDeploymentAvailableError) as second:
        send_chat("g")

    assert second.value.headers == {"Retry-After": "5"}
    assert _prefixes(fake_openai) == ["a", "b"]  # the second request sent nothing


def test_a_cooling_group_hands_over_to_its_fallbacks(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"), openai_entry("g", fake_openai.url, "b"),
                                      openai_entry("spare", fake_openai.url, "s")],
                       "router_settings": {"fallbacks": [{"g": ["spare"]}]}})
    cooldown_start("a", seconds=10, reason="test")
    cooldown_start("b", seconds=10, reason="test")

    response, outcome = send_chat("g")

    assert (outcome.model_group, outcome.deployment.id, outcome.attempts, outcome.fallbacks_used) == \
        ("spare", "s", 1, 1)
    assert response.parsed["model"] == "s-model"
    assert _prefixes(fake_openai) == ["s"]


def test_a_cooling_fallback_does_not_hide_the_primary_groups_own_error(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("spare", fake_openai.url, "s1"),
                                      openai_entry("spare", fake_openai.url, "s2")],
                       "router_settings": {"num_retries": 0, "fallbacks": [{"g": ["spare"]}]}})
    cooldown_start("s1", seconds=10, reason="test")
    cooldown_start("s2", seconds=10, reason="test")
    fake_openai.fail_next(status=500, path_contains="/a/")

    with pytest.raises(UpstreamServerError) as raised:
        route(model_group="g", operation="chat", call=chat_call)

    assert raised.value.message == "fake failure 500"
    assert _prefixes(fake_openai) == ["a"]


def test_all_cooling_through_the_api_is_a_429_envelope_with_retry_after(client, configure_gateway, fake_openai,
                                                                        auth_headers):
    configure_gateway(_pair(fake_openai))
    cooldown_start("a", seconds=4, reason="test")
    cooldown_start("b", seconds=4, reason="test")

    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
    response = client.post(CHAT_PATH, data=orjson.dumps(body), content_type="application/json", **auth_headers)

    assert response.status_code == 429
    assert response["Retry-After"] == "4"
    assert response["Content-Type"].startswith("application/json")
    assert orjson.loads(response.content) == {"error": {
        "message": "No deployment of `g` can take this request now: all 2 deployments are cooling down after "
                   "failures. Try again in 4 seconds.",
        "type": "rate_limit_error", "param": None, "code": "no_deployment_available"}}
    assert fake_openai.requests == []


def test_when_the_fallbacks_are_cooling_too_the_429_names_the_group_asked_for(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"), openai_entry("g", fake_openai.url, "b"),
                                      openai_entry("spare", fake_openai.url, "s")],
                       "router_settings": {"fallbacks": [{"g": ["spare"]}]}})
    for deployment_id, seconds in (("a", 9), ("b", 6), ("s", 3)):
        cooldown_start(deployment_id, seconds=seconds, reason="test")

    with pytest.raises(NoDeploymentAvailableError) as raised:
        send_chat("g")

    assert raised.value.message == ("No deployment of `g` can take this request now: all 2 deployments are cooling "
                                    "down after failures. Try again in 6 seconds.")
    assert fake_openai.requests == []
