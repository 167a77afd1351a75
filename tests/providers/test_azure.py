"""The Azure OpenAI adapter: deployment-scoped URLs, `api-version`, and `api-key` (or an AD token)."""
from __future__ import annotations

import orjson
import pytest

from providers.azure import DEFAULT_API_VERSION, AzureProvider
from providers.errors import InvalidRequestError
from providers.registry import adapter_for
from tests.providers.helpers import drain, fake_bytes, only_request, target_for, transport_headers

AZURE_KEY = "azure-key-0123456789abcdef"
API_VERSION = "2024-06-01"
CHAT_BODY = {"model": "gateway-group", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0,
             "metadata": {"trace": "t"}, "timeout": 30}


@pytest.fixture
def azure() -> AzureProvider:
    return adapter_for("azure")


def azure_target(fake_url: str | None, **fields):
    fields.setdefault("api_base", fake_url)
    fields.setdefault("api_key", AZURE_KEY)
    fields.setdefault("api_version", API_VERSION)
    fields.setdefault("model", "gpt4o-eu-deployment")
    return target_for(fake_url, provider="azure", **fields)


def test_chat_goes_to_the_deployment_url_with_api_version_and_api_key(fake_openai, azure, deadline):
    """`/openai/deployments/<deployment>/chat/completions?api-version=<v>`, the key in `api-key` and no
    `Authorization` header; the body is OpenAI's, gateway fields stripped, model set to the deployment."""
    result = azure.chat(azure_target(fake_openai.url), CHAT_BODY, deadline)

    recorded = only_request(fake_openai)
    assert recorded.method == "POST"
    assert recorded.path == "/openai/deployments/gpt4o-eu-deployment/chat/completions"
    assert recorded.query == {"api-version": [API_VERSION]}
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "api-key": AZURE_KEY}
    assert recorded.body == {"model": "gpt4o-eu-deployment", "messages": [{"role": "user", "content": "Hi"}],
                             "temperature": 0}
    assert result.parsed["object"] == "chat.completion"
    assert result.parsed["model"] == "gpt4o-eu-deployment"
    assert result.body == fake_bytes(result.parsed)


def test_the_default_api_version_is_used_when_the_deployment_sets_none(fake_openai, azure, deadline):
    azure.chat(azure_target(fake_openai.url, api_version=None), CHAT_BODY, deadline)
    assert DEFAULT_API_VERSION == "2024-10-21"
    assert only_request(fake_openai).query == {"api-version": ["2024-10-21"]}


def test_an_azure_ad_token_is_sent_as_a_bearer_token_instead_of_an_api_key(fake_openai, azure, deadline):
    target = azure_target(fake_openai.url, api_key=None, params={"azure_ad_token": "eyJ0eXAiOiJKV1Qi.ad.token"})
    azure.chat(target, CHAT_BODY, deadline)

    recorded = only_request(fake_openai)
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "authorization": "Bearer eyJ0eXAiOiJKV1Qi.ad.token"}


def test_the_api_key_wins_over_an_ad_token_when_both_are_configured(fake_openai, azure, deadline):
    target = azure_target(fake_openai.url, params={"azure_ad_token": "ad-token"})
    azure.chat(target, CHAT_BODY, deadline)

    recorded = only_request(fake_openai)
    assert recorded.headers["api-key"] == AZURE_KEY
    assert "authorization" not in recorded.headers


def test_extra_headers_are_added_and_the_organization_is_not_sent_to_azure(fake_openai, azure, deadline):
    target = azure_target(fake_openai.url, organization="org-ignored", params={"extra_headers": {"X-Region": "eu"}})
    azure.chat(target, CHAT_BODY, deadline)

    recorded = only_request(fake_openai)
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "api-key": AZURE_KEY, "x-region": "eu"}


@pytest.mark.parametrize("suffix", ["", "/", "/openai", "/openai/"])
def test_api_base_with_a_trailing_openai_or_slash_gives_the_same_url(fake_openai, azure, deadline, suffix):
    """Operators paste the resource endpoint with or without `/openai` and a trailing slash."""
    azure.chat(azure_target(fake_openai.url, api_base=f"{fake_openai.url}{suffix}"), CHAT_BODY, deadline)
    recorded = only_request(fake_openai)
    assert (recorded.path, recorded.query) == ("/openai/deployments/gpt4o-eu-deployment/chat/completions",
                                               {"api-version": [API_VERSION]})


def test_chat_stream_uses_the_deployment_url_and_yields_the_chunks(fake_openai, azure, deadline):
    fake_openai.stream_chunks = 1
    stream = azure.chat_stream(azure_target(fake_openai.url), {**CHAT_BODY, "stream": True}, deadline, 5)
    chunks = [orjson.loads(chunk) for chunk in drain(stream)]

    recorded = only_request(fake_openai)
    assert (recorded.path, recorded.query) == ("/openai/deployments/gpt4o-eu-deployment/chat/completions",
                                               {"api-version": [API_VERSION]})
    assert recorded.body["stream"] is True
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [{"role": "assistant", "content": ""},
                                                                  {"content": "tok0 "}, {}]


def test_completions_go_to_the_deployments_completions_path(fake_openai, azure, deadline):
    result = azure.completion(azure_target(fake_openai.url, model="instruct-dep"),
                              {"model": "g", "prompt": "Say hi", "max_tokens": 3}, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path, recorded.query) == (
        "POST", "/openai/deployments/instruct-dep/completions", {"api-version": [API_VERSION]})
    assert recorded.body == {"model": "instruct-dep", "prompt": "Say hi", "max_tokens": 3}
    assert result.parsed["choices"][0]["text"] == " Hello from the fake provider."


def test_embeddings_go_to_the_deployments_embeddings_path_and_keep_base64_native(fake_openai, azure, deadline):
    """Azure honours `encoding_format=base64` itself, so it is forwarded and its answer relayed unchanged."""
    result = azure.embedding(azure_target(fake_openai.url, model="embed-dep"),
                             {"model": "g", "input": "hello", "encoding_format": "base64"}, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path, recorded.query) == (
        "POST", "/openai/deployments/embed-dep/embeddings", {"api-version": [API_VERSION]})
    assert recorded.headers["api-key"] == AZURE_KEY
    assert recorded.body == {"model": "embed-dep", "input": "hello", "encoding_format": "base64"}
    assert isinstance(result.parsed["data"][0]["embedding"], str)
    assert result.body == fake_bytes(result.parsed)


def test_a_deployment_without_api_base_is_refused_before_any_call(fake_openai, azure, deadline):
    with pytest.raises(InvalidRequestError) as caught:
        azure.chat(azure_target(None, api_base=None, deployment_id="dep-azure-7"), CHAT_BODY, deadline)

    error = caught.value
    assert error.message == "Azure deployment 'dep-azure-7' has no api_base configured."
    assert (error.status_code, error.type, error.code, error.param) == (400, "invalid_request_error", None, None)
    assert fake_openai.requests == []
