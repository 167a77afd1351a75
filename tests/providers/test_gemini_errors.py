"""Google's error bodies mapped onto Gatehouse's error classes, so retries and fallbacks behave as for OpenAI.

Every case goes through the real HTTP path: the fake answers the status and Google's error body.
"""
from __future__ import annotations

import pytest

from providers.errors import (
    ContextWindowExceededError,
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
from tests.fakes.gemini_server import GEMINI_KEY, FakeGoogle, google_error
from tests.providers.helpers import only_request, target_for

MODEL = "gemini-2.0-flash"
BODY = {"messages": [{"role": "user", "content": "Hi"}]}
AUTH_MESSAGE = "The upstream provider rejected this deployment's credentials; the gateway operator must fix them."
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}


@pytest.fixture
def gemini():
    return adapter_for("gemini")


def gemini_target(fake: FakeGoogle, api_key: str = GEMINI_KEY):
    return target_for(None, provider="gemini", model=MODEL, api_key=api_key, api_base=fake.url)


# (status, body, headers) -> (class, status_code, envelope code, message, retry_after, response headers)
CASES = {
    "quota with RetryInfo": (
        429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [RETRY_INFO]), {},
        UpstreamRateLimitError, 429, "rate_limit_exceeded", "Quota exceeded.", 37.0, {"Retry-After": "37"}),
    "quota with Retry-After": (
        429, google_error(429, "RESOURCE_EXHAUSTED", "Slow down.", [RETRY_INFO]), {"Retry-After": "5"},
        UpstreamRateLimitError, 429, "rate_limit_exceeded", "Slow down.", 5.0, {"Retry-After": "5"}),
    "quota without delay": (
        429, google_error(429, "RESOURCE_EXHAUSTED", "Slow down."), {},
        UpstreamRateLimitError, 429, "rate_limit_exceeded", "Slow down.", None, {}),
    "invalid argument": (
        400, google_error(400, "INVALID_ARGUMENT", "Invalid value at 'contents[0]'."), {},
        UpstreamBadRequestError, 400, "invalid_argument", "Invalid value at 'contents[0]'.", None, {}),
    "failed precondition": (
        400, google_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), {},
        UpstreamBadRequestError, 400, "failed_precondition", "User location is not supported for the API use.",
        None, {}),
    "context too long": (
        400, google_error(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of "
                                                   "tokens allowed (1048576)."), {},
        ContextWindowExceededError, 400, "context_length_exceeded",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", None, {}),
    "unauthenticated": (
        401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), {},
        UpstreamAuthenticationError, 502, "upstream_authentication_failed", AUTH_MESSAGE, None, {}),
    "permission denied": (
        403, google_error(403, "PERMISSION_DENIED", "Permission denied for key AIza-fake-gemini-key."), {},
        UpstreamAuthenticationError, 502, "upstream_authentication_failed", AUTH_MESSAGE, None, {}),
    "not found": (
        404, google_error(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta."), {},
        UpstreamNotFoundError, 404, "upstream_model_not_found", "models/gemini-9 is not found for API version v1beta.",
        None, {}),
    "unavailable": (
        503, google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), {},
        UpstreamServerError, 503, "upstream_error", "The model is overloaded. Please try again later.", None, {}),
    "internal": (
        500, google_error(500, "INTERNAL", "An internal error has occurred."), {},
        UpstreamServerError, 502, "upstream_error", "An internal error has occurred.", None, {}),
    "deadline exceeded": (
        504, google_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), {},
        UpstreamTimeoutError, 504, "upstream_timeout", "Deadline expired before operation could complete.", None, {}),
    "not json": (
        502, "<html>Bad Gateway</html>", {},
        UpstreamServerError, 502, "upstream_error", "The upstream provider failed with HTTP 502.", None, {}),
    "vertex array wrapper": (
        429, [google_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted.")], {},
        UpstreamRateLimitError, 429, "rate_limit_exceeded", "Resource exhausted.", None, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_google_errors_map_to_gatehouse_classes(google, gemini, deadline, case):
    status, body, headers, kind, status_code, code, message, retry_after, out_headers = CASES[case]
    google.fail_next(status=status, body=body, headers=headers)
    with pytest.raises(kind) as caught:
        gemini.chat(gemini_target(google), BODY, deadline)
    error = caught.value
    assert type(error) is kind
    assert (error.status_code, error.code, error.message, error.retry_after) == (status_code, code, message,
                                                                                  retry_after)
    assert error.headers == out_headers
    assert error.retryable == (kind in (UpstreamRateLimitError, UpstreamServerError, UpstreamTimeoutError))
    assert "AIza" not in str(error.envelope())


def test_a_wrong_api_key_is_an_upstream_auth_error_that_does_not_reveal_the_key(google, gemini, deadline):
    """Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID, not 401."""
    wrong = "AIza-wrong-key-that-must-not-leak"
    with pytest.raises(UpstreamAuthenticationError) as caught:
        gemini.chat(gemini_target(google, api_key=wrong), BODY, deadline)
    assert only_request(google).headers["x-goog-api-key"] == wrong
    assert caught.value.status_code == 502 and caught.value.failover
    assert caught.value.envelope() == {"error": {"message": AUTH_MESSAGE, "type": "upstream_authentication_error",
                                                 "param": None, "code": "upstream_authentication_failed"}}


def test_a_hanging_upstream_times_out(google, gemini):
    google.fail_next(kind="hang", seconds=1.0)
    with pytest.raises(UpstreamTimeoutError):
        gemini.chat(gemini_target(google), BODY, Deadline.after(0.3))


def test_a_reset_connection_is_a_connection_error(google, gemini, deadline):
    google.fail_next(kind="reset")
    with pytest.raises(UpstreamConnectionError):
        gemini.chat(gemini_target(google), BODY, deadline)
