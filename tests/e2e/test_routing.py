"""Retries, failover between deployments, fallbacks between groups, and timeouts, as seen through the SDK.

The SDK's own retries are off (`max_retries=0`): every attempt counted here is the gateway's.
"""
from __future__ import annotations

import time

import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.e2e.conftest import SHORT_TIMEOUT_SECONDS
from tests.e2e.helpers import only_request

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "route me"}]
FAKE_500 = {"message": "fake failure 500", "type": "api_error", "param": None, "code": "upstream_error"}
TIMEOUT = {"message": "The upstream provider did not answer within the timeout.", "type": "timeout_error",
           "param": None, "code": "upstream_timeout"}


def test_rate_limit_then_success_is_retried(client, fake_a):
    fake_a.fail_next(status=429, headers={"Retry-After": "0"})

    raw = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=USER)

    assert raw.status_code == 200
    assert type(raw.parse()) is ChatCompletion
    assert raw.parse().choices[0].message.content == "Hello from the fake provider."
    assert raw.headers["x-gatehouse-attempts"] == "2"
    assert raw.headers["x-gatehouse-fallbacks"] == "0"
    assert raw.headers["x-gatehouse-deployment-id"] == "gpt-fake-a"
    first, second = fake_a.requests_to("/chat/completions")
    assert first.body == second.body == {"model": "gpt-4o-mini", "messages": USER}
    assert len(fake_a.requests) == 2


def test_rate_limits_that_outlast_the_retries_reach_the_client_as_429(client, fake_a):
    fake_a.fail_next(count=3, status=429, headers={"Retry-After": "0"},
                     body={"error": {"message": "slow down", "type": "requests", "param": None, "code": None}})

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-fake", messages=USER)

    assert caught.value.status_code == 429
    assert caught.value.body == {"message": "slow down", "type": "rate_limit_error", "param": None,
                                 "code": "rate_limit_exceeded"}
    assert caught.value.response.headers["retry-after"] == "0"
    assert len(fake_a.requests) == 3  # num_retries: 2


def test_healthy_pair_serves_from_its_first_priority_tier(client, fake_a, fake_b):
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="pair", messages=USER)
        assert (raw.headers["x-gatehouse-deployment-id"], raw.headers["x-gatehouse-attempts"]) == ("pair-a", "1")

    assert [r.body["model"] for r in fake_a.requests] == ["pair-model-a"] * 3
    assert fake_b.requests == []


def test_server_errors_on_one_deployment_are_served_by_the_other(client, fake_a, fake_b):
    fake_a.fail_next(count=3, status=500)

    raw = client.chat.completions.with_raw_response.create(model="pair", messages=USER)

    assert raw.status_code == 200
    assert raw.parse().model == "pair-model-b"
    assert raw.headers["x-gatehouse-model-group"] == "pair"
    assert raw.headers["x-gatehouse-deployment-id"] == "pair-b"
    assert raw.headers["x-gatehouse-attempts"] == "2"
    failed = only_request(fake_a)
    assert (failed.body["model"], failed.headers["authorization"]) == ("pair-model-a", "Bearer sk-pair-a")
    served = only_request(fake_b)
    assert served.path == "/v1/chat/completions"
    assert (served.body, served.headers["authorization"]) == ({"model": "pair-model-b", "messages": USER},
                                                              "Bearer sk-pair-b")


def test_a_connection_reset_fails_over_too(client, fake_a, fake_b):
    fake_a.fail_next(kind="reset")

    raw = client.chat.completions.with_raw_response.create(model="pair", messages=USER)

    assert (raw.headers["x-gatehouse-deployment-id"], raw.headers["x-gatehouse-attempts"]) == ("pair-b", "2")
    assert len(fake_a.requests) == len(fake_b.requests) == 1


def test_a_malformed_upstream_body_is_retried(client, fake_a):
    fake_a.fail_next(kind="malformed")

    raw = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=USER)

    assert raw.headers["x-gatehouse-attempts"] == "2"
    assert raw.parse().choices[0].message.content == "Hello from the fake provider."


def test_upstream_bad_request_is_not_retried_nor_failed_over(client, fake_a, fake_b):
    upstream_error = {"message": "Invalid value for 'temperature'.", "type": "invalid_request_error",
                      "param": "temperature", "code": "invalid_value"}
    fake_a.fail_next(count=3, status=400, body={"error": upstream_error})

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="pair", messages=USER, temperature=9)

    assert caught.value.status_code == 400
    assert caught.value.body == upstream_error
    assert only_request(fake_a).body == {"model": "pair-model-a", "messages": USER, "temperature": 9}
    assert fake_b.requests == []


def test_upstream_auth_failure_does_not_leak_and_fails_over(client, fake_a, fake_b):
    fake_a.fail_next(status=401, body={"error": {"message": "Incorrect API key provided: sk-pair-a",
                                                 "type": "invalid_request_error", "param": None,
                                                 "code": "invalid_api_key"}})

    raw = client.chat.completions.with_raw_response.create(model="pair", messages=USER)

    assert raw.headers["x-gatehouse-deployment-id"] == "pair-b"
    assert len(fake_a.requests) == len(fake_b.requests) == 1


def test_upstream_auth_failure_is_a_gateway_error_without_the_upstream_text(client, fake_a):
    fake_a.fail_next(count=3, status=401, body={"error": {"message": "Incorrect API key provided: sk-upst****",
                                                          "type": "invalid_request_error", "param": None,
                                                          "code": "invalid_api_key"}})

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-fake", messages=USER)

    assert caught.value.status_code == 502
    assert caught.value.body == {
        "message": "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.",
        "type": "upstream_authentication_error", "param": None, "code": "upstream_authentication_failed"}
    assert len(fake_a.requests) == 1  # not retryable on the same deployment


def test_exhausted_group_falls_back_to_the_configured_group(client, fake_a, fake_c):
    fake_c.fail_next(count=3, status=500, headers={"Retry-After": "0"})

    raw = client.chat.completions.with_raw_response.create(model="flaky", messages=USER)

    assert raw.status_code == 200
    completion = raw.parse()
    assert type(completion) is ChatCompletion
    assert completion.model == "gpt-4o-mini"
    assert raw.headers["x-gatehouse-fallbacks"] == "1"
    assert raw.headers["x-gatehouse-model-group"] == "gpt-fake"
    assert raw.headers["x-gatehouse-deployment-id"] == "gpt-fake-a"
    assert raw.headers["x-gatehouse-attempts"] == "4"
    assert [r.body["model"] for r in fake_c.requests] == ["flaky-model"] * 3
    assert only_request(fake_a).body == {"model": "gpt-4o-mini", "messages": USER}


def test_streamed_request_falls_back_too(client, fake_a, fake_c):
    fake_c.fail_next(count=3, status=503, headers={"Retry-After": "0"})

    raw = client.chat.completions.with_raw_response.create(model="flaky", messages=USER, stream=True)
    chunks = list(raw.parse())

    assert raw.headers["x-gatehouse-fallbacks"] == "1"
    assert raw.headers["x-gatehouse-model-group"] == "gpt-fake"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "tok0 tok1 tok2 tok3 tok4 "
    assert len(fake_c.requests) == 3
    assert only_request(fake_a).body["stream"] is True


def test_fallback_exhausted_too_returns_the_last_upstream_error(client, fake_a, fake_c):
    fake_c.fail_next(count=3, status=500, headers={"Retry-After": "0"})
    fake_a.fail_next(count=3, status=500, headers={"Retry-After": "0"})

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="flaky", messages=USER)

    assert caught.value.status_code == 502
    assert caught.value.body == FAKE_500
    assert (len(fake_c.requests), len(fake_a.requests)) == (3, 3)


def test_per_request_fallbacks_and_num_retries(client, fake_a, fake_b, fake_c):
    fake_c.fail_next(count=3, status=500, headers={"Retry-After": "0"})

    raw = client.chat.completions.with_raw_response.create(
        model="flaky", messages=USER, extra_body={"num_retries": 0, "fallbacks": ["azure-chat"]})

    assert raw.headers["x-gatehouse-model-group"] == "azure-chat"
    assert raw.headers["x-gatehouse-attempts"] == "2"
    assert len(fake_c.requests) == 1
    assert fake_a.requests == []
    served = only_request(fake_b)
    assert served.body == {"model": "chat-deployment", "messages": USER}  # routing knobs are not forwarded


def test_hang_longer_than_the_deployment_timeout_is_a_504(client, fake_c):
    fake_c.fail_next(count=3, kind="hang", seconds=SHORT_TIMEOUT_SECONDS + 1)

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="short-timeout", messages=USER)
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 504
    assert caught.value.body == TIMEOUT
    assert len(fake_c.requests) == 3
    # Three attempts of one second each, plus short backoffs: never the 30 s router timeout.
    assert 3 * SHORT_TIMEOUT_SECONDS <= elapsed < 3 * SHORT_TIMEOUT_SECONDS + 2.5


def test_hang_then_success_is_retried_within_the_timeout(client, fake_c):
    fake_c.fail_next(kind="hang", seconds=SHORT_TIMEOUT_SECONDS + 1)

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="short-timeout", messages=USER)
    elapsed = time.monotonic() - started

    assert raw.status_code == 200
    assert raw.headers["x-gatehouse-attempts"] == "2"
    assert raw.parse().choices[0].message.content == "Hello from the fake provider."
    assert SHORT_TIMEOUT_SECONDS <= elapsed < SHORT_TIMEOUT_SECONDS + 1.5
    assert len(fake_c.requests) == 2


def test_stream_that_hangs_before_its_first_byte_gets_a_real_504(client, fake_c):
    fake_c.fail_next(kind="hang", seconds=SHORT_TIMEOUT_SECONDS + 1)

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="short-timeout", messages=USER, stream=True,
                                       extra_body={"num_retries": 0})
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 504
    assert caught.value.response.headers["content-type"] == "application/json"
    assert caught.value.body == TIMEOUT
    assert SHORT_TIMEOUT_SECONDS <= elapsed < SHORT_TIMEOUT_SECONDS + 1.5
    received = only_request(fake_c)
    assert "num_retries" not in received.body


def test_per_request_timeout_bounds_a_slow_upstream(client, fake_a):
    fake_a.fail_next(count=3, kind="hang", seconds=2)

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-fake", messages=USER, extra_body={"timeout": 0.5})
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 504
    assert caught.value.body == TIMEOUT
    assert elapsed < 1.5
    # The whole request had 0.5 s: no time was left for a second attempt.
    assert only_request(fake_a).body == {"model": "gpt-4o-mini", "messages": USER}
