"""The router against real adapters and the loopback fake: choice, tiers, retries, backoff, fallbacks, timeouts.

Deployments share one fake and are told apart by a path prefix in their `api_base` (`/a/v1`, `/b/v1`), so
faults can be aimed at one deployment (`path_contains="/a/"`) and every request is attributed to the
deployment that sent it.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest

from models_registry.router import ModelNotFoundError, route
from models_registry.snapshot import current_snapshot
from models_registry.strategies import weighted_choice
from providers.errors import (
    UnsupportedOperationError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from tests.models_registry.support import chat_call, openai_entry, send_chat, stream_call


def _prefixes(fake) -> list[str]:
    """The deployment (path prefix) each recorded request went to, in order."""
    return [request.path.split("/")[1] for request in fake.requests]


def test_weights_split_traffic_in_proportion(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=3),
                                      openai_entry("g", fake_openai.url, "b", weight=1)]})

    served = Counter(send_chat("g")[1].deployment.id for _ in range(400))

    # Expected 300/100; the binomial standard deviation is ~8.7, so +-45 is more than five of them.
    assert 255 <= served["a"] <= 345
    assert served["a"] + served["b"] == 400
    assert Counter(_prefixes(fake_openai)) == served


def test_choose_uses_weight_then_rpm_then_tpm(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("w", fake_openai.url, "a", weight=1),
                                      openai_entry("w", fake_openai.url, "b", weight=4),
                                      openai_entry("r", fake_openai.url, "c", rpm=900),
                                      openai_entry("r", fake_openai.url, "d", rpm=100, tpm=999999)]})
    snapshot = current_snapshot()

    by_weight = Counter(weighted_choice(snapshot.group("w")).id for _ in range(5000))
    by_rpm = Counter(weighted_choice(snapshot.group("r")).id for _ in range(5000))

    assert 3800 <= by_weight["b"] <= 4200  # 4000 expected, sd ~28
    assert 4300 <= by_rpm["c"] <= 4700  # 4500 expected, sd ~21
    assert fake_openai.requests == []


def test_lower_order_is_always_chosen_while_healthy_and_higher_order_takes_over_on_failure(configure_gateway,
                                                                                         fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", order=1, weight=1),
                                      openai_entry("g", fake_openai.url, "b", order=2, weight=1000)]})

    assert {send_chat("g")[1].deployment.id for _ in range(40)} == {"a"}
    assert set(_prefixes(fake_openai)) == {"a"}

    fake_openai.reset()
    fake_openai.fail_next(status=503, path_contains="/a/")
    _, outcome = send_chat("g")

    assert (outcome.deployment.id, outcome.attempts, outcome.fallbacks_used) == ("b", 2, 0)
    assert _prefixes(fake_openai) == ["a", "b"]
    assert send_chat("g")[1].deployment.id == "a"  # healthy again: back to the lower tier


def test_a_retry_goes_to_another_deployment_first_without_waiting(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b")],
                       "router_settings": {"allowed_fails": 100}})  # fifteen failures must not cool either down

    started = time.monotonic()
    for _ in range(15):
        fake_openai.reset()
        fake_openai.fail_next(status=500, path_contains="/chat/completions")  # whichever is chosen first
        _, outcome = send_chat("g")

        first, second = _prefixes(fake_openai)
        assert first != second
        assert (outcome.deployment.id, outcome.attempts) == (second, 2)
    # A backoff before the second attempt would cost at least 0.05 s each time (0.75 s in all).
    assert time.monotonic() - started < 0.5


def test_the_same_deployment_is_retried_after_500_and_429_with_backoff(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 2}})
    fake_openai.fail_next(status=500, path_contains="/a/")
    fake_openai.fail_next(status=429, path_contains="/a/")
    started = time.monotonic()

    response, outcome = send_chat("g")

    elapsed = time.monotonic() - started
    assert response.parsed["model"] == "a-model"
    assert (outcome.deployment.id, outcome.attempts, outcome.fallbacks_used, outcome.model_group) == ("a", 3, 0, "g")
    assert _prefixes(fake_openai) == ["a", "a", "a"]
    # Jittered exponential backoff: at least 0.05 s then 0.1 s, at most 0.1 s then 0.2 s.
    assert 0.15 <= elapsed < 1.5


@pytest.mark.parametrize("fault", [{"kind": "reset"}, {"kind": "malformed"}, {"status": 502}, {"status": 504},
                                   {"status": 408}])
def test_connection_errors_malformed_bodies_and_server_errors_are_retried(configure_gateway, fake_openai, fault):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 1}})
    fake_openai.fail_next(path_contains="/a/", **fault)

    _, outcome = send_chat("g")

    assert outcome.attempts == 2
    assert _prefixes(fake_openai) == ["a", "a"]


def test_retry_after_below_the_cap_is_honoured(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 1, "retry_after": 5}})
    fake_openai.fail_next(status=429, headers={"Retry-After": "0.4"}, path_contains="/a/")
    started = time.monotonic()

    _, outcome = send_chat("g")

    elapsed = time.monotonic() - started
    assert outcome.attempts == 2
    assert _prefixes(fake_openai) == ["a", "a"]
    assert 0.4 <= elapsed < 1.5


def test_retry_after_above_the_cap_skips_to_the_fallback_at_once(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "a"),
                                      openai_entry("backup", fake_openai.url, "b")],
                       "router_settings": {"num_retries": 3, "retry_after": 1,
                                           "fallbacks": [{"primary": ["backup"]}]}})
    fake_openai.fail_next(status=429, headers={"Retry-After": "30"}, path_contains="/a/")
    started = time.monotonic()

    response, outcome = send_chat("primary")

    assert time.monotonic() - started < 1.0
    assert response.parsed["model"] == "b-model"
    assert (outcome.model_group, outcome.deployment.id, outcome.fallbacks_used, outcome.attempts) == \
        ("backup", "b", 1, 2)
    assert _prefixes(fake_openai) == ["a", "b"]


def test_retry_after_above_the_cap_without_fallback_raises_the_rate_limit(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 3, "retry_after": 1}})
    fake_openai.fail_next(status=429, headers={"Retry-After": "30"},
                          body={"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                          path_contains="/a/")

    with pytest.raises(UpstreamRateLimitError) as raised:
        send_chat("g")

    assert (raised.value.status_code, raised.value.message, raised.value.retry_after, raised.value.headers) == \
        (429, "slow down", 30.0, {"Retry-After": "30"})
    assert _prefixes(fake_openai) == ["a"]


def test_num_retries_from_the_config_bounds_the_attempts(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 1}})
    fake_openai.fail_next(5, status=500, path_contains="/a/")

    with pytest.raises(UpstreamServerError) as raised:
        send_chat("g")

    assert (raised.value.status_code, raised.value.code, raised.value.message) == \
        (502, "upstream_error", "fake failure 500")
    assert _prefixes(fake_openai) == ["a", "a"]


def test_num_retries_from_litellm_settings_is_used_when_router_settings_has_none(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "litellm_settings": {"num_retries": 0}})
    fake_openai.fail_next(5, status=500, path_contains="/a/")

    with pytest.raises(UpstreamServerError):
        send_chat("g")

    assert _prefixes(fake_openai) == ["a"]


def test_num_retries_per_request_overrides_the_config(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 0}})
    fake_openai.fail_next(3, status=500, path_contains="/a/")

    _, outcome = send_chat("g", num_retries=3)

    assert outcome.attempts == 4
    assert _prefixes(fake_openai) == ["a", "a", "a", "a"]

    fake_openai.reset()
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 4}})
    fake_openai.fail_next(3, status=500, path_contains="/a/")
    with pytest.raises(UpstreamServerError):
        send_chat("g", num_retries=0)
    assert _prefixes(fake_openai) == ["a"]


def test_fallbacks_run_after_retries_are_exhausted(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "a"),
                                      openai_entry("primary", fake_openai.url, "b"),
                                      openai_entry("second", fake_openai.url, "c"),
                                      openai_entry("third", fake_openai.url, "d")],
                       "router_settings": {"num_retries": 1,
                                           "fallbacks": [{"primary": ["second", "third"]}]}})
    fake_openai.fail_next(2, status=500, path_contains="/a/")
    fake_openai.fail_next(2, status=500, path_contains="/b/")
    fake_openai.fail_next(2, status=503, path_contains="/c/")

    response, outcome = send_chat("primary")

    assert response.parsed["model"] == "d-model"
    assert (outcome.model_group, outcome.deployment.id, outcome.fallbacks_used, outcome.attempts) == \
        ("third", "d", 2, 5)
    prefixes = _prefixes(fake_openai)
    assert sorted(prefixes[:2]) == ["a", "b"]  # two attempts in the first group, one per deployment
    assert prefixes[2:] == ["c", "c", "d"]


def test_per_request_fallbacks_replace_the_configured_ones(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "a"),
                                      openai_entry("second", fake_openai.url, "b"),
                                      openai_entry("other", fake_openai.url, "c")],
                       "router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["second"]}]}})

    fake_openai.fail_next(status=500, path_contains="/a/")
    _, outcome = send_chat("primary", fallbacks=["other"])
    assert (outcome.model_group, outcome.fallbacks_used) == ("other", 1)
    assert _prefixes(fake_openai) == ["a", "c"]

    fake_openai.reset()
    fake_openai.fail_next(status=500, path_contains="/a/")
    with pytest.raises(UpstreamServerError):
        send_chat("primary", fallbacks=[])
    assert _prefixes(fake_openai) == ["a"]


def test_when_every_group_fails_the_last_error_is_raised(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "a"),
                                      openai_entry("second", fake_openai.url, "b")],
                       "router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["unknown", "second"]}]}})
    fake_openai.fail_next(status=500, path_contains="/a/")
    fake_openai.fail_next(status=429, path_contains="/b/")

    with pytest.raises(UpstreamRateLimitError):
        send_chat("primary")

    assert _prefixes(fake_openai) == ["a", "b"]


def test_a_400_from_upstream_is_never_retried_nor_sent_to_a_fallback(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("primary", fake_openai.url, "a"),
                                      openai_entry("primary", fake_openai.url, "b"),
                                      openai_entry("second", fake_openai.url, "c")],
                       "router_settings": {"num_retries": 3, "fallbacks": [{"primary": ["second"]}]}})
    fake_openai.fail_next(status=400, body={"error": {"message": "messages is too long",
                                                      "type": "invalid_request_error", "param": "messages",
                                                      "code": "context_length_exceeded"}})

    with pytest.raises(UpstreamBadRequestError) as raised:
        send_chat("primary")

    assert raised.value.envelope() == {"error": {"message": "messages is too long", "type": "invalid_request_error",
                                                 "param": "messages", "code": "context_length_exceeded"}}
    assert raised.value.status_code == 400
    assert len(fake_openai.requests) == 1


def test_an_upstream_401_moves_to_another_deployment_but_is_not_retried_on_the_same(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 3}})
    fake_openai.fail_next(status=401, body={"error": {"message": "Incorrect API key provided: sk-a***"}})

    with pytest.raises(UpstreamAuthenticationError) as raised:
        send_chat("g")

    assert raised.value.envelope() == {"error": {
        "message": "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.",
        "type": "upstream_authentication_error", "param": None, "code": "upstream_authentication_failed"}}
    assert _prefixes(fake_openai) == ["a"]


def test_an_unknown_group_is_model_not_found(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")]})

    with pytest.raises(ModelNotFoundError) as raised:
        send_chat("gpt-5-does-not-exist")

    assert raised.value.status_code == 404
    assert raised.value.envelope() == {"error": {
        "message": "The model `gpt-5-does-not-exist` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    assert fake_openai.requests == []


def test_a_group_whose_adapters_cannot_do_the_operation_is_a_400(configure_gateway, fake_openai):
    configure_gateway({"model_list": [
        {"model_name": "az", "litellm_params": {"model": "azure/gpt-4o", "api_base": fake_openai.url,
                                                "api_key": "k"}},
        {"model_name": "legacy", "litellm_params": {"model": "text-completion-openai/babbage-002",
                                                    "api_base": f"{fake_openai.url}/v1"}},
    ]})

    def never_called(*arguments):
        raise AssertionError("no deployment may be called")

    for group, operation in (("az", "moderations"), ("legacy", "embeddings")):
        with pytest.raises(UnsupportedOperationError) as raised:
            route(model_group=group, operation=operation, call=never_called)
        assert raised.value.status_code == 400
        assert raised.value.envelope() == {"error": {
            "message": f"The model `{group}` does not support {operation}.", "type": "invalid_request_error",
            "param": "model", "code": "unsupported_model"}}
    assert fake_openai.requests == []


def test_a_fallback_group_that_cannot_do_the_operation_is_skipped(configure_gateway, fake_openai):
    configure_gateway({"model_list": [
        openai_entry("primary", fake_openai.url, "a"),
        {"model_name": "az", "litellm_params": {"model": "azure/omni", "api_base": fake_openai.url, "api_key": "k"}},
        openai_entry("backup", fake_openai.url, "b"),
    ], "router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["az", "backup"]}]}})
    fake_openai.fail_next(status=500, path_contains="/a/")

    def moderate(deployment, target, deadline, first_chunk_timeout):
        return deployment.adapter.moderation(target, {"input": "hello"}, deadline)

    response, outcome = route(model_group="primary", operation="moderations", call=moderate)

    assert response.parsed["model"] == "b-model"
    assert outcome.model_group == "backup"
    assert [request.path for request in fake_openai.requests] == ["/a/v1/moderations", "/b/v1/moderations"]


def test_a_deployment_timeout_aborts_a_hanging_upstream_and_moves_on(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", timeout=0.3, order=1),
                                      openai_entry("g", fake_openai.url, "b", order=2)],
                       "router_settings": {"num_retries": 1, "timeout": 30}})
    fake_openai.fail_next(kind="hang", seconds=3.0, path_contains="/a/")
    started = time.monotonic()

    response, outcome = send_chat("g")

    elapsed = time.monotonic() - started
    assert response.parsed["model"] == "b-model"
    assert (outcome.deployment.id, outcome.attempts) == ("b", 2)
    assert _prefixes(fake_openai) == ["a", "b"]
    assert 0.3 <= elapsed < 2.0


def test_a_stream_timeout_bounds_the_wait_for_the_first_chunk(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", stream_timeout=0.3, order=1),
                                      openai_entry("g", fake_openai.url, "b", order=2)],
                       "router_settings": {"num_retries": 1, "timeout": 30}})
    fake_openai.fail_next(kind="hang", seconds=3.0, path_contains="/a/")
    started = time.monotonic()

    chunks, outcome = route(model_group="g", operation="chat", call=stream_call)

    assert time.monotonic() - started < 2.0
    assert outcome.deployment.id == "b"
    assert len(chunks) == 7  # role chunk, five content chunks, finish chunk
    assert _prefixes(fake_openai) == ["a", "b"]


def test_the_request_timeout_stops_retrying_a_hanging_upstream(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 3, "timeout": 30}})
    fake_openai.fail_next(kind="hang", seconds=3.0, path_contains="/a/")
    started = time.monotonic()

    with pytest.raises(UpstreamTimeoutError) as raised:
        route(model_group="g", operation="chat", call=chat_call, timeout=0.4)

    assert 0.4 <= time.monotonic() - started < 2.0
    assert (raised.value.status_code, raised.value.code) == (504, "upstream_timeout")
    assert _prefixes(fake_openai) == ["a"]


def test_the_router_timeout_from_the_config_applies(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a")],
                       "router_settings": {"num_retries": 3, "timeout": 0.4}})
    fake_openai.fail_next(kind="hang", seconds=3.0, path_contains="/a/")
    started = time.monotonic()

    with pytest.raises(UpstreamTimeoutError):
        send_chat("g")

    assert 0.4 <= time.monotonic() - started < 2.0
    assert _prefixes(fake_openai) == ["a"]


def test_weight_zero_takes_no_traffic_while_a_weighted_deployment_is_healthy(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=1),
                                      openai_entry("g", fake_openai.url, "b", weight=0)]})

    assert {send_chat("g")[1].deployment.id for _ in range(50)} == {"a"}

    fake_openai.reset()
    fake_openai.fail_next(status=503, path_contains="/a/")
    _, outcome = send_chat("g")
    assert (outcome.deployment.id, outcome.attempts) == ("b", 2)  # still a failover target


def test_deployments_without_an_order_come_after_ordered_ones_on_every_database(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a"),
                                      openai_entry("g", fake_openai.url, "b", order=1)]})

    assert [deployment.id for deployment in current_snapshot().group("g")] == ["b", "a"]


def test_an_ordered_deployment_is_preferred_to_one_without_an_order(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", weight=1000),
                                      openai_entry("g", fake_openai.url, "b", order=3)]})

    assert {send_chat("g")[1].deployment.id for _ in range(30)} == {"b"}
