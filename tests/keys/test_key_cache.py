"""The per-worker key cache: what a view holds, when an entry is trusted (version unchanged and TTL not run
out), and that unknown keys are remembered too."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from keys.durations import Duration
from keys.key_cache import key_lookup
from keys.models import VirtualKey
from keys.principal import LimitScope
from keys.services import team_create, virtual_key_generate
from models_registry.choices import VersionScope
from models_registry.services import version_bump
from models_registry.versions import forget_versions

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _long_version_interval(settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 60


def test_a_view_holds_the_key_and_what_of_its_team_applies():
    team_create(fields={"team_alias": "Ops", "models": ["a", "b"], "max_budget": 9.0, "budget_duration": "1d",
                        "rpm_limit": 7, "metadata": {"x": 1}}, team_id="ops")
    issued = virtual_key_generate(fields={
        "key_alias": "svc", "team_id": "ops", "models": ["all-team-models"], "aliases": {"fast": "a"},
        "max_budget": 1.0, "tpm_limit": 50, "max_parallel_requests": 2, "user_id": "u",
        "expires": datetime(2040, 1, 1, tzinfo=UTC), "metadata": {"disable_fallbacks": True}})
    view = key_lookup(issued.plaintext)
    team = issued.key.team
    assert (view.id, view.key_alias, view.team_id, view.team_alias, view.user_id, view.role) == (
        issued.key.id, "svc", "ops", "Ops", "u", "internal_user")
    assert (view.key_models, view.team_models, view.aliases) == (None, frozenset({"a", "b"}), {"fast": "a"})
    assert (view.expires, view.blocked, view.team_blocked, view.valid_until) == (
        datetime(2040, 1, 1, tzinfo=UTC), False, False, None)
    assert view.disable_fallbacks is True
    assert view.scopes == (
        LimitScope(scope="key", id=issued.key.id, label="svc", max_budget=1.0, tpm_limit=50, max_parallel_requests=2),
        LimitScope(scope="team", id="ops", label="Ops", max_budget=9.0, budget_duration=Duration(1, "d"),
                   budget_reset_at=team.budget_reset_at, rpm_limit=7),
    )


def test_a_cached_key_is_served_without_queries_until_the_version_moves():
    issued = virtual_key_generate(fields={"rpm_limit": 1})
    assert key_lookup(issued.plaintext).scopes[0].rpm_limit == 1
    with transaction.atomic():  # another worker's change: only the version tells this one
        VirtualKey.objects.filter(id=issued.key.id).update(rpm_limit=2)
    with CaptureQueriesContext(connection) as unchanged:
        assert key_lookup(issued.plaintext).scopes[0].rpm_limit == 1
    assert unchanged.captured_queries == []
    version_bump(scope=VersionScope.KEYS)
    forget_versions()  # the half-second version check comes round
    assert key_lookup(issued.plaintext).scopes[0].rpm_limit == 2


def test_an_entry_is_reloaded_when_its_ttl_runs_out(settings):
    settings.GATEWAY_KEY_CACHE_SECONDS = 0.2
    issued = virtual_key_generate(fields={"max_budget": 5.0})
    assert key_lookup(issued.plaintext).scopes[0].spend == 0.0
    VirtualKey.objects.filter(id=issued.key.id).update(spend=1.25)  # a spend flush bumps no version
    assert key_lookup(issued.plaintext).scopes[0].spend == 0.0
    time.sleep(0.25)
    assert key_lookup(issued.plaintext).scopes[0].spend == 1.25


def test_an_unknown_key_is_remembered_until_keys_change():
    with CaptureQueriesContext(connection) as first:
        assert key_lookup("sk-unknown-to-the-gateway") is None
    assert len(first.captured_queries) >= 1
    with CaptureQueriesContext(connection) as second:
        assert key_lookup("sk-unknown-to-the-gateway") is None
    assert second.captured_queries == []
    issued = virtual_key_generate(fields={}, plaintext="sk-unknown-to-the-gateway")
    assert key_lookup("sk-unknown-to-the-gateway").id == issued.key.id  # the new version dropped the miss
