"""Config sync (add, update, remove config rows; leave API and admin rows alone) and the in-memory snapshot."""
from __future__ import annotations

import pytest

from models_registry.config import parse_config
from models_registry.models import Deployment, RegistryState
from models_registry.secrets import decrypt_secrets, encrypt_secrets
from models_registry.selectors import registry_version_get
from models_registry.services import deployments_sync_from_config
from models_registry.snapshot import current_snapshot, forget_snapshot

pytestmark = pytest.mark.django_db


def _entry(group: str, model: str, *, model_id: str | None = None, **params) -> dict:
    entry = {"model_name": group, "litellm_params": {"model": model, **params}}
    if model_id:
        entry["model_info"] = {"id": model_id}
    return entry


def _sync(*entries: dict) -> dict[str, int]:
    return deployments_sync_from_config(specs=parse_config({"model_list": list(entries)}).deployments)


def _api_row(**fields) -> Deployment:
    defaults = {"model_name": "gpt-4o", "provider": "openai", "provider_model": "gpt-4o",
                "litellm_params": {"model": "openai/gpt-4o", "api_base": "https://api.example/v1"},
                "encrypted_secrets": encrypt_secrets({"api_key": "sk-api"}), "model_info": {"team": "x"},
                "mode": "chat", "rpm": 5, "source": "api"}
    return Deployment.objects.create(**{**defaults, **fields})


def _row_state(row_id: str) -> dict:
    return Deployment.objects.filter(id=row_id).values().get()


def test_first_sync_adds_every_entry_with_all_its_fields():
    counts = _sync(
        _entry("gpt-4o", "openai/gpt-4o", model_id="primary", api_base="https://api.example/v1", api_key="sk-one",
               timeout=20, rpm=100, tpm=2000, weight=3, order=2),
        _entry("embed", "mock/text-embedding-3-small", mock_embedding_dimensions=8),
    )

    assert counts == {"added": 2, "updated": 0, "removed": 0}
    primary = Deployment.objects.get(id="primary")
    assert (primary.model_name, primary.provider, primary.provider_model, primary.mode, primary.source,
            primary.enabled, primary.rpm, primary.tpm, primary.weight, primary.order) == \
        ("gpt-4o", "openai", "gpt-4o", "chat", "config", True, 100, 2000, 3.0, 2)
    assert primary.litellm_params == {"model": "openai/gpt-4o", "api_base": "https://api.example/v1", "timeout": 20,
                                      "rpm": 100, "tpm": 2000, "weight": 3, "order": 2}
    assert decrypt_secrets(primary.encrypted_secrets) == {"api_key": "sk-one"}
    assert primary.model_info == {}  # the id is the primary key, not repeated in model_info
    embed = Deployment.objects.get(model_name="embed")
    assert (embed.provider, embed.provider_model, embed.mode, embed.encrypted_secrets, embed.weight, embed.order) == \
        ("mock", "text-embedding-3-small", "embedding", "", None, None)
    assert Deployment.objects.count() == 2


def test_resync_of_an_unchanged_file_changes_nothing_but_the_version():
    entries = (_entry("a", "mock/a", api_key="sk-a"), _entry("b", "mock/b", rpm=5))
    _sync(*entries)
    before = {row["id"]: row for row in Deployment.objects.values()}
    version = registry_version_get()

    assert _sync(*entries) == {"added": 0, "updated": 0, "removed": 0}

    assert {row["id"]: row for row in Deployment.objects.values()} == before  # updated_at included
    assert registry_version_get() == version + 1


def test_changed_limits_and_keys_update_the_same_row():
    _sync(_entry("a", "mock/a", api_key="sk-old", rpm=5))
    (row_id,) = Deployment.objects.values_list("id", flat=True)

    assert _sync(_entry("a", "mock/a", api_key="sk-old", rpm=50, weight=2)) == \
        {"added": 0, "updated": 1, "removed": 0}
    assert _sync(_entry("a", "mock/a", api_key="sk-new", rpm=50, weight=2)) == \
        {"added": 0, "updated": 1, "removed": 0}

    row = Deployment.objects.get()
    assert row.id == row_id
    assert (row.rpm, row.weight) == (50, 2.0)
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "sk-new"}


def test_a_changed_model_info_or_mode_updates_the_row():
    _sync(_entry("a", "mock/a", model_id="a1"))

    counts = deployments_sync_from_config(specs=parse_config({"model_list": [
        {"model_name": "a", "litellm_params": {"model": "mock/a"}, "model_info": {"id": "a1", "mode": "batch",
                                                                                  "owner": "ml"}},
    ]}).deployments)

    assert counts == {"added": 0, "updated": 1, "removed": 0}
    row = Deployment.objects.get(id="a1")
    assert (row.mode, row.model_info) == ("batch", {"mode": "batch", "owner": "ml"})


def test_entries_removed_from_the_file_disappear():
    _sync(_entry("a", "mock/a", model_id="a"), _entry("b", "mock/b", model_id="b"), _entry("c", "mock/c",
                                                                                         model_id="c"))

    assert _sync(_entry("b", "mock/b", model_id="b")) == {"added": 0, "updated": 0, "removed": 2}
    assert list(Deployment.objects.values_list("id", flat=True)) == ["b"]
    assert _sync() == {"added": 0, "updated": 0, "removed": 1}
    assert Deployment.objects.count() == 0


def test_add_update_and_remove_in_one_sync():
    _sync(_entry("a", "mock/a", model_id="a", rpm=1), _entry("b", "mock/b", model_id="b"))

    counts = _sync(_entry("a", "mock/a", model_id="a", rpm=2), _entry("c", "mock/c", model_id="c"))

    assert counts == {"added": 1, "updated": 1, "removed": 1}
    assert dict(Deployment.objects.values_list("id", "rpm")) == {"a": 2, "c": None}


def test_api_and_admin_rows_are_left_untouched():
    api_row = _api_row(id="from-api")
    admin_row = _api_row(id="from-admin", source="admin", model_name="other", enabled=False)
    before = {row_id: _row_state(row_id) for row_id in ("from-api", "from-admin")}

    _sync(_entry("gpt-4o", "openai/gpt-4o", model_id="from-config"))
    _sync(_entry("gpt-4o", "openai/gpt-4o", model_id="from-config", rpm=9))
    _sync()

    assert {row_id: _row_state(row_id) for row_id in ("from-api", "from-admin")} == before
    assert set(Deployment.objects.values_list("id", flat=True)) == {api_row.id, admin_row.id}


def test_duplicate_entries_become_separate_rows_and_stay_stable():
    entry = _entry("g", "mock/g")
    _sync(entry, entry)
    ids = set(Deployment.objects.values_list("id", flat=True))

    assert _sync(entry, entry) == {"added": 0, "updated": 0, "removed": 0}
    assert len(ids) == 2
    assert set(Deployment.objects.values_list("id", flat=True)) == ids


def test_a_config_entry_takes_over_an_api_row_with_the_same_id():
    _api_row(id="shared")

    assert _sync(_entry("g", "mock/g", model_id="shared")) == {"added": 0, "updated": 1, "removed": 0}

    row = Deployment.objects.get(id="shared")
    assert (row.source, row.model_name, row.provider, row.provider_model, row.encrypted_secrets, row.rpm) == \
        ("config", "g", "mock", "g", "", None)


def test_every_sync_bumps_the_registry_version():
    assert registry_version_get() == 0
    assert not RegistryState.objects.exists()

    _sync(_entry("a", "mock/a"))
    assert registry_version_get() == 1
    _sync(_entry("a", "mock/a"))
    assert registry_version_get() == 2
    _sync()
    assert registry_version_get() == 3
    assert RegistryState.objects.count() == 1


# --- snapshot ------------------------------------------------------------------------------------------


def test_snapshot_rebuilds_when_the_version_moves(settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0
    _sync(_entry("a", "mock/a", model_id="a1"))

    first = current_snapshot()
    assert (first.version, list(first.groups), list(first.by_id)) == (1, ["a"], ["a1"])
    assert current_snapshot() is first  # version unchanged: the same snapshot

    _sync(_entry("a", "mock/a", model_id="a1"), _entry("b", "mock/b", model_id="b1"))

    second = current_snapshot()
    assert second is not first
    assert (second.version, sorted(second.groups), sorted(second.by_id)) == (2, ["a", "b"], ["a1", "b1"])


def test_snapshot_is_not_read_from_the_database_between_checks(settings, django_assert_num_queries):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 3600
    _sync(_entry("a", "mock/a", model_id="a1"))
    first = current_snapshot()
    _sync(_entry("b", "mock/b", model_id="b1"))

    with django_assert_num_queries(0):
        for _ in range(50):
            assert current_snapshot() is first
    assert list(first.groups) == ["a"]  # stale until the next check, by design

    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0
    assert list(current_snapshot().groups) == ["b"]


def test_a_check_with_an_unchanged_version_reads_only_the_version(settings, django_assert_num_queries):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0
    _sync(_entry("a", "mock/a"))
    first = current_snapshot()

    with django_assert_num_queries(1):
        assert current_snapshot() is first


def test_forget_snapshot_forces_a_rebuild(settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 3600
    _sync(_entry("a", "mock/a"))
    first = current_snapshot()

    forget_snapshot()

    assert current_snapshot() is not first


def test_snapshot_holds_enabled_rows_of_every_source_with_their_routing_values(settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0
    _api_row(id="api-enabled", rpm=40, weight=None)
    _api_row(id="api-disabled", enabled=False)
    _sync(_entry("gpt-4o", "openai/gpt-4o", model_id="cfg", api_base="https://cfg.example/v1", api_key="sk-cfg",
                 api_version="v9", organization="org-9", timeout=7, stream_timeout=2, weight=3, order=1,
                 extra_headers={"X-Team": "t"}))

    snapshot = current_snapshot()

    assert sorted(snapshot.by_id) == ["api-enabled", "cfg"]
    assert sorted(d.id for d in snapshot.group("gpt-4o")) == ["api-enabled", "cfg"]
    assert snapshot.group("missing") == ()
    config_deployment = snapshot.by_id["cfg"]
    assert (config_deployment.weight, config_deployment.order, config_deployment.timeout,
            config_deployment.stream_timeout, config_deployment.rpm) == (3.0, 1, 7.0, 2.0, None)
    target = config_deployment.target()
    assert (target.deployment_id, target.model_group, target.provider, target.model, target.api_base, target.api_key,
            target.api_version, target.organization) == \
        ("cfg", "gpt-4o", "openai", "gpt-4o", "https://cfg.example/v1", "sk-cfg", "v9", "org-9")
    assert target.params["extra_headers"] == {"X-Team": "t"}
    api_deployment = snapshot.by_id["api-enabled"]
    assert (api_deployment.weight, api_deployment.order, api_deployment.target().api_key) == (40.0, 2**31, "sk-api")
