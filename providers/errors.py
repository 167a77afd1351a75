"""The error hierarchy every layer raises, and how each maps onto OpenAI's error envelope.

`GatewayError` is the root: anything carrying `status_code`, `type`, `code` and `param` renders as
`{"error": {"message", "type", "param", "code"}}`. It lives in the bottom layer so that providers,
the router and the API views all raise the same thing. `ProviderError` and its subclasses are what
an upstream call can produce; `retryable` tells the router whether another attempt may succeed.
"""
from __future__ import annotations


class GatewayError(Exception):
    """An error with a definite HTTP status and an OpenAI-shaped body."""

    status_code = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        type: str | None = None,  # noqa: A002 - mirrors the envelope's field name
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(GatewayError):
    status_code = 400
    type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    type = "permission_denied"


class NotFoundError(GatewayError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class RateLimitError(GatewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ProviderError(GatewayError):
    """Something an upstream provider answered or failed to answer.

    `retryable` errors (rate limits, server errors, timeouts, broken connections) may succeed on
    another attempt or another deployment; terminal ones (bad request, not found) never will.
    """

    retryable = False
    # Another deployment might succeed where this one failed (its credentials, its model, its outage).
    failover = False
    type = "api_error"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RetryableProviderError(ProviderError):
    retryable = True
    failover = True


class UpstreamRateLimitError(RetryableProviderError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamServerError(RetryableProviderError):
    status_code = 502
    type = "api_error"
    code = "upstream_error"


class UpstreamTimeoutError(RetryableProviderError):
    status_code = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamConnectionError(RetryableProviderError):
    status_code = 502
    type = "api_error"
    code = "upstream_connection_error"


class UpstreamBadRequestError(ProviderError):
    status_code = 400
    type = "invalid_request_error"


class ContextWindowExceededError(UpstreamBadRequestError):
    """The provider says the prompt plus the requested output do not fit the model's context.

    Still the caller's 400 (no deployment of the same model would accept it), but a group with a
    larger context may: the router sends it to `context_window_fallbacks`.
    """

    code = "context_length_exceeded"


class ContentPolicyViolationError(UpstreamBadRequestError):
    """The provider refused the request on content policy grounds (OpenAI's moderation, Azure's filter).

    Retrying the same group is pointless; another provider's policy may differ, so the router tries
    `content_policy_fallbacks`.
    """

    code = "content_policy_violation"


class UpstreamAuthenticationError(ProviderError):
    """The provider refused the deployment's credentials. The caller did nothing wrong, and the
    message never repeats the provider's text (it may echo part of the key)."""

    failover = True
    status_code = 502
    type = "upstream_authentication_error"
    code = "upstream_authentication_failed"


class UpstreamNotFoundError(ProviderError):
    failover = True
    status_code = 404
    type = "invalid_request_error"
    code = "upstream_model_not_found"


class NoDeploymentAvailableError(RateLimitError):
    """Every deployment of a group is cooling down or over its own limits: nothing was sent upstream.

    A 429 with `Retry-After` (when the first deployment comes back), so SDKs wait and try again.
    """

    code = "no_deployment_available"

    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:
        seconds = max(1, int(retry_after + 0.999))
        headers = {"Retry-After": str(seconds), **(kwargs.pop("headers", None) or {})}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = float(seconds)


class UnsupportedOperationError(GatewayError):
    status_code = 400
    type = "invalid_request_error"
    code = "unsupported_operation"
