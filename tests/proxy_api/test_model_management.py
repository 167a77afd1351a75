"""The model management API's writes: `/model/new`, `/model/update`, `PATCH /model/{id}/update`,
`/model/delete`. Each is checked through the HTTP API: the exact answer, the stored row (secrets
encrypted, references kept), the registry version, and what the new deployment sends upstream."""
from __future__ import annotations

import orjson
import pytest

from models_registry.models import Deployment
from models_registry.secrets import decrypt_secrets
from models_registry.selectors import registry_version_get
from tests.fakes.openai_server import FakeOpenAI
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

NEW_KEY = "sk-new-deployment-secret-91c2e7"
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


@pytest.fixture
def gateway(configure_gateway, fake_openai: FakeOpenAI) -> FakeOpenAI:
    """One config-sourced deployment (`cfg-chat`) on the fake, so config rows can be shown to be read-only."""
    configure_gateway({"model_list": [
        {"model_name": "config-chat",
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake_openai.url}/v1",
                            "api_key": UPSTREAM_KEY},
         "model_info": {"id": "cfg-chat"}},
    ]})
    return fake_openai


def new_body(fake: FakeOpenAI, **overrides) -> dict:
    body = {"model_name": "live-chat",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{fake.url}/v1", "api_key": NEW_KEY, "rpm": 60},
            "model_info": {"id": "live-1", "team": "search"}}
    body.update(overrides)
    return body


def chat(client, auth_headers, model: str):
    return post_json(client, "/v1/chat/completions", {"model": model, "messages": USER}, auth_headers)


def test_model_new_stores_the_deployment_and_serves_it_at_once(client, auth_headers, gateway):
    before = registry_version_get()

    response = post_json(client, "/model/new", new_body(gateway), auth_headers)

    assert response.status_code == 200
    body = response.json()
    info = body["model_info"]
    assert body["model_id"] == "live-1"
    assert body["model_name"] == "live-chat"
    assert body["litellm_params"] == {"model": "openai/gpt-4o", "api_base": f"{gateway.url}/v1", "rpm": 60}
    assert {key: info[key] for key in ("id", "team", "mode", "db_model", "source", "enabled", "key",
                                       "litellm_provider", "input_cost_per_token", "output_cost_per_token",
                                       "max_input_tokens", "max_output_tokens")} == {
        "id": "live-1", "team": "search", "mode": "chat", "db_model": True, "source": "api", "enabled": True,
        "key": "openai/gpt-4o", "litellm_provider": "openai", "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05, "max_input_tokens": 128000, "max_output_tokens": 16384}
    assert NEW_KEY.encode() not in response.content
    row = Deployment.objects.get(id="live-1")
    assert (row.model_name, row.provider, row.provider_model, row.mode, row.rpm, row.source, row.enabled) == (
        "live-chat", "openai", "gpt-4o", "chat", 60, "api", True)
    assert row.litellm_params == {"model": "openai/gpt-4o", "api_base": f"{gateway.url}/v1", "rpm": 60}
    assert row.model_info == {"team": "search"}
    assert NEW_KEY not in row.encrypted_secrets
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": NEW_KEY}
    assert registry_version_get() == before + 1

    served = chat(client, auth_headers, "live-chat")

    assert served.status_code == 200
    assert served["x-gatehouse-deployment-id"] == "live-1"
    [upstream] = gateway.requests
    assert upstream.headers["authorization"] == f"Bearer {NEW_KEY}"
    assert upstream.body == {"model": "gpt-4o", "messages": USER}


def test_model_new_without_an_id_gets_a_uuid(client, auth_headers, gateway):
    body = new_body(gateway, model_info={"mode": "chat"})

    response = post_json(client, "/model/new", body, auth_headers)

    assert response.status_code == 200
    model_id = response.json()["model_id"]
    assert len(model_id) == 36 and model_id.count("-") == 4
    assert response.json()["model_info"]["id"] == model_id
    assert Deployment.objects.get(id=model_id).model_info == {"mode": "chat"}


def test_an_environment_reference_is_kept_as_a_reference_and_read_per_call(client, auth_headers, gateway,
                                                                          monkeypatch):
    monkeypatch.setenv("GATEHOUSE_TEST_LIVE_KEY", "sk-from-env-1")
    body = new_body(gateway)
    body["litellm_params"]["api_key"] = "os.environ/GATEHOUSE_TEST_LIVE_KEY"

    response = post_json(client, "/model/new", body, auth_headers)

    assert response.status_code == 200
    assert "api_key" not in response.json()["litellm_params"]
    row = Deployment.objects.get(id="live-1")
    assert row.encrypted_secrets == ""
    assert row.litellm_params["api_key"] == "os.environ/GATEHOUSE_TEST_LIVE_KEY"
    assert chat(client, auth_headers, "live-chat").status_code == 200
    monkeypatch.setenv("GATEHOUSE_TEST_LIVE_KEY", "sk-from-env-2")
    assert chat(client, auth_headers, "live-chat").status_code == 200
    assert [r.headers["authorization"] for r in gateway.requests] == ["Bearer sk-from-env-1", "Bearer sk-from-env-2"]


AZURE = {"model": "azure/my-gpt", "api_base": "https://example.openai.azure.com", "api_version": "2024-10-21",
         "api_key": "azure-key"}


@pytest.mark.parametrize(("body", "message", "param", "code"), [
    ({"litellm_params": {"model": "openai/gpt-4o", "api_key": "k"}},
     "Model_name is required and must be a non-empty string.", "model_name", "invalid_deployment"),
    ({"model_name": "x", "litellm_params": "openai/gpt-4o"},
     "Litellm_params is required and must be a mapping.", "litellm_params", "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"api_key": "k"}},
     "Litellm_params.model is required (e.g. 'openai/gpt-4o').", "litellm_params.model", "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"model": "nosuch/model-a"}},
     "Provider 'nosuch' of 'nosuch/model-a' is not supported (known: {known}).", "litellm_params.model",
     "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {**AZURE, "api_base": None}},
     "Azure models need litellm_params.api_base (https://<resource>.openai.azure.com).", "litellm_params.api_base",
     "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {**AZURE, "api_version": None}},
     "azure deployments need litellm_params.api_version (2024-10-21).", "litellm_params.api_version",
     "missing_required_parameter"),
    ({"model_name": "x", "litellm_params": {"model": "hosted_vllm/llama"}},
     "Hosted_vllm models need litellm_params.api_base (the server's /v1 URL).", "litellm_params.api_base",
     "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"model": "openai/gpt-4o"}},
     "openai deployments calling OpenAI need litellm_params.api_key (the key, or os.environ/OPENAI_API_KEY); an "
     "OpenAI-compatible server needs litellm_params.api_base.", "litellm_params.api_key",
     "missing_required_parameter"),
    ({"model_name": "x", "litellm_params": {"model": "mock/m", "rpm": -1}},
     "Litellm_params.rpm must be a non-negative number, not -1.", "litellm_params.rpm", "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"model": "mock/m", "api_base": "ftp://host"}},
     "Litellm_params.api_base must be an http(s) URL or os.environ/ reference.", "litellm_params.api_base",
     "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"model": "mock/m"}, "model_info": {"mode": "vision"}},
     "Model_info.mode 'vision' is not one of chat, completion, embedding, moderation, batch.", "model_info.mode",
     "invalid_deployment"),
    ({"model_name": "x", "litellm_params": {"model": "mock/m"}, "model_info": {"id": "has space"}},
     "model_info.id must be 1-64 letters, digits or . _ : @ - (starting with a letter or digit).", "model_info.id",
     "invalid_value"),
    ({"model_name": "x", "litellm_params": {"model": "mock/m"}, "model_info": ["id"]},
     "model_info must be an object.", "model_info", "invalid_type"),
])
def test_an_invalid_deployment_is_refused_with_the_field_named(client, auth_headers, gateway, body, message, param,
                                                              code):
    from providers.registry import known_providers

    before = (registry_version_get(), Deployment.objects.count())

    response = post_json(client, "/model/new", body, auth_headers)

    assert response.status_code == 400
    expected = message.replace("{known}", ", ".join(known_providers()))
    assert error_body(response) == envelope(expected, "invalid_request_error", param, code)
    assert (registry_version_get(), Deployment.objects.count()) == before


def test_the_mock_provider_needs_no_parameters(client, auth_headers, gateway):
    response = post_json(client, "/model/new", {"model_name": "m", "litellm_params": {"model": "mock/mock-gpt"}},
                         auth_headers)
    assert response.status_code == 200
    assert chat(client, auth_headers, "m").status_code == 200


def test_a_taken_id_is_a_conflict(client, auth_headers, gateway):
    assert post_json(client, "/model/new", new_body(gateway), auth_headers).status_code == 200
    for taken in ("live-1", "cfg-chat"):
        response = post_json(client, "/model/new", new_body(gateway, model_info={"id": taken}), auth_headers)
        assert response.status_code == 409
        assert error_body(response) == envelope(f"A deployment with id '{taken}' already exists.",
                                                "invalid_request_error", "model_info.id", "deployment_exists")
    assert Deployment.objects.get(id="cfg-chat").source == "config"


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_refused(client, auth_headers, gateway, raw):
    response = post_json(client, "/model/new", raw, auth_headers)
    assert response.status_code == 400
    assert error_body(response)["error"]["code"] == "invalid_json"
    assert Deployment.objects.count() == 1


def test_writes_need_a_key(client, gateway):
    response = post_json(client, "/model/new", new_body(gateway))
    assert response.status_code == 401
    assert error_body(response)["error"]["type"] == "authentication_error"
    assert not Deployment.objects.filter(id="live-1").exists()


def test_model_update_merges_params_and_info(client, auth_headers, gateway):
    post_json(client, "/model/new", new_body(gateway), auth_headers)
    before = registry_version_get()

    response = post_json(client, "/model/update", {
        "model_info": {"id": "live-1", "owner": "ops", "team": None},
        "litellm_params": {"rpm": 10, "tpm": 5000, "api_key": None, "timeout": 30},
    }, auth_headers)

    assert response.status_code == 200
    assert response.json()["litellm_params"] == {"model": "openai/gpt-4o", "api_base": f"{gateway.url}/v1",
                                                 "rpm": 10, "tpm": 5000, "timeout": 30}
    assert response.json()["model_info"]["owner"] == "ops"
    row = Deployment.objects.get(id="live-1")
    assert row.model_info == {"team": "search", "owner": "ops"}
    assert (row.rpm, row.tpm, row.model_name) == (10, 5000, "live-chat")
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": NEW_KEY}  # null leaves the key as it is
    assert registry_version_get() == before + 1


def test_model_update_replaces_a_secret_and_moves_the_group(client, auth_headers, gateway):
    post_json(client, "/model/new", new_body(gateway), auth_headers)

    response = post_json(client, "/model/update", {"model_name": "renamed", "model_info": {"id": "live-1"},
                                                   "litellm_params": {"api_key": "sk-rotated-key-77"}}, auth_headers)

    assert response.status_code == 200
    assert b"sk-rotated-key-77" not in response.content
    assert decrypt_secrets(Deployment.objects.get(id="live-1").encrypted_secrets) == {"api_key": "sk-rotated-key-77"}
    assert error_body(chat(client, auth_headers, "live-chat"))["error"]["code"] == "model_not_found"
    assert chat(client, auth_headers, "renamed").status_code == 200
    assert [r.headers["authorization"] for r in gateway.requests] == ["Bearer sk-rotated-key-77"]


def test_model_update_is_validated_like_a_new_model(client, auth_headers, gateway):
    post_json(client, "/model/new", new_body(gateway), auth_headers)
    before = (registry_version_get(), Deployment.objects.values().get(id="live-1"))

    response = post_json(client, "/model/update", {"model_info": {"id": "live-1"},
                                                   "litellm_params": {"model": "azure/gpt-4o"}}, auth_headers)

    assert response.status_code == 400
    assert error_body(response) == envelope(
        "azure deployments need litellm_params.api_version (2024-10-21).", "invalid_request_error",
        "litellm_params.api_version", "missing_required_parameter")
    assert (registry_version_get(), Deployment.objects.values().get(id="live-1")) == before


def test_model_update_needs_the_id(client, auth_headers, gateway):
    response = post_json(client, "/model/update", {"litellm_params": {"rpm": 1}}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("Send the deployment to change as model_info.id.",
                                            "invalid_request_error", "model_info.id", "missing_required_parameter")


def test_patch_changes_only_what_it_names(client, auth_headers, gateway):
    post_json(client, "/model/new", new_body(gateway), auth_headers)

    response = client.patch("/model/live-1/update", data=orjson.dumps({"litellm_params": {"weight": 3}}),
                            content_type="application/json", **auth_headers)

    assert response.status_code == 200
    row = Deployment.objects.get(id="live-1")
    assert (row.weight, row.rpm, row.model_name, row.model_info) == (3.0, 60, "live-chat", {"team": "search"})
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": NEW_KEY}


@pytest.mark.parametrize(("body", "message", "param", "code"), [
    ({"rpm": 5}, "Unknown field 'rpm': send model_name, litellm_params or model_info.", "rpm", "unknown_parameter"),
    ({"litellm_params": [1]}, "litellm_params must be an object.", "litellm_params", "invalid_type"),
    ({"model_info": {"id": "other"}}, "model_info.id cannot be changed.", "model_info.id", "invalid_value"),
])
def test_patch_refuses_what_it_cannot_apply(client, auth_headers, gateway, body, message, param, code):
    post_json(client, "/model/new", new_body(gateway), auth_headers)
    response = client.patch("/model/live-1/update", data=orjson.dumps(body), content_type="application/json",
                            **auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope(message, "invalid_request_error", param, code)


def test_model_delete_removes_the_deployment_from_serving(client, auth_headers, gateway):
    post_json(client, "/model/new", new_body(gateway), auth_headers)
    assert chat(client, auth_headers, "live-chat").status_code == 200
    before = registry_version_get()

    response = post_json(client, "/model/delete", {"id": "live-1"}, auth_headers)

    assert response.status_code == 200
    assert response.json() == {"message": "Model: live-1 deleted successfully", "model_id": "live-1"}
    assert not Deployment.objects.filter(id="live-1").exists()
    assert registry_version_get() == before + 1
    gone = chat(client, auth_headers, "live-chat")
    assert gone.status_code == 404
    assert error_body(gone)["error"]["code"] == "model_not_found"
    assert len(gateway.requests) == 1


READ_ONLY = ("Deployment 'cfg-chat' is declared in config.yaml and is read-only here; change it in config.yaml "
             "and restart the gateway.")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/model/update", {"model_info": {"id": "cfg-chat"}, "litellm_params": {"rpm": 1}}),
    ("patch", "/model/cfg-chat/update", {"litellm_params": {"rpm": 1}}),
    ("post", "/model/delete", {"id": "cfg-chat"}),
])
def test_config_deployments_are_read_only_through_the_api(client, auth_headers, gateway, method, path, body):
    before = (registry_version_get(), Deployment.objects.values().get(id="cfg-chat"))

    response = getattr(client, method)(path, data=orjson.dumps(body), content_type="application/json", **auth_headers)

    assert response.status_code == 400
    assert error_body(response) == envelope(READ_ONLY, "invalid_request_error", "id", "config_deployment_read_only")
    assert (registry_version_get(), Deployment.objects.values().get(id="cfg-chat")) == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/model/update", {"model_info": {"id": "nope"}}),
    ("patch", "/model/nope/update", {}),
    ("post", "/model/delete", {"id": "nope"}),
])
def test_an_unknown_deployment_is_404(client, auth_headers, gateway, method, path, body):
    response = getattr(client, method)(path, data=orjson.dumps(body), content_type="application/json", **auth_headers)
    assert response.status_code == 404
    assert error_body(response) == envelope("No deployment has id 'nope'.", "invalid_request_error", "id",
                                            "deployment_not_found")


def test_delete_needs_an_id(client, auth_headers, gateway):
    response = post_json(client, "/model/delete", {"model_id": "live-1"}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("Send the deployment to remove as 'id'.", "invalid_request_error", "id",
                                            "missing_required_parameter")


def test_a_wrong_method_gets_the_envelope(client, auth_headers, gateway):
    response = client.get("/model/new", **auth_headers)
    assert response.status_code == 405
    assert error_body(response)["error"]["code"] == "method_not_allowed"
