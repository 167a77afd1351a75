"""Access tokens for Vertex AI from service-account credentials, cached and shared across requests.

A deployment's `vertex_credentials` is a service-account key: its JSON (a string or a mapping) or the
path of a file holding it (`os.environ/` references are already resolved by the registry). The key
signs a JWT that `google-auth` exchanges at the credentials' own `token_uri` for an access token,
which is then sent as a bearer token.

Tokens are cached per credentials, keyed by a digest of the JSON as configured (a mapping by its
sorted dump; a file by its path, whose contents are read again at each refresh so a rotated file is
picked up), so deployments sharing a key share its token. A token is reused until
`REFRESH_MARGIN_SECONDS` before they expire. A lock per credentials makes concurrent requests (threads
or greenlets: gevent patches `threading`) wait for one refresh instead of each starting its own.
The token request goes through `google-auth`'s `requests` transport on the gateway's pooled session
(cooperative under gevent) and is bounded by the calling request's deadline. `google-auth` itself
retries a token endpoint that answers 5xx a couple of times; nothing else is retried here.

Errors never repeat the key or the token endpoint's text: a key that cannot be read is a
misconfigured deployment, a refused key an upstream authentication failure.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import orjson
from google.oauth2 import service_account

from providers.errors import (
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamConnectionError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.http import Deadline, session

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# A token this close to its expiry is replaced before use: a request may run for minutes after.
REFRESH_MARGIN_SECONDS = 60.0
TOKEN_REQUEST_TIMEOUT_SECONDS = 30.0


class CredentialsUnusableError(ProviderError):
    """The deployment's `vertex_credentials` is not a readable service-account key: the operator must fix it.

    Another deployment of the group may still work, so the router fails over, as for a missing secret.
    """

    failover = True
    status_code = 503
    type = "api_error"
    code = "deployment_misconfigured"


@dataclass(slots=True)
class GoogleToken:
    """An access token and the project its credentials belong to (the default `vertex_project`)."""

    token: str
    project_id: str | None


@dataclass(slots=True)
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    credentials: service_account.Credentials | None = None
    project_id: str | None = None
    token: str | None = None
    expires_at: float = 0.0  # time.monotonic()
    refreshes: int = 0


_entries: dict[str, _Entry] = {}
_entries_lock = threading.Lock()


def service_account_token(credentials: Any, deadline: Deadline, *, label: str = "") -> GoogleToken:
    """A valid access token for `credentials`, from the cache or freshly exchanged.

    `label` names the deployment in error messages (never the key itself).
    """
    key = _cache_key(credentials)
    entry = _entries.get(key)
    if entry is None:
        with _entries_lock:
            entry = _entries.setdefault(key, _Entry())
    token = entry.token
    if token is not None and entry.expires_at - time.monotonic() > REFRESH_MARGIN_SECONDS:
        return GoogleToken(token, entry.project_id)
    if not entry.lock.acquire(timeout=max(0.0, deadline.remaining())):
        raise UpstreamTimeoutError("Timed out waiting for a Vertex AI access token.")
    try:
        # Another request may have refreshed it while this one waited for the lock.
        if entry.token is not None and entry.expires_at - time.monotonic() > REFRESH_MARGIN_SECONDS:
            return GoogleToken(entry.token, entry.project_id)
        _refresh(entry, credentials, deadline, label)
        return GoogleToken(entry.token, entry.project_id)
    finally:
        entry.lock.release()


def forget_tokens() -> None:
    """Drop every cached token (tests; an operator rotating a key needs nothing: new key, new digest)."""
    with _entries_lock:
        _entries.clear()


def _cache_key(credentials: Any) -> str:
    if isinstance(credentials, dict):
        return "json:" + hashlib.sha256(orjson.dumps(credentials, option=orjson.OPT_SORT_KEYS)).hexdigest()
    if isinstance(credentials, str) and credentials.strip():
        text = credentials.strip()
        kind = "json:" if text.startswith("{") else "file:"
        return kind + hashlib.sha256(text.encode("utf-8")).hexdigest()
    raise CredentialsUnusableError("This Vertex AI deployment has no vertex_credentials configured.")


def _refresh(entry: _Entry, credentials: Any, deadline: Deadline, label: str) -> None:
    where = f" of deployment '{label}'" if label else ""
    loaded = entry.credentials
    if loaded is None or _is_path(credentials):
        info = _service_account_info(credentials, where)
        try:
            loaded = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, TypeError, KeyError, google.auth.exceptions.GoogleAuthError) as error:
            raise CredentialsUnusableError(
                f"The vertex_credentials{where} are not a usable service-account key "
                "(a field is missing or the private key cannot be read).") from error
        entry.credentials, entry.project_id = loaded, info.get("project_id")
    started = time.monotonic()
    try:
        loaded.refresh(_TokenTransport(deadline))
    except google.auth.exceptions.RefreshError as error:
        if getattr(error, "retryable", False):
            raise UpstreamServerError(f"The Google token endpoint failed{where}; try again.") from error
        raise UpstreamAuthenticationError(
            f"Google refused the Vertex AI service-account credentials{where} "
            f"({_oauth_error_code(error)}); the gateway operator must fix them.") from error
    except google.auth.exceptions.TransportError as error:
        raise UpstreamConnectionError(f"Could not reach the Google token endpoint{where}.") from error
    if not loaded.token:
        raise UpstreamAuthenticationError(f"The Google token endpoint returned no access token{where}.")
    entry.token = loaded.token
    entry.expires_at = started + _seconds_until(loaded.expiry)
    entry.refreshes += 1


def _is_path(credentials: Any) -> bool:
    return isinstance(credentials, str) and not credentials.strip().startswith("{")


def _service_account_info(credentials: Any, where: str) -> dict:
    if isinstance(credentials, dict):
        info = credentials
    else:
        text = credentials.strip()
        if not text.startswith("{"):
            try:
                with open(text, "rb") as handle:
                    text = handle.read().decode("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise CredentialsUnusableError(
                    f"The vertex_credentials{where} name a file that cannot be read.") from error
        try:
            info = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise CredentialsUnusableError(f"The vertex_credentials{where} are not valid JSON.") from error
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise CredentialsUnusableError(
            f"The vertex_credentials{where} are not a service-account key (\"type\": \"service_account\").")
    return info


def _seconds_until(expiry: datetime | None) -> float:
    """Seconds from now until google-auth's `expiry` (naive UTC in google-auth; aware handled too)."""
    if expiry is None:
        return 3600.0
    now = datetime.now(UTC)
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return max(0.0, (expiry - now).total_seconds())


def _oauth_error_code(error: google.auth.exceptions.RefreshError) -> str:
    """The OAuth `error` code of a refused exchange (e.g. `invalid_grant`): safe to show, unlike its text."""
    details = error.args[1] if len(error.args) > 1 else None
    code = details.get("error") if isinstance(details, dict) else None
    return str(code) if isinstance(code, str) and code.replace("_", "").isalnum() else "refused"


class _TokenTransport(google.auth.transport.requests.Request):
    """google-auth's `requests` transport on the process's pooled session, bounded by the call's deadline."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__(session=session())
        self.deadline = deadline

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        remaining = self.deadline.remaining()
        if remaining <= 0:
            self.deadline.check()  # our own timeout error passes through google-auth untouched
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=min(TOKEN_REQUEST_TIMEOUT_SECONDS, remaining), **kwargs)

    def __del__(self) -> None:
        """The session is the process's shared one: it must outlive this transport (the base class closes it)."""
