"""The version stamps each worker watches, read together at most every `GATEWAY_REGISTRY_CHECK_SECONDS`.

Deployments and keys are served from memory; a change anywhere (admin, API, another instance) bumps
its scope's version in the database. One single-row-per-scope read every half second per worker tells
every in-memory cache whether it is stale: no query per request, changes visible within a second.
"""
from __future__ import annotations

import time

from django.conf import settings

from models_registry.selectors import versions_read


class _VersionWatch:
    def __init__(self) -> None:
        self.versions: dict[int, int] | None = None
        self.checked_at = 0.0

    def current(self) -> dict[int, int]:
        """The versions as of at most one check interval ago; raises `DatabaseError` when unreadable."""
        now = time.monotonic()
        if self.versions is not None and now - self.checked_at < settings.GATEWAY_REGISTRY_CHECK_SECONDS:
            return self.versions
        self.checked_at = now  # on failure too: a down database is not asked again on every request
        self.versions = versions_read()
        return self.versions

    def forget(self) -> None:
        self.versions = None
        self.checked_at = 0.0


_watch = _VersionWatch()


def current_version(scope: int) -> int:
    """`scope`'s version (0 when never bumped), re-read from the database at most once per interval."""
    return _watch.current().get(scope, 0)


def forget_versions() -> None:
    """Make the next `current_version` read the database (tests, and right after a local write)."""
    _watch.forget()
