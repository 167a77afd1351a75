"""Provider secrets: encrypted at rest, resolved at call time.

A value written as `os.environ/NAME` is a reference, kept as such and read from the environment on
every call (a rotated variable needs no restart). Any other value of a secret parameter is encrypted
with Fernet under a key derived from `GATEWAY_ENCRYPTION_KEY` (or `SECRET_KEY`).
"""
from __future__ import annotations

import base64
import hashlib
import os
from functools import cache

import orjson
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

ENV_PREFIX = "os.environ/"

# litellm_params that are credentials: never stored in plain text, never returned by the API.
SECRET_PARAM_NAMES = frozenset({
    "api_key", "azure_ad_token", "client_secret", "vertex_credentials", "aws_secret_access_key",
    "aws_session_token", "aws_access_key_id", "password",
})


class SecretUnavailableError(Exception):
    """A secret could not be decrypted (the key changed) or its environment variable is unset."""


def is_env_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(ENV_PREFIX)


def resolve_value(value):
    """The value itself, or the named environment variable's value for an `os.environ/NAME` reference."""
    if is_env_reference(value):
        name = value[len(ENV_PREFIX):]
        resolved = os.environ.get(name)
        if resolved is None:
            raise SecretUnavailableError(f"environment variable {name} is not set")
        return resolved
    return value


@cache
def _fernet() -> Fernet:
    material = getattr(settings, "GATEWAY_ENCRYPTION_KEY", "") or os.environ.get("GATEWAY_ENCRYPTION_KEY") or \
        settings.SECRET_KEY
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode("utf-8")).digest()))


def encrypt_secrets(secrets: dict[str, str]) -> str:
    return _fernet().encrypt(orjson.dumps(secrets)).decode("ascii") if secrets else ""


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return orjson.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError) as error:
        raise SecretUnavailableError("stored secrets cannot be decrypted with the current key") from error


def split_secrets(params: dict) -> tuple[dict, dict]:
    """Separate literal secrets (to encrypt) from everything else (stored as written, references included)."""
    public, secret = {}, {}
    for key, value in params.items():
        if key in SECRET_PARAM_NAMES and value not in (None, "") and not is_env_reference(value):
            secret[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
        else:
            public[key] = value
    return public, secret


def mask(value: str) -> str:
    """A display form that proves a secret is set without revealing it."""
    if is_env_reference(value):
        return value
    return f"{value[:3]}…{value[-2:]}" if len(value) > 8 else "••••"
