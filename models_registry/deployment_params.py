"""Turning what an operator sends (API body or admin form) into a validated deployment.

The config file, the management API and the admin share one validator (`deployment_spec_from_entry`),
so a deployment is accepted by all three or by none. On top of it, writes through the API and the
admin check that each provider gets the parameters it cannot work without, and answer with an
OpenAI-style 400 that names the missing field, instead of storing a deployment that fails on its
first call.
"""
from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from models_registry.config import ConfigError, DeploymentSpec, deployment_spec_from_entry
from models_registry.models import Deployment
from models_registry.secrets import SECRET_PARAM_NAMES, SecretUnavailableError, decrypt_secrets
from providers.errors import InvalidRequestError

# What each provider needs in `litellm_params`, and an example an operator can copy.
PROVIDER_REQUIRED_PARAMS: dict[str, dict[str, str]] = {
    "azure": {"api_base": "https://<resource>.openai.azure.com", "api_version": "2024-10-21"},
    "hosted_vllm": {"api_base": "the server's /v1 URL"},
    "openai_like": {"api_base": "the server's /v1 URL"},
    "anthropic": {"api_key": "the Anthropic API key or os.environ/ANTHROPIC_API_KEY"},
    "gemini": {"api_key": "the Gemini API key or os.environ/GEMINI_API_KEY"},
    "vertex_ai": {"vertex_project": "the Google Cloud project id", "vertex_location": "us-central1",
                  "vertex_credentials": "the service account JSON or os.environ/NAME"},
}
# OpenAI's own API needs a key; an OpenAI-compatible server reached through `api_base` may not.
KEY_UNLESS_API_BASE = frozenset({"openai", "text-completion-openai"})
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_WHERE = "deployment"
_PREFIX = re.compile(r"^deployment(?: \(model_name '.*?'\))?: ", re.DOTALL)
_FIELD = re.compile(r"\b(litellm_params(?:\.\w+)?|model_info(?:\.\w+)?|model_name)\b")


def new_deployment_id() -> str:
    """A fresh public id (LiteLLM uses UUIDs for models added through its API)."""
    return str(uuid.uuid4())


def deployment_spec_build(*, deployment_id: str, model_name: Any, litellm_params: Any,
                          model_info: Any) -> DeploymentSpec:
    """Validate a whole deployment; raises `InvalidRequestError` naming the field at fault."""
    if not isinstance(deployment_id, str) or not ID_PATTERN.match(deployment_id):
        raise InvalidRequestError(
            "model_info.id must be 1-64 letters, digits or . _ : @ - (starting with a letter or digit).",
            param="model_info.id", code="invalid_value")
    if model_info is not None and not isinstance(model_info, dict):
        raise InvalidRequestError("model_info must be an object.", param="model_info", code="invalid_type")
    entry = {"model_name": model_name, "litellm_params": litellm_params,
             "model_info": {**(model_info or {}), "id": deployment_id}}
    try:
        spec = deployment_spec_from_entry(entry, where=_WHERE)
    except ConfigError as error:
        raise _invalid(str(error)) from None
    _check_provider_params(spec)
    return spec


def _invalid(message: str) -> InvalidRequestError:
    message = _PREFIX.sub("", message)
    field = _FIELD.search(message)
    param = field.group(1) if field else ("litellm_params.model" if "is not supported" in message else None)
    return InvalidRequestError(message[:1].upper() + message[1:].rstrip(".") + ".", param=param,
                               code="invalid_deployment")


def _check_provider_params(spec: DeploymentSpec) -> None:
    params = spec.litellm_params
    for name, example in PROVIDER_REQUIRED_PARAMS.get(spec.provider, {}).items():
        if params.get(name) in (None, ""):
            raise InvalidRequestError(f"{spec.provider} deployments need litellm_params.{name} ({example}).",
                                      param=f"litellm_params.{name}", code="missing_required_parameter")
    if spec.provider in KEY_UNLESS_API_BASE and not params.get("api_base") and params.get("api_key") in (None, ""):
        raise InvalidRequestError(
            f"{spec.provider} deployments calling OpenAI need litellm_params.api_key (the key, or "
            "os.environ/OPENAI_API_KEY); an OpenAI-compatible server needs litellm_params.api_base.",
            param="litellm_params.api_key", code="missing_required_parameter")


def stored_params(row: Deployment) -> dict[str, Any]:
    """A row's full `litellm_params`: the stored ones with its decrypted secrets put back.

    Secrets that can no longer be decrypted (the key changed) are left out: the caller must send them again.
    """
    params = dict(row.litellm_params)
    with contextlib.suppress(SecretUnavailableError):
        params.update(decrypt_secrets(row.encrypted_secrets))
    return params


def merge_params(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's merge for `/model/update`: a key sent replaces the stored one, `null` leaves it as it is.

    An empty string clears a secret (a way to drop a stored `api_key`).
    """
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            continue
        if key in SECRET_PARAM_NAMES and value == "":
            merged.pop(key, None)
            continue
        merged[key] = value
    return merged


def public_params(params: dict[str, Any]) -> dict[str, Any]:
    """What may leave the gateway: every secret parameter removed, `os.environ/` references included."""
    return {key: value for key, value in params.items() if key not in SECRET_PARAM_NAMES}
