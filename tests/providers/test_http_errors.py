"""How `providers/http.py` turns upstream failures into the gateway's error hierarchy.

Every failure is produced by a real server (the fake's scripted faults, or a port nobody listens on),
and every assertion names the exact class, status, type, code, param and message the router and the
error envelope will see.
"""
from __future__ import annotations

import time

import pytest

from providers.errors import (
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.http import Deadline
from providers.registry import adapter_for
from tests.providers.helpers import UPSTREAM_KEY, target_for

CHAT_BODY = {"model": "g", "messages": [{"role": "user", "content": "Hi"}]}


def upstream_error(message: str | None, *, code: str | None = None, param: str | None = None,
                   error_type: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def chat_error(fake, deadline=None) -> ProviderError:
    """The error a chat call to the fake raises (failing the test if it returns instead)."""
    with pytest.raises(ProviderError) as caught:
        adapter_for("openai").chat(target_for(fake.url), CHAT_BODY, deadline or Deadline.after(10))
    return caught.value


def shape(error: ProviderError) -> tuple:
    return (type(error), error.status_code, error.type, error.code, error.param, error.message)


# --- 429 ---------------------------------------------------------------------------------------------

def test_rate_limit_with_retry_after_keeps_the_delay_and_carries_the_header(fake_openai):
    fake_openai.fail_next(kind="status", status=429, headers={"Retry-After": "2"},
                          body=upstream_error("Rate limit reached for gpt-4o-mini", code="rate_limit_exceeded",
                                              error_type="requests"))
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamRateLimitError, 429, "rate_limit_error", "rate_limit_exceeded", None,
                            "Rate limit reached for gpt-4o-mini")
    assert error.retry_after == 2.0
    assert error.headers == {"Retry-After": "2"}
    assert (error.retryable, error.failover) == (True, True)


def test_a_fractional_retry_after_is_kept_exactly_and_rounded_up_in_the_header(fake_openai):
    fake_openai.fail_next(kind="status", status=429, headers={"Retry-After": "0.2"})
    error = chat_error(fake_openai)
    assert error.retry_after == 0.2
    assert error.headers == {"Retry-After": "1"}
    assert error.message == "fake failure 429"


def test_rate_limit_without_retry_after_has_no_delay_and_no_header(fake_openai):
    fake_openai.fail_next(kind="status", status=429, body={"unexpected": "shape"})
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamRateLimitError, 429, "rate_limit_error", "rate_limit_exceeded", None,
                            "The upstream provider is rate limiting requests.")
    assert error.retry_after is None
    assert error.headers == {}


def test_a_retry_after_http_date_is_ignored_rather_than_guessed(fake_openai):
    fake_openai.fail_next(kind="status", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    error = chat_error(fake_openai)
    assert (error.retry_after, error.headers) == (None, {})


# --- 401 / 403 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_never_repeat_the_upstream_text_or_the_key(fake_openai, status):
    """The provider's message often echoes part of the key; the caller did nothing wrong, so the error is
    the gateway's own (502), says the operator must fix it, and contains nothing the provider wrote."""
    upstream_text = f"Incorrect API key provided: {UPSTREAM_KEY}. You can find your API key at https://x."
    fake_openai.fail_next(kind="status", status=status,
                          body=upstream_error(upstream_text, code="invalid_api_key"))
    error = chat_error(fake_openai)
    assert shape(error) == (
        UpstreamAuthenticationError, 502, "upstream_authentication_error", "upstream_authentication_failed", None,
        "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.")
    rendered = repr(error.envelope()) + str(error) + repr(error.headers)
    assert UPSTREAM_KEY not in rendered
    assert "Incorrect API key" not in rendered
    assert "invalid_api_key" not in rendered
    assert (error.retryable, error.failover) == (False, True)
    assert error.__cause__ is None


# --- other 4xx ---------------------------------------------------------------------------------------

def test_not_found_keeps_the_upstream_message(fake_openai):
    fake_openai.fail_next(kind="status", status=404,
                          body=upstream_error("The model `gpt-5-nano` does not exist", code="model_not_found"))
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamNotFoundError, 404, "invalid_request_error", "upstream_model_not_found", None,
                            "The model `gpt-5-nano` does not exist")
    assert (error.retryable, error.failover) == (False, True)


def test_not_found_without_a_readable_body_gets_a_message_of_our_own(fake_openai):
    fake_openai.fail_next(kind="status", status=404, body="<html>Not Found</html>")
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamNotFoundError, 404, "invalid_request_error", "upstream_model_not_found", None,
                            "The upstream provider does not know this model or route.")


def test_bad_request_keeps_the_upstream_message_param_and_code(fake_openai):
    fake_openai.fail_next(kind="status", status=400, body=upstream_error(
        "This model's maximum context length is 8192 tokens.", code="context_length_exceeded",
        param="messages"))
    error = chat_error(fake_openai)
    from providers.errors import ContextWindowExceededError  # a 400 of its own kind: the router falls back on it

    assert shape(error) == (ContextWindowExceededError, 400, "invalid_request_error", "context_length_exceeded",
                            "messages", "This model's maximum context length is 8192 tokens.")
    assert (error.retryable, error.failover) == (False, False)


def test_a_bad_request_whose_error_is_a_plain_string_keeps_that_string(fake_openai):
    fake_openai.fail_next(kind="status", status=400, body={"error": "temperature must be <= 2"})
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamBadRequestError, 400, "invalid_request_error", None, None,
                            "temperature must be <= 2")


@pytest.mark.parametrize(("status", "expected_status"), [(413, 413), (422, 422), (402, 400)])
def test_other_client_errors_are_bad_requests_keeping_413_and_422(fake_openai, status, expected_status):
    fake_openai.fail_next(kind="status", status=status, body="")
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamBadRequestError, expected_status, "invalid_request_error", None, None,
                            f"The upstream provider rejected the request (HTTP {status}).")


# --- 5xx and other retryable answers -------------------------------------------------------------

@pytest.mark.parametrize(("status", "expected_status"), [(500, 502), (502, 502), (503, 503), (504, 504),
                                                         (408, 502), (409, 502)])
def test_server_errors_are_retryable_and_keep_503_and_504(fake_openai, status, expected_status):
    fake_openai.fail_next(kind="status", status=status)
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamServerError, expected_status, "api_error", "upstream_error", None,
                            f"fake failure {status}")
    assert (error.retryable, error.failover) == (True, True)


def test_a_503_with_retry_after_keeps_the_delay(fake_openai):
    fake_openai.fail_next(kind="status", status=503, headers={"Retry-After": "7"}, body="")
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamServerError, 503, "api_error", "upstream_error", None,
                            "The upstream provider failed with HTTP 503.")
    assert error.retry_after == 7.0


def test_a_200_whose_body_is_not_json_is_an_upstream_server_error(fake_openai):
    fake_openai.fail_next(kind="malformed")
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamServerError, 502, "api_error", "upstream_error", None,
                            "The upstream provider returned a body that is not a JSON object.")
    assert error.retryable is True


# --- transport failures ----------------------------------------------------------------------------

def test_connection_refused_is_an_upstream_connection_error_naming_the_host(closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(UpstreamConnectionError) as caught:
        adapter_for("openai").chat(target_for(url), CHAT_BODY, Deadline.after(5))
    assert shape(caught.value) == (UpstreamConnectionError, 502, "api_error", "upstream_connection_error", None,
                                   f"Could not reach the upstream provider at 127.0.0.1:{closed_port}.")
    assert caught.value.retryable is True


def test_a_connection_closed_without_an_answer_is_an_upstream_connection_error(fake_openai):
    fake_openai.fail_next(kind="reset")
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamConnectionError, 502, "api_error", "upstream_connection_error", None,
                            f"Could not reach the upstream provider at 127.0.0.1:{fake_openai.port}.")


def test_a_provider_that_hangs_past_the_deadline_is_an_upstream_timeout(fake_openai):
    """The call gives up when the deadline passes, not when the provider finally answers."""
    fake_openai.fail_next(kind="hang", seconds=2.0)
    started = time.monotonic()
    error = chat_error(fake_openai, Deadline.after(0.3))
    elapsed = time.monotonic() - started
    assert shape(error) == (UpstreamTimeoutError, 504, "timeout_error", "upstream_timeout", None,
                            "The upstream provider did not answer within the timeout.")
    assert error.retryable is True
    assert 0.25 <= elapsed < 1.5


def test_an_already_expired_deadline_fails_without_calling_the_provider(fake_openai):
    error = chat_error(fake_openai, Deadline.after(-1))
    assert shape(error) == (UpstreamTimeoutError, 504, "timeout_error", "upstream_timeout", None,
                            "The upstream provider did not answer within the request timeout.")
    assert fake_openai.requests == []


def test_streams_map_errors_before_the_first_byte_the_same_way(fake_openai):
    """An error status on a stream is raised from `chat_stream` itself, so the router can still retry it."""
    fake_openai.fail_next(kind="status", status=429, headers={"Retry-After": "3"})
    with pytest.raises(UpstreamRateLimitError) as caught:
        adapter_for("openai").chat_stream(target_for(fake_openai.url), {**CHAT_BODY, "stream": True},
                                          Deadline.after(10), 5)
    assert (caught.value.status_code, caught.value.retry_after, caught.value.headers) == (429, 3.0,
                                                                                          {"Retry-After": "3"})


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_blames_the_deployments_api_base_not_the_client(fake_openai, status):
    """Redirects are never followed (a provider key must not travel to another host) and are not a 400:
    the caller did nothing wrong, the deployment's api_base is off."""
    fake_openai.fail_next(kind="status", status=status, headers={"Location": "https://elsewhere.example/v1"})
    error = chat_error(fake_openai)
    assert shape(error) == (UpstreamServerError, 502, "api_error", "upstream_redirect", None,
                            f"The upstream provider answered with a redirect (HTTP {status}); "
                            "the deployment's api_base is probably wrong.")
    assert len(fake_openai.requests) == 1
