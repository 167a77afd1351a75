"""Which adapter serves which provider prefix of `litellm_params.model` (`azure/my-gpt` -> azure).

An explicit table: adapters know nothing of the registry, the registry imports them. Adding a
provider is one module plus one line here.
"""
from __future__ import annotations

from providers.anthropic import AnthropicProvider
from providers.azure import AzureProvider
from providers.base import Provider
from providers.gemini import GeminiProvider
from providers.mock import MockProvider
from providers.openai import OpenAIProvider, TextCompletionOpenAIProvider
from providers.vertex import VertexProvider

_compatible = OpenAIProvider(files_api=False)  # OpenAI's chat format without its Files API
_ADAPTERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "hosted_vllm": _compatible,
    "openai_like": _compatible,
    "text-completion-openai": TextCompletionOpenAIProvider(),
    "azure": AzureProvider(),
    "mock": MockProvider(),
    "gemini": GeminiProvider(),
    "vertex_ai": VertexProvider(),
    "anthropic": AnthropicProvider(),
}

# A model with no prefix (`gpt-4o`) is an OpenAI model, as in LiteLLM.
DEFAULT_PROVIDER = "openai"


def known_providers() -> list[str]:
    return sorted(_ADAPTERS)


def adapter_for(provider: str) -> Provider:
    try:
        return _ADAPTERS[provider]
    except KeyError:
        raise LookupError(f"unknown provider '{provider}' (known: {', '.join(known_providers())})") from None


def split_model(model: str) -> tuple[str, str]:
    """`"azure/gpt-4o-eu"` -> `("azure", "gpt-4o-eu")`; `"gpt-4o"` -> `("openai", "gpt-4o")`.

    Only a known prefix is a provider, so model names with slashes (`openai/meta-llama/Llama-3`) keep them.
    """
    prefix, separator, rest = model.partition("/")
    if separator and prefix in _ADAPTERS:
        return prefix, rest
    return DEFAULT_PROVIDER, model
