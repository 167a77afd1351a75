"""Which adapter serves which provider prefix of `litellm_params.model` (`azure/my-gpt` -> azure)."""
from __future__ import annotations

from providers.base import Provider

_ADAPTERS: dict[str, Provider] = {}
_builtins_loaded = False

# A model with no prefix (`gpt-4o`) is an OpenAI model, as in LiteLLM.
DEFAULT_PROVIDER = "openai"


def register(*prefixes: str):
    """Class decorator: one shared instance of the adapter answers for each prefix."""

    def decorate(cls: type[Provider]) -> type[Provider]:
        instance = cls()
        for prefix in prefixes:
            _ADAPTERS[prefix] = instance
        return cls

    return decorate


def known_providers() -> list[str]:
    _load_builtin_adapters()
    return sorted(_ADAPTERS)


def adapter_for(provider: str) -> Provider:
    _load_builtin_adapters()
    try:
        return _ADAPTERS[provider]
    except KeyError:
        raise LookupError(f"unknown provider '{provider}' (known: {', '.join(sorted(_ADAPTERS))})") from None


def split_model(model: str) -> tuple[str, str]:
    """`"azure/gpt-4o-eu"` -> `("azure", "gpt-4o-eu")`; `"gpt-4o"` -> `("openai", "gpt-4o")`.

    Only a known prefix is a provider, so model names with slashes (`openai/meta-llama/Llama-3`) keep them.
    """
    _load_builtin_adapters()
    prefix, separator, rest = model.partition("/")
    if separator and prefix in _ADAPTERS:
        return prefix, rest
    return DEFAULT_PROVIDER, model


def _load_builtin_adapters() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    # Importing a module registers its adapter.
    from providers import azure, mock, openai  # noqa: F401
