"""The version stamps each worker watches, read together at most every `GATEWAY_REGISTRY_CHECK_SECONDS`.

Deployments and keys are served from memory; a change anywhere (admin, API, another instance) bumps
its scope's version in the database. One single-row-per-scope read every half second per worker tells
every in-memory cache whether it is stale: no query per request, changes visible within a second.
"""
from __future__ import annotations

import threading
import time

from django.conf import settings

from models_registry.selectors import versions_read


class _VersionWatch:
    def __init__(self) -> None:
        self.versions: dict[int, int] | None = None
        self.checked_at = 0.0
        self.lock = threading.Lock()

    def _fresh(self) -> bool:
        return self.versions is not None and \
            time.monotonic() - self.checked_at < settings.GATEWAY_REGISTRY_CHECK_SECONDS

    def current(self) -> dict[int, int]:
        """The versions as of at most one check interval ago; raises `DatabaseError` when unreadable.

        One read at a time: under gevent the query yields, and requests arriving meanwhile wait (briefly) for
        its answer rather than trust versions older than the interval. If the database stalls, they stop
        waiting after a second and use what this worker last read.
        """
        if self._fresh():
            return self.versions
        if not self.lock.acquire(timeout=1.0):
            if self.versions is not None:
                return self.versions
            return versions_read()
        try:
            if not self._fresh():
                try:
                    self.versions = versions_read()
                finally:
                    self.checked_at = time.monotonic()  # on failure too: a down database is not asked every time
        finally:
            self.lock.release()
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
