"""Counters every worker and instance agrees on: requests and tokens per window, calls in flight.

Rate limits (of keys, teams and deployments), budgets' running spend, cooldowns and in-flight counts
all reduce to "add to a number that expires". They live behind Django's cache configuration:

- Redis (`REDIS_URL`): one pipelined round trip per update (`INCRBY` + `EXPIRE NX`), so every worker
  and instance sees the same numbers. If Redis stops answering, counting falls back to this process
  (limits degrade to per-worker, with a warning) instead of failing requests.
- local memory (the default, one process): a plain dict, no pickling, no locks needed under gevent.
- any other cache backend: Django's `add` + `incr`.

Amounts are integers; callers count money in micro-dollars.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("gatehouse.counters")

# How long a counter survives after its first increment when the caller gives no window.
DEFAULT_TTL_SECONDS = 3600
REDIS_RETRY_SECONDS = 5.0


def window_start(window_seconds: int, now: float | None = None) -> int:
    """The start of the fixed window holding `now` (epoch seconds)."""
    now = time.time() if now is None else now
    return int(now // window_seconds) * window_seconds


def window_key(scope: str, window_seconds: int, now: float | None = None) -> tuple[str, int]:
    """(key, seconds until the window ends) for the current fixed window of `scope`."""
    now = time.time() if now is None else now
    start = window_start(window_seconds, now)
    return f"{scope}:{start}", max(1, int(start + window_seconds - now + 0.999))


class _LocalCounters:
    """Counters of this process only (the default cache is per process anyway)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def add(self, key: str, amount: int, ttl: int) -> int:
        now = time.monotonic()
        with self._lock:
            value, expires = self._values.get(key, (0, 0.0))
            if expires <= now:
                value, expires = 0, now + ttl
            value += amount
            self._values[key] = (value, expires)
            if now >= self._next_sweep:
                self._sweep(now)
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, int]:
        now = time.monotonic()
        found = {}
        for key in keys:
            value, expires = self._values.get(key, (0, 0.0))
            if expires > now:
                found[key] = value
        return found

    def set(self, key: str, value: int, ttl: int) -> None:
        with self._lock:
            self._values[key] = (value, time.monotonic() + ttl)

    def delete(self, key: str) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 60
        for key in [key for key, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]


class _CacheCounters:
    """Any Django cache backend: `add` creates the key with its expiry, `incr` moves it."""

    def add(self, key: str, amount: int, ttl: int) -> int:
        cache.add(key, 0, ttl)
        try:
            return cache.incr(key, amount)
        except ValueError:  # expired between the two calls
            cache.add(key, amount, ttl)
            return amount

    def get_many(self, keys: Iterable[str]) -> dict[str, int]:
        return {key: int(value) for key, value in cache.get_many(list(keys)).items()}

    def set(self, key: str, value: int, ttl: int) -> None:
        cache.set(key, value, ttl)

    def delete(self, key: str) -> None:
        cache.delete(key)

    def clear(self) -> None:
        cache.clear()


class _RedisCounters:
    """Redis through the Django cache's own client (same URL, same key prefix and version)."""

    def __init__(self, backend: RedisCache, fallback: _LocalCounters) -> None:
        self._backend = backend
        self._fallback = fallback
        self._down_until = 0.0

    def _client(self):
        return self._backend._cache.get_client(write=True)

    def _key(self, key: str) -> str:
        return self._backend.make_and_validate_key(key)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, error: Exception) -> None:
        if self._available():
            logger.warning("Redis is unavailable (%s): counting in this process only for %.0f s; limits are "
                           "per worker until it is back", type(error).__name__, REDIS_RETRY_SECONDS)
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS

    def add(self, key: str, amount: int, ttl: int) -> int:
        if self._available():
            try:
                pipe = self._client().pipeline(transaction=False)
                full_key = self._key(key)
                pipe.incrby(full_key, amount)
                pipe.expire(full_key, ttl, nx=True)
                return int(pipe.execute()[0])
            except Exception as error:
                self._failed(error)
        return self._fallback.add(key, amount, ttl)

    def get_many(self, keys: Iterable[str]) -> dict[str, int]:
        keys = list(keys)
        if self._available() and keys:
            try:
                values = self._client().mget([self._key(key) for key in keys])
                return {key: int(value) for key, value in zip(keys, values, strict=True) if value is not None}
            except Exception as error:
                self._failed(error)
        return self._fallback.get_many(keys)

    def set(self, key: str, value: int, ttl: int) -> None:
        if self._available():
            try:
                self._client().set(self._key(key), int(value), ex=ttl)
                return
            except Exception as error:
                self._failed(error)
        self._fallback.set(key, value, ttl)

    def delete(self, key: str) -> None:
        if self._available():
            try:
                self._client().delete(self._key(key))
            except Exception as error:
                self._failed(error)
        self._fallback.delete(key)

    def clear(self) -> None:
        self._fallback.clear()
        try:
            self._backend.clear()
        except Exception as error:
            self._failed(error)


_local = _LocalCounters()
_counters: _LocalCounters | _CacheCounters | _RedisCounters | None = None


def counters() -> _LocalCounters | _CacheCounters | _RedisCounters:
    """The counter store for this process, chosen from the default cache's backend."""
    global _counters
    if _counters is None:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            _counters = _RedisCounters(backend, _local)
        elif isinstance(backend, LocMemCache):
            _counters = _local
        else:
            _counters = _CacheCounters()
    return _counters


def counter_add(key: str, amount: int = 1, *, ttl: int = DEFAULT_TTL_SECONDS) -> int:
    """Add `amount` (may be negative) and return the new value; a new key expires after `ttl` seconds."""
    return counters().add(key, amount, ttl)


def counter_get_many(keys: Iterable[str]) -> dict[str, int]:
    """Current values of the keys that exist (missing or expired keys are absent)."""
    return counters().get_many(keys)


def counter_get(key: str) -> int:
    return counters().get_many([key]).get(key, 0)


def counter_set(key: str, value: int, *, ttl: int = DEFAULT_TTL_SECONDS) -> None:
    counters().set(key, value, ttl)


def counter_delete(key: str) -> None:
    counters().delete(key)


def counters_reset() -> None:
    """Forget every counter (tests; an operator's reset). On Redis this clears the whole cache."""
    counters().clear()
