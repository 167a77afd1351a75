"""Virtual keys as each worker serves them: an in-memory map from digest to `KeyView`.

An entry is trusted while the keys' version stamp (VersionScope.KEYS, re-read at most every half
second per worker) has not moved and its short TTL has not run out. Every key or team change bumps
the stamp, so a block or a model change is enforced everywhere within a second; the TTL only bounds
how stale the stored spend floor may be. Unknown keys are cached too, briefly, so a flood of wrong
keys costs no query per request. The second request with the same key runs no query at all.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from keys.budgets import limit_scope
from keys.models import VirtualKey
from keys.principal import ALL_PROXY_MODELS, ALL_TEAM_MODELS, KeyView, LimitScope
from keys.selectors import virtual_key_find_by_digest
from keys.tokens import key_digest
from models_registry.choices import VersionScope
from models_registry.versions import current_version
from providers.errors import GatewayError

logger = logging.getLogger("gatehouse.keys")

# How long an entry is trusted without a version change (`GATEWAY_KEY_CACHE_SECONDS`): this bounds only how
# stale the stored spend floor may be, since every change to keys or teams moves the version.
POSITIVE_TTL_SECONDS = 15.0
NEGATIVE_TTL_SECONDS = 5.0
MAX_ENTRIES = 100_000


class KeyStoreUnavailableError(GatewayError):
    status_code = 503
    type = "api_error"
    code = "key_store_unavailable"


@dataclass(slots=True)
class _Entry:
    view: KeyView | None
    version: int
    fresh_until: float


def allowed_set(models: list[str] | None, *, defers_to_team: bool) -> frozenset[str] | None:
    """The groups a model list allows, `None` when it does not restrict (empty, or a special value)."""
    if not models or ALL_PROXY_MODELS in models or (defers_to_team and ALL_TEAM_MODELS in models):
        return None
    return frozenset(model for model in models if model not in (ALL_PROXY_MODELS, ALL_TEAM_MODELS))


def key_view_from_row(row: VirtualKey, *, via_previous_secret: bool = False) -> KeyView:
    """Everything admission needs about a key and its team, resolved once per load."""
    team = row.team
    scopes: list[LimitScope] = [limit_scope(row, scope="key", label=row.key_alias or row.key_name)]
    if team is not None:
        scopes.append(limit_scope(team, scope="team", label=team.team_alias or team.id))
    return KeyView(
        id=row.id, key_name=row.key_name, key_alias=row.key_alias, team_id=row.team_id,
        team_alias=team.team_alias if team is not None else None, user_id=row.user_id, role=row.role,
        metadata=dict(row.metadata or {}),
        key_models=allowed_set(row.allowed_models, defers_to_team=True),
        team_models=allowed_set(team.allowed_models, defers_to_team=False) if team is not None else None,
        aliases={str(name): str(target) for name, target in (row.aliases or {}).items()},
        scopes=tuple(scopes), expires=row.expires, blocked=row.blocked,
        team_blocked=bool(team is not None and team.blocked),
        valid_until=row.previous_valid_until if via_previous_secret else None, log_prompts=row.log_prompts,
    )


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def lookup(self, plaintext: str) -> KeyView | None:
        """The key presented, or `None` when no key has this secret. Raises 503 only if the database is
        unreachable and this worker has never seen the key."""
        digest = key_digest(plaintext)
        entry = self._entries.get(digest)
        now = time.monotonic()
        try:
            version = current_version(VersionScope.KEYS)
        except DatabaseError:
            if entry is not None:
                return entry.view  # the database is down: keep serving what this worker knew
            raise KeyStoreUnavailableError("Keys cannot be checked: the database is unavailable.") from None
        if entry is not None and entry.version == version and entry.fresh_until > now:
            return entry.view
        try:
            row, via_previous = virtual_key_find_by_digest(digest, now=timezone.now())
        except DatabaseError:
            if entry is not None:
                return entry.view
            raise KeyStoreUnavailableError("Keys cannot be checked: the database is unavailable.") from None
        view = key_view_from_row(row, via_previous_secret=via_previous) if row is not None else None
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()  # a flood of distinct wrong keys: start over rather than grow without bound
        ttl = getattr(settings, "GATEWAY_KEY_CACHE_SECONDS", POSITIVE_TTL_SECONDS)
        if view is None:
            ttl = min(ttl, NEGATIVE_TTL_SECONDS)
        self._entries[digest] = _Entry(view, version, now + ttl)
        return view

    def clear(self) -> None:
        self._entries.clear()


_cache = KeyCache()


def key_lookup(plaintext: str) -> KeyView | None:
    return _cache.lookup(plaintext)


def key_cache_clear() -> None:
    """Forget every cached key in this worker (tests; the next request reloads from the database)."""
    _cache.clear()
