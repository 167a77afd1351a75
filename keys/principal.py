"""Who is calling, as the hot path sees it: immutable views built from the cache, never from a query.

A `KeyView` carries everything admission needs (models of the key and of its team, aliases, budget
and limits of both, expiry, blocked flags), so a request with a cached key touches no database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keys.choices import KeyRole
from keys.durations import Duration

ALL_PROXY_MODELS = "all-proxy-models"
ALL_TEAM_MODELS = "all-team-models"


@dataclass(frozen=True, slots=True)
class LimitScope:
    """The budget and rate limits of one scope, the key itself or its team (a key never exceeds its team)."""

    scope: str  # "key" or "team"
    id: str
    label: str  # how messages name it: the alias when there is one
    max_budget: float | None = None
    budget_duration: Duration | None = None
    budget_reset_at: datetime | None = None
    spend: float = 0.0  # as stored when the view was loaded; counters hold what was spent since
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None

    @property
    def limited(self) -> bool:
        return (self.max_budget is not None or self.rpm_limit is not None or self.tpm_limit is not None
                or self.max_parallel_requests is not None)


@dataclass(frozen=True, slots=True)
class KeyView:
    """A virtual key (and what of its team applies) as cached in each worker.

    `key_models` / `team_models` are the model groups each level allows; `None` means no restriction at
    that level (an empty list, `all-proxy-models`, or a key that defers to its team with `all-team-models`).
    """

    id: str
    key_name: str
    key_alias: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    user_id: str = ""
    role: str = KeyRole.INTERNAL_USER
    metadata: dict[str, Any] = field(default_factory=dict)
    key_models: frozenset[str] | None = None
    team_models: frozenset[str] | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    scopes: tuple[LimitScope, ...] = ()
    expires: datetime | None = None
    blocked: bool = False
    team_blocked: bool = False
    # Set when this view was found by the digest of the secret before a regeneration: valid until then.
    valid_until: datetime | None = None
    # The operator asked for this key's prompts and answers in its request log lines (off by default).
    log_prompts: bool = False

    @property
    def label(self) -> str:
        return self.key_alias or self.key_name

    @property
    def disable_fallbacks(self) -> bool:
        return bool(self.metadata.get("disable_fallbacks"))

    @property
    def limited(self) -> bool:
        return any(scope.limited for scope in self.scopes)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal of one request: the master key (`key is None`) or a virtual key."""

    key: KeyView | None = None

    @property
    def is_admin(self) -> bool:
        """The master key, or a virtual key with the `proxy_admin` role: may manage the gateway."""
        return self.key is None or self.key.role == KeyRole.PROXY_ADMIN


MASTER = Caller()
