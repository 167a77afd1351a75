"""Who is calling, as the hot path sees it: immutable views built from the cache, never from a query."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keys.choices import KeyRole


@dataclass(frozen=True, slots=True)
class KeyView:
    """A virtual key (and what of its team applies) as cached in each worker."""

    id: str
    key_name: str
    key_alias: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    user_id: str = ""
    role: str = KeyRole.INTERNAL_USER
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal of one request: the master key (`key is None`) or a virtual key."""

    key: KeyView | None = None

    @property
    def is_master(self) -> bool:
        return self.key is None

    @property
    def is_admin(self) -> bool:
        """The master key, or a virtual key with the `proxy_admin` role: may manage the gateway."""
        return self.key is None or self.key.role == KeyRole.PROXY_ADMIN


MASTER = Caller()
