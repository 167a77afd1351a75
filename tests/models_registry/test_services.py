"""The registry's write services for live model management: create, update (merge and replace),
patch, delete; each in one transaction that bumps the registry version, with secrets encrypted."""
from __future__ import annotations

import pytest
from django.test.utils import override_settings

from models_registry.config import parse_config
from models_registry.models import Deployment
from models_registry.secrets import _fernet, decrypt_secrets
from models_registry.selectors import registry_version_get
from models_registry.services import (
    deployment_create,
    deployment_delete,
    deployment_patch,
    deployment_update,
    deployments_sync_from_config,
)
from models_registry.snapshot import current_snapshot
from providers.errors import GatewayError, InvalidRequestError, NotFoundError

pytestmark = pytest.mark.django_db

AZURE_PARAMS = {"model": "azure/eu-gpt", "api_base": "https://eu.example.com", "api_version": "2024-10-21",
                "api_key": "azure-secret-1", "azure_ad_token": "ad-token-1"}


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


def make(**overrides) -> Deployment:
    fields = {"model_name": "eu", "litellm_params": dict(AZURE_PARAMS), "model_info": {"id": "eu-1", "base_model":
                                                                                         "gpt-4o"}}
    fields.update(overrides)
    return deployment_create(**fields)


def test_create_encrypts_every_literal_secret_and_bumps_the_version():
    before = registry_version_get()

    row = make(source="admin", enabled=False)

    assert registry_version_get() == before + 1
    row.refresh_from_db()
    assert (row.id, row.source, row.enabled, row.provider, row.provider_model) == ("eu-1", "admin", False, "azure",
                                                                                   "eu-gpt")
    assert row.litellm_params == {"model": "azure/eu-gpt", "api_base": "https://eu.example.com",
                                  "api_version": "2024-10-21"}
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "azure-secret-1", "azure_ad_token": "ad-token-1"}
    assert "azure-secret-1" not in row.encrypted_secrets
    assert current_snapshot().by_id == {}  # disabled: stored, not routed


def test_a_structured_credential_is_encrypted_as_json():
    row = deployment_create(model_name="m", litellm_params={"model": "mock/m",
                                                            "vertex_credentials": {"type": "service_account"}})
    assert decrypt_secrets(row.encrypted_secrets) == {"vertex_credentials": '{"type":"service_account"}'}
    assert "vertex_credentials" not in row.litellm_params


def test_update_merges_and_keeps_secrets_not_sent():
    make()

    row = deployment_update(deployment_id="eu-1", litellm_params={"rpm": 7, "api_key": "azure-secret-2"},
                            model_info={"owner": "ops"})

    assert row.rpm == 7
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "azure-secret-2", "azure_ad_token": "ad-token-1"}
    assert row.model_info == {"base_model": "gpt-4o", "owner": "ops"}


def test_an_empty_string_clears_a_secret():
    make()
    row = deployment_update(deployment_id="eu-1", litellm_params={"azure_ad_token": ""})
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "azure-secret-1"}
    assert "azure_ad_token" not in row.litellm_params


def test_replace_sets_params_and_info_whole_but_keeps_stored_secrets():
    make()

    row = deployment_update(deployment_id="eu-1", model_name="eu-2", replace=True, enabled=False,
                            litellm_params={"model": "azure/eu-gpt", "api_base": "https://eu2.example.com",
                                            "api_version": "2025-01-01"},
                            model_info={"mode": "batch"})

    row.refresh_from_db()
    assert (row.model_name, row.mode, row.enabled) == ("eu-2", "batch", False)
    assert row.litellm_params == {"model": "azure/eu-gpt", "api_base": "https://eu2.example.com",
                                  "api_version": "2025-01-01"}
    assert row.model_info == {"mode": "batch"}
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "azure-secret-1", "azure_ad_token": "ad-token-1"}


def test_secrets_that_no_longer_decrypt_must_be_sent_again():
    make(litellm_params={**AZURE_PARAMS, "azure_ad_token": None})
    _fernet.cache_clear()
    try:
        with override_settings(GATEWAY_ENCRYPTION_KEY="a-different-key"):
            _fernet.cache_clear()
            row = deployment_update(deployment_id="eu-1", litellm_params={"api_key": "azure-secret-3"})
            assert decrypt_secrets(row.encrypted_secrets) == {"api_key": "azure-secret-3"}
    finally:
        _fernet.cache_clear()


def test_patch_is_a_merge_with_the_id_fixed():
    make()
    row = deployment_patch(deployment_id="eu-1",
                           changes={"litellm_params": {"weight": 2}, "model_info": {"id": "eu-1"}})
    assert (row.weight, row.model_name) == (2.0, "eu")


def test_delete_removes_and_bumps():
    make()
    before = registry_version_get()
    deployment_delete(deployment_id="eu-1")
    assert not Deployment.objects.exists()
    assert registry_version_get() == before + 1


def test_a_failed_write_changes_nothing():
    make()
    before = (registry_version_get(), Deployment.objects.values().get())
    with pytest.raises(InvalidRequestError) as caught:
        deployment_update(deployment_id="eu-1", litellm_params={"api_version": ""})
    assert caught.value.param == "litellm_params.api_version"
    with pytest.raises(GatewayError) as conflict:
        make()
    assert conflict.value.status_code == 409
    with pytest.raises(NotFoundError):
        deployment_delete(deployment_id="nope")
    assert (registry_version_get(), Deployment.objects.values().get()) == before


def test_config_sync_leaves_api_and_admin_rows_alone_and_api_writes_leave_config_rows_alone():
    deployments_sync_from_config(specs=parse_config({"model_list": [
        {"model_name": "cfg", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "cfg-1"}}]}).deployments)
    make(source="admin")
    deployment_create(model_name="api", litellm_params={"model": "mock/m"}, model_info={"id": "api-1"})

    deployments_sync_from_config(specs=[])

    assert sorted(Deployment.objects.values_list("id", "source")) == [("api-1", "api"), ("eu-1", "admin")]
    with pytest.raises(NotFoundError):
        deployment_update(deployment_id="cfg-1", litellm_params={"rpm": 1})


def test_a_config_row_cannot_be_changed_or_deleted():
    deployments_sync_from_config(specs=parse_config({"model_list": [
        {"model_name": "cfg", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "cfg-1"}}]}).deployments)
    for write in (lambda: deployment_update(deployment_id="cfg-1", litellm_params={"rpm": 1}),
                  lambda: deployment_delete(deployment_id="cfg-1")):
        with pytest.raises(InvalidRequestError) as caught:
            write()
        assert caught.value.code == "config_deployment_read_only"
    assert Deployment.objects.get(id="cfg-1").rpm is None
