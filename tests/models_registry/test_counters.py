"""Shared counters: local memory, Redis (shared by every client of the same server) and the fallback."""
from __future__ import annotations

import time

import pytest
from django.core.cache.backends.redis import RedisCache

from models_registry.counters import _LocalCounters, _RedisCounters, window_key, window_start
from tests.support.server import free_port

REDIS_URL = "redis://127.0.0.1:6379/9"


def redis_backend(url: str = REDIS_URL, prefix: str = "") -> RedisCache:
    backend = RedisCache(url, {"KEY_PREFIX": prefix or f"t{time.monotonic_ns()}"})
    return backend


def test_window_key_names_the_window_and_the_seconds_left():
    assert window_start(60, now=125.5) == 120
    assert window_key("rpm:d1", 60, now=125.5) == ("rpm:d1:120", 55)
    assert window_key("rpm:d1", 60, now=179.99) == ("rpm:d1:120", 1)
    assert window_key("rpm:d1", 60, now=180.0) == ("rpm:d1:180", 60)


def test_local_counters_add_read_and_expire():
    local = _LocalCounters()
    assert local.add("a", 2, ttl=60) == 2
    assert local.add("a", -1, ttl=60) == 1
    assert local.get_many(["a", "missing"]) == {"a": 1}
    local.set("b", 7, ttl=0)
    assert local.get_many(["b"]) == {}
    assert local.add("b", 1, ttl=60) == 1  # an expired counter starts again from zero


def test_redis_counters_are_shared_between_clients_and_expire():
    prefix = f"shared{time.monotonic_ns()}"
    first = _RedisCounters(redis_backend(prefix=prefix), _LocalCounters())
    second = _RedisCounters(redis_backend(prefix=prefix), _LocalCounters())
    assert first.add("rpm", 1, ttl=2) == 1
    assert second.add("rpm", 1, ttl=2) == 2
    assert first.get_many(["rpm", "other"]) == {"rpm": 2}
    client = first._client()
    ttl = client.ttl(first._key("rpm"))
    assert 0 < ttl <= 2  # set by the first increment, not pushed back by the second
    second.set("budget", 5, ttl=60)
    assert first.get_many(["budget"]) == {"budget": 5}
    first.delete("budget")
    assert second.get_many(["budget"]) == {}
    client.delete(first._key("rpm"))


def test_redis_counters_use_the_caches_key_prefix_so_the_cache_api_reads_them():
    backend = redis_backend()
    counters = _RedisCounters(backend, _LocalCounters())
    counters.add("seen", 3, ttl=30)
    assert backend.get("seen") == 3
    backend.delete("seen")


def test_an_unreachable_redis_degrades_to_this_process_with_one_warning(caplog):
    local = _LocalCounters()
    counters = _RedisCounters(redis_backend(f"redis://127.0.0.1:{free_port()}/0"), local)
    with caplog.at_level("WARNING", logger="gatehouse.counters"):
        assert counters.add("rpm", 1, ttl=60) == 1
        assert counters.add("rpm", 1, ttl=60) == 2
        assert counters.get_many(["rpm"]) == {"rpm": 2}
    warnings = [record for record in caplog.records if "Redis is unavailable" in record.getMessage()]
    assert len(warnings) == 1
    assert local.get_many(["rpm"]) == {"rpm": 2}


@pytest.mark.django_db
def test_version_stamps_are_read_together_and_cached_between_checks(django_assert_num_queries, settings):
    from models_registry.choices import VersionScope
    from models_registry.services import version_bump
    from models_registry.versions import current_version, forget_versions

    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 60
    forget_versions()
    version_bump(scope=VersionScope.KEYS)
    version_bump(scope=VersionScope.KEYS)
    with django_assert_num_queries(1):
        assert current_version(VersionScope.KEYS) == 2
        assert current_version(VersionScope.REGISTRY) == 0
    version_bump(scope=VersionScope.REGISTRY)
    with django_assert_num_queries(0):
        assert current_version(VersionScope.REGISTRY) == 0  # not re-read before the interval passes
    forget_versions()
    assert current_version(VersionScope.REGISTRY) == 1
