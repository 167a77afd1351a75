"""Key material: plaintext secrets, their keyed digests and masked forms, and public ids.

Only the HMAC-SHA256 digest (keyed by the gateway's SECRET_KEY) is stored: a database dump alone
does not let anyone call the gateway, and a lookup is one indexed equality, no per-row comparison.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from functools import lru_cache

from django.conf import settings

KEY_PREFIX = "sk-"
SECRET_BYTES = 24  # 32 url-safe characters after the prefix


def new_plaintext() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_key_id() -> str:
    """The stable public id of a key (LiteLLM's `token`): survives regeneration, reveals nothing."""
    return secrets.token_hex(16)


def new_team_id() -> str:
    return str(uuid.uuid4())


@lru_cache(maxsize=4)
def _digest_secret(secret_key: str) -> bytes:
    return hashlib.sha256(b"gatehouse-virtual-key:" + secret_key.encode("utf-8")).digest()


def key_digest(plaintext: str) -> str:
    """The stored form of a key; the same function finds it again."""
    return hmac.new(_digest_secret(settings.SECRET_KEY), plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


def masked(plaintext: str) -> str:
    """What lists and the admin show (`sk-...a1b2`): enough to recognise a key, useless to use it."""
    return f"{KEY_PREFIX}...{plaintext[-4:]}"


def looks_like_plaintext(value: str) -> bool:
    return value.startswith(KEY_PREFIX)
