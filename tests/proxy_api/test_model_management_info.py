"""`/model/info` and `/model_group/info`: what they say about deployments and groups, and that no
secret (literal, encrypted or referenced) ever appears in them."""
from __future__ import annotations

import pytest

from models_registry.costs import cost_map
from models_registry.models import Deployment
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

ENV_NAME = "GATEHOUSE_INFO_TEST_KEY"
ENV_SECRET = "sk-env-secret-value-3b7d"
API_KEY = "sk-api-made-secret-55e1"


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


@pytest.fixture
def registry(configure_gateway, monkeypatch, client, auth_headers):
    """Config rows (a literal key, an env reference, an azure deployment priced through `base_model`, a mock
    embedding model) plus one deployment added through the API and one disabled."""
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    configure_gateway({"model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": UPSTREAM_KEY, "rpm": 100,
                                                 "api_base": "http://127.0.0.1:9/v1"},
         "model_info": {"id": "gpt-a", "owner": "research"}},
        {"model_name": "gpt", "litellm_params": {"model": "azure/eu-deployment", "api_key": f"os.environ/{ENV_NAME}",
                                                 "api_base": "https://eu.example.com", "api_version": "2024-10-21",
                                                 "rpm": 50, "tpm": 1000},
         "model_info": {"id": "gpt-b", "base_model": "gpt-4o", "input_cost_per_token": 1e-06}},
        {"model_name": "embed", "litellm_params": {"model": "mock/text-embedding-mock"},
         "model_info": {"id": "embed-a"}},
    ]})
    response = post_json(client, "/model/new", {
        "model_name": "claude", "litellm_params": {"model": "mock/unknown-to-the-map", "api_key": API_KEY},
        "model_info": {"id": "claude-a", "supports_vision": True, "max_input_tokens": 4000}}, auth_headers)
    assert response.status_code == 200
    Deployment.objects.create(id="off-a", model_name="off", provider="mock", provider_model="m", mode="chat",
                              source="api", enabled=False, litellm_params={"model": "mock/m"})


def by_id(response) -> dict[str, dict]:
    return {item["model_info"]["id"]: item for item in response.json()["data"]}


@pytest.mark.parametrize("path", ["/model/info", "/v1/model/info"])
def test_model_info_lists_every_deployment_without_secrets(client, auth_headers, registry, path):
    response = client.get(path, **auth_headers)

    assert response.status_code == 200
    items = by_id(response)
    assert list(items) == ["claude-a", "embed-a", "gpt-a", "gpt-b", "off-a"]
    for secret in (UPSTREAM_KEY, ENV_SECRET, API_KEY, ENV_NAME):
        assert secret.encode() not in response.content
    for row in Deployment.objects.exclude(encrypted_secrets=""):
        assert row.encrypted_secrets.encode() not in response.content
    assert items["gpt-a"]["litellm_params"] == {"model": "openai/gpt-4o-mini", "rpm": 100,
                                                "api_base": "http://127.0.0.1:9/v1"}
    assert items["gpt-b"]["litellm_params"] == {"model": "azure/eu-deployment", "api_base": "https://eu.example.com",
                                                "api_version": "2024-10-21", "rpm": 50, "tpm": 1000}


def test_model_info_is_the_cost_map_entry_under_the_operators_keys(client, auth_headers, registry):
    items = by_id(client.get("/model/info", **auth_headers))

    gpt_a = items["gpt-a"]["model_info"]
    assert gpt_a == {**cost_map()["openai/gpt-4o-mini"], "owner": "research", "id": "gpt-a", "mode": "chat",
                     "key": "openai/gpt-4o-mini", "db_model": False, "source": "config", "enabled": True}
    gpt_b = items["gpt-b"]["model_info"]
    assert gpt_b["key"] == "azure/gpt-4o"  # the azure deployment is priced through its base_model
    assert gpt_b["input_cost_per_token"] == 1e-06  # the operator's price wins
    assert gpt_b["output_cost_per_token"] == cost_map()["azure/gpt-4o"]["output_cost_per_token"]
    assert gpt_b["base_model"] == "gpt-4o"
    claude = items["claude-a"]["model_info"]
    assert claude == {"supports_vision": True, "max_input_tokens": 4000, "litellm_provider": "mock",
                      "id": "claude-a", "mode": "chat", "key": None, "db_model": True, "source": "api",
                      "enabled": True}
    assert items["embed-a"]["model_info"]["mode"] == "embedding"
    assert items["off-a"]["model_info"]["enabled"] is False


def test_model_info_for_one_deployment(client, auth_headers, registry):
    response = client.get("/model/info", {"litellm_model_id": "gpt-b"}, **auth_headers)
    assert response.status_code == 200
    assert list(by_id(response)) == ["gpt-b"]
    assert response.json()["data"][0]["model_name"] == "gpt"


def test_model_info_for_an_unknown_deployment_is_404(client, auth_headers, registry):
    response = client.get("/v1/model/info", {"litellm_model_id": "nope"}, **auth_headers)
    assert response.status_code == 404
    assert error_body(response) == envelope("No deployment has id 'nope'.", "invalid_request_error",
                                            "litellm_model_id", "deployment_not_found")


@pytest.mark.parametrize("path", ["/model/info", "/v1/model/info", "/model_group/info"])
def test_reads_need_a_valid_key(client, registry, path):
    assert client.get(path).status_code == 401
    wrong = client.get(path, HTTP_AUTHORIZATION="Bearer sk-wrong")
    assert wrong.status_code == 401
    assert error_body(wrong)["error"]["type"] == "authentication_error"


def test_model_group_info_summarises_each_serving_group(client, auth_headers, registry):
    response = client.get("/model_group/info", **auth_headers)

    assert response.status_code == 200
    groups = {item["model_group"]: item for item in response.json()["data"]}
    assert set(groups) == {"gpt", "embed", "claude"}  # a group with only disabled deployments is not serving
    mini, azure_4o = cost_map()["openai/gpt-4o-mini"], cost_map()["azure/gpt-4o"]
    assert groups["gpt"] == {
        "model_group": "gpt", "providers": ["azure", "openai"], "mode": "chat", "deployments": 2,
        "max_input_tokens": 128000, "max_output_tokens": 16384,
        "input_cost_per_token": max(mini["input_cost_per_token"], 1e-06),
        "output_cost_per_token": max(mini["output_cost_per_token"], azure_4o["output_cost_per_token"]),
        "rpm": 150, "tpm": 1000,
        "supports_function_calling": True, "supports_parallel_function_calling": True, "supports_tool_choice": True,
        "supports_vision": True, "supports_response_schema": True, "supports_system_messages": True,
        "supports_prompt_caching": True, "supports_reasoning": False, "supports_pdf_input": True,
        "supports_audio_input": False, "supports_web_search": False,
    }
    assert groups["embed"]["mode"] == "embedding"
    assert (groups["embed"]["providers"], groups["embed"]["rpm"], groups["embed"]["input_cost_per_token"]) == (
        ["mock"], None, 0.0)
    assert (groups["claude"]["supports_vision"], groups["claude"]["supports_function_calling"],
            groups["claude"]["max_input_tokens"], groups["claude"]["input_cost_per_token"]) == (True, False, 4000, None)


def test_model_group_info_for_one_group(client, auth_headers, registry):
    response = client.get("/model_group/info", {"model_group": "embed"}, **auth_headers)
    assert [item["model_group"] for item in response.json()["data"]] == ["embed"]
    assert client.get("/model_group/info", {"model_group": "nope"}, **auth_headers).json() == {"data": []}
