"""Which adapter answers for which `litellm_params.model` prefix, and what model name it is given."""
from __future__ import annotations

import pytest

from providers.azure import AzureProvider
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS
from providers.mock import MockProvider
from providers.openai import OpenAIProvider, TextCompletionOpenAIProvider
from providers.registry import adapter_for, known_providers, split_model


@pytest.mark.parametrize(("litellm_model", "expected"), [
    ("gpt-4o", ("openai", "gpt-4o")),
    ("openai/gpt-4o", ("openai", "gpt-4o")),
    ("azure/my-gpt4o-eu", ("azure", "my-gpt4o-eu")),
    ("hosted_vllm/meta-llama/Llama-3-8B", ("hosted_vllm", "meta-llama/Llama-3-8B")),
    ("openai_like/qwen/Qwen2.5-7B-Instruct", ("openai_like", "qwen/Qwen2.5-7B-Instruct")),
    ("openai/meta-llama/Llama-3-8B", ("openai", "meta-llama/Llama-3-8B")),
    ("text-completion-openai/gpt-3.5-turbo-instruct", ("text-completion-openai", "gpt-3.5-turbo-instruct")),
    ("mock/anything/at-all", ("mock", "anything/at-all")),
    # No known prefix: the whole string is an OpenAI model name, its slashes included.
    ("meta-llama/Llama-3-8B", ("openai", "meta-llama/Llama-3-8B")),
    ("not-a-provider/some-model", ("openai", "not-a-provider/some-model")),
    # Prefixes are case-sensitive, as LiteLLM's are.
    ("Azure/my-dep", ("openai", "Azure/my-dep")),
])
def test_split_model_only_treats_a_known_prefix_as_the_provider(litellm_model, expected):
    assert split_model(litellm_model) == expected


@pytest.mark.parametrize(("prefix", "adapter_class", "name"), [
    ("openai", OpenAIProvider, "openai"),
    ("hosted_vllm", OpenAIProvider, "openai"),
    ("openai_like", OpenAIProvider, "openai"),
    ("azure", AzureProvider, "azure"),
    ("text-completion-openai", TextCompletionOpenAIProvider, "text-completion-openai"),
    ("mock", MockProvider, "mock"),
])
def test_each_prefix_resolves_to_its_adapter(prefix, adapter_class, name):
    adapter = adapter_for(prefix)
    assert type(adapter) is adapter_class
    assert adapter.name == name
    assert prefix in known_providers()


def test_compatible_server_prefixes_share_one_openai_adapter_without_files():
    assert adapter_for("hosted_vllm") is adapter_for("openai_like")
    assert (adapter_for("hosted_vllm").supports_files, adapter_for("openai").supports_files) == (False, True)


def test_an_unknown_provider_is_a_lookup_error_naming_the_known_ones():
    with pytest.raises(LookupError) as caught:
        adapter_for("bedrock-typo")
    assert str(caught.value) == f"unknown provider 'bedrock-typo' (known: {', '.join(known_providers())})"


@pytest.mark.parametrize(("prefix", "operations"), [
    ("openai", {CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS}),
    ("azure", {CHAT, COMPLETIONS, EMBEDDINGS}),
    ("text-completion-openai", {CHAT, COMPLETIONS}),
    ("mock", {CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS}),
])
def test_each_adapter_declares_the_operations_the_router_may_send_it(prefix, operations):
    adapter = adapter_for(prefix)
    assert adapter.operations == operations
    assert {op for op in (CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS) if adapter.supports(op)} == operations
