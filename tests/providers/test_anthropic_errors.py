"""Anthropic's error answers mapped onto the gateway's error classes, statuses and envelopes.

Retries and fallbacks depend on these classes (`retryable`, `failover`), so each one is asserted
exactly: class, status, envelope, retry hint, and that an auth failure never repeats the upstream text.
"""
from __future__ import annotations

import pytest

from providers.anthropic import AnthropicProvider
from providers.errors import (
    ContextWindowExceededError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.http import Deadline
from providers.registry import adapter_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.providers.helpers import UPSTREAM_KEY, target_for

BODY = {"model": "claude-group", "messages": [{"role": "user", "content": "Hi"}]}
AUTH_MESSAGE = "The upstream provider rejected this deployment's credentials; the gateway operator must fix them."
CONTEXT_MESSAGE = ("input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000, decrease input "
                   "length or `max_tokens` and try again")


@pytest.fixture
def fake(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def anthropic() -> AnthropicProvider:
    return adapter_for("anthropic")


def target(fake: FakeAnthropic):
    return target_for(None, provider="anthropic", model="claude-sonnet-4-5-20250929", api_base=fake.url)


def envelope(message: str, type_: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


CASES = [
    # (status, anthropic type, message, class, our status, envelope type, code, retryable, failover)
    (529, "overloaded_error", "Overloaded", UpstreamServerError, 503, "api_error", "upstream_error", True, True),
    (500, "api_error", "Internal server error", UpstreamServerError, 502, "api_error", "upstream_error", True, True),
    (400, "invalid_request_error", "messages.0.content: Field required", UpstreamBadRequestError, 400,
     "invalid_request_error", None, False, False),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", ContextWindowExceededError,
     400, "invalid_request_error", "context_length_exceeded", False, False),
    (400, "invalid_request_error", CONTEXT_MESSAGE, ContextWindowExceededError, 400, "invalid_request_error",
     "context_length_exceeded", False, False),
    (404, "not_found_error", "model: claude-nope", UpstreamNotFoundError, 404, "invalid_request_error",
     "upstream_model_not_found", False, True),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", UpstreamBadRequestError, 413,
     "invalid_request_error", None, False, False),
]


@pytest.mark.parametrize(("status", "kind", "message", "error_class", "our_status", "type_", "code", "retryable",
                          "failover"), CASES, ids=[f"{case[0]}-{case[1]}-{case[3].__name__}" for case in CASES])
def test_error_statuses_map_to_gateway_errors(fake, anthropic, deadline, status, kind, message, error_class,
                                              our_status, type_, code, retryable, failover):
    fake.fail_next(kind="status", status=status, error_type=kind, message=message)
    with pytest.raises(error_class) as raised:
        anthropic.chat(target(fake), BODY, deadline)
    error = raised.value
    assert type(error) is error_class
    assert error.status_code == our_status
    assert error.envelope() == envelope(message, type_, code)
    assert (error.retryable, error.failover) == (retryable, failover)


def test_rate_limit_keeps_retry_after(fake, anthropic, deadline):
    fake.fail_next(kind="status", status=429, error_type="rate_limit_error",
                   message="Number of request tokens has exceeded your per-minute rate limit",
                   headers={"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"})
    with pytest.raises(UpstreamRateLimitError) as raised:
        anthropic.chat(target(fake), BODY, deadline)
    error = raised.value
    assert (error.status_code, error.retry_after, error.headers, error.retryable) == (429, 7.0, {"Retry-After": "7"},
                                                                                      True)
    assert error.envelope() == envelope("Number of request tokens has exceeded your per-minute rate limit",
                                        "rate_limit_error", "rate_limit_exceeded")


def test_overloaded_keeps_retry_after_too(fake, anthropic, deadline):
    fake.fail_next(kind="status", status=529, error_type="overloaded_error", message="Overloaded",
                   headers={"retry-after": "2"})
    with pytest.raises(UpstreamServerError) as raised:
        anthropic.chat(target(fake), BODY, deadline)
    assert (raised.value.status_code, raised.value.retry_after) == (503, 2.0)


@pytest.mark.parametrize(("status", "kind"), [(401, "authentication_error"), (403, "permission_error")])
def test_auth_failures_never_repeat_the_upstream_text(fake, anthropic, deadline, status, kind):
    fake.fail_next(kind="status", status=status, error_type=kind, message=f"invalid x-api-key {UPSTREAM_KEY}")
    with pytest.raises(UpstreamAuthenticationError) as raised:
        anthropic.chat(target(fake), BODY, deadline)
    error = raised.value
    assert error.status_code == 502
    assert error.envelope() == envelope(AUTH_MESSAGE, "upstream_authentication_error", "upstream_authentication_failed")
    assert UPSTREAM_KEY not in str(error.envelope())
    assert error.failover is True


def test_billing_refusal_is_the_operators_problem(fake, anthropic, deadline):
    fake.fail_next(kind="status", status=402, error_type="billing_error", message="Your credit balance is too low")
    with pytest.raises(UpstreamAuthenticationError) as raised:
        anthropic.chat(target(fake), BODY, deadline)
    assert raised.value.envelope() == envelope(
        "The upstream provider refused this deployment's account (billing); the gateway operator must fix it.",
        "upstream_authentication_error", "upstream_authentication_failed")


def test_an_upstream_that_hangs_past_the_deadline_times_out(fake, anthropic):
    fake.fail_next(kind="hang", seconds=2)
    with pytest.raises(UpstreamTimeoutError):
        anthropic.chat(target(fake), BODY, Deadline.after(0.3))


def test_errors_reach_the_native_methods_the_same_way(fake, anthropic, deadline):
    native = {"model": "claude-group", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    fake.fail_next(kind="status", status=529, error_type="overloaded_error", message="Overloaded")
    with pytest.raises(UpstreamServerError) as raised:
        anthropic.messages(target(fake), native, deadline)
    assert raised.value.status_code == 503
    fake.fail_next(kind="status", status=529, error_type="overloaded_error", message="Overloaded")
    with pytest.raises(UpstreamServerError):
        anthropic.messages_stream(target(fake), native, deadline, 5)
    fake.fail_next(kind="status", status=401, error_type="authentication_error", message="bad key")
    with pytest.raises(UpstreamAuthenticationError):
        anthropic.count_tokens(target(fake), native, deadline)
