"""Provider credentials: `os.environ/NAME` references resolved on every call, literal secrets encrypted at rest."""
from __future__ import annotations

import orjson
import pytest
from django.db import connection

from models_registry.models import Deployment, RegistryState
from models_registry.secrets import decrypt_secrets
from models_registry.snapshot import DeploymentMisconfiguredError, current_snapshot
from tests.models_registry.support import openai_entry, send_chat

KEY_VARIABLE = "GATEHOUSE_TEST_PROVIDER_KEY"
BASE_VARIABLE = "GATEHOUSE_TEST_PROVIDER_BASE"


def test_references_are_stored_as_written_not_resolved_and_not_encrypted(configure_gateway, fake_openai,
                                                                          monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.setenv(BASE_VARIABLE, f"{fake_openai.url}/one/v1")
    entry = openai_entry("g", fake_openai.url, "a", api_key=f"os.environ/{KEY_VARIABLE}",
                         api_base=f"os.environ/{BASE_VARIABLE}", organization="os.environ/GATEHOUSE_TEST_ORG")

    configure_gateway({"model_list": [entry]})  # an unset variable does not stop the sync

    row = Deployment.objects.get(id="a")
    assert row.litellm_params == {"model": "openai/a-model", "api_base": f"os.environ/{BASE_VARIABLE}",
                                  "api_key": f"os.environ/{KEY_VARIABLE}",
                                  "organization": "os.environ/GATEHOUSE_TEST_ORG"}
    assert row.encrypted_secrets == ""
    assert fake_openai.requests == []


def test_rotating_the_variable_changes_the_next_upstream_call_without_a_reload(configure_gateway, fake_openai,
                                                                                monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sk-first")
    monkeypatch.setenv(BASE_VARIABLE, f"{fake_openai.url}/one/v1")
    monkeypatch.setenv("GATEHOUSE_TEST_ORG", "org-first")
    entry = openai_entry("g", fake_openai.url, "a", api_key=f"os.environ/{KEY_VARIABLE}",
                         api_base=f"os.environ/{BASE_VARIABLE}", organization="os.environ/GATEHOUSE_TEST_ORG")
    configure_gateway({"model_list": [entry]})

    send_chat("g")
    snapshot = current_snapshot()
    version = RegistryState.objects.get(id=1).version
    monkeypatch.setenv(KEY_VARIABLE, "sk-second")
    monkeypatch.setenv(BASE_VARIABLE, f"{fake_openai.url}/two/v1")
    monkeypatch.setenv("GATEHOUSE_TEST_ORG", "org-second")
    send_chat("g")

    first, second = fake_openai.requests
    assert (first.path, first.headers["authorization"], first.headers["openai-organization"]) == \
        ("/one/v1/chat/completions", "Bearer sk-first", "org-first")
    assert (second.path, second.headers["authorization"], second.headers["openai-organization"]) == \
        ("/two/v1/chat/completions", "Bearer sk-second", "org-second")
    assert current_snapshot() is snapshot
    assert RegistryState.objects.get(id=1).version == version


def test_azure_key_and_api_version_references_are_read_per_call(configure_gateway, fake_openai, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_TEST_AZURE_KEY", "azure-key-1")
    monkeypatch.setenv("GATEHOUSE_TEST_AZURE_VERSION", "2024-06-01")
    configure_gateway({"model_list": [{
        "model_name": "az",
        "litellm_params": {"model": "azure/gpt-4o-deployment", "api_base": fake_openai.url,
                           "api_key": "os.environ/GATEHOUSE_TEST_AZURE_KEY",
                           "api_version": "os.environ/GATEHOUSE_TEST_AZURE_VERSION"},
    }]})

    send_chat("az")
    monkeypatch.setenv("GATEHOUSE_TEST_AZURE_KEY", "azure-key-2")
    monkeypatch.setenv("GATEHOUSE_TEST_AZURE_VERSION", "2025-01-01-preview")
    send_chat("az")

    assert [(r.path, r.query, r.headers["api-key"], "authorization" in r.headers) for r in fake_openai.requests] == [
        ("/openai/deployments/gpt-4o-deployment/chat/completions", {"api-version": ["2024-06-01"]}, "azure-key-1",
         False),
        ("/openai/deployments/gpt-4o-deployment/chat/completions", {"api-version": ["2025-01-01-preview"]},
         "azure-key-2", False),
    ]


def test_an_unset_variable_is_a_clear_error_naming_it_and_nothing_reaches_upstream(configure_gateway, fake_openai,
                                                                                    monkeypatch):
    monkeypatch.delenv("GATEHOUSE_TEST_UNSET_KEY", raising=False)
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a",
                                                   api_key="os.environ/GATEHOUSE_TEST_UNSET_KEY")]})

    with pytest.raises(DeploymentMisconfiguredError) as raised:
        send_chat("g")

    error = raised.value
    assert error.envelope() == {"error": {
        "message": "Deployment 'a' of 'g' cannot be called: environment variable GATEHOUSE_TEST_UNSET_KEY is not set.",
        "type": "api_error", "param": None, "code": "deployment_misconfigured"}}
    assert error.status_code == 503
    assert fake_openai.requests == []


def test_an_unset_variable_over_http_is_the_error_envelope(client, configure_gateway, fake_openai, monkeypatch,
                                                           auth_headers):
    monkeypatch.delenv("GATEHOUSE_TEST_UNSET_KEY", raising=False)
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a",
                                                   api_key="os.environ/GATEHOUSE_TEST_UNSET_KEY")]})

    response = client.post("/v1/chat/completions", data={"model": "g", "messages": [{"role": "user", "content": "x"}]},
                           content_type="application/json", **auth_headers)

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert orjson.loads(response.content) == {"error": {
        "message": "Deployment 'a' of 'g' cannot be called: environment variable GATEHOUSE_TEST_UNSET_KEY is not set.",
        "type": "api_error", "param": None, "code": "deployment_misconfigured"}}
    assert fake_openai.requests == []


def test_a_deployment_with_an_unset_variable_fails_over_to_its_group(configure_gateway, fake_openai, monkeypatch):
    monkeypatch.delenv("GATEHOUSE_TEST_UNSET_KEY", raising=False)
    configure_gateway({"model_list": [
        openai_entry("g", fake_openai.url, "a", api_key="os.environ/GATEHOUSE_TEST_UNSET_KEY"),
        openai_entry("g", fake_openai.url, "b"),
    ], "router_settings": {"num_retries": 1}})

    outcomes = [send_chat("g")[1] for _ in range(12)]

    assert {outcome.deployment.id for outcome in outcomes} == {"b"}
    assert {request.path for request in fake_openai.requests} == {"/b/v1/chat/completions"}
    assert len(fake_openai.requests) == 12


def test_literal_secrets_are_encrypted_at_rest_and_used_for_calls(configure_gateway, fake_openai):
    plaintext = "sk-literal-secret-0123456789abcdef"
    token = "ad-token-literal-secret-fedcba"
    entry = openai_entry("g", fake_openai.url, "a", api_key=plaintext)
    azure = {"model_name": "az", "litellm_params": {"model": "azure/dep", "api_base": fake_openai.url,
                                                    "azure_ad_token": token}, "model_info": {"id": "az"}}
    configure_gateway({"model_list": [entry, azure]})

    row = Deployment.objects.get(id="a")
    assert row.litellm_params == {"model": "openai/a-model", "api_base": f"{fake_openai.url}/a/v1"}
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": plaintext}
    assert decrypt_secrets(Deployment.objects.get(id="az").encrypted_secrets) == {"azure_ad_token": token}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Deployment._meta.db_table}")  # noqa: S608 - our own table name
        stored = repr(cursor.fetchall())
    assert plaintext not in stored
    assert token not in stored
    assert "literal-secret" not in stored

    send_chat("g")
    send_chat("az")

    openai_request, azure_request = fake_openai.requests
    assert openai_request.headers["authorization"] == f"Bearer {plaintext}"
    assert azure_request.headers["authorization"] == f"Bearer {token}"
    assert "api-key" not in azure_request.headers


def test_references_nested_in_extra_headers_are_read_per_call(configure_gateway, fake_openai, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_TEST_TENANT", "tenant-one")
    entry = openai_entry("g", fake_openai.url, "a",
                         extra_headers={"X-Tenant": "os.environ/GATEHOUSE_TEST_TENANT", "X-Fixed": "plain"})
    configure_gateway({"model_list": [entry]})

    send_chat("g")
    monkeypatch.setenv("GATEHOUSE_TEST_TENANT", "tenant-two")
    send_chat("g")

    assert [(r.headers["x-tenant"], r.headers["x-fixed"]) for r in fake_openai.requests] == [
        ("tenant-one", "plain"), ("tenant-two", "plain")]
    assert Deployment.objects.get(id="a").litellm_params["extra_headers"] == {
        "X-Tenant": "os.environ/GATEHOUSE_TEST_TENANT", "X-Fixed": "plain"}
