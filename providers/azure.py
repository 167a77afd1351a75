"""Azure OpenAI: OpenAI's formats at deployment-scoped URLs, with an `api-version` and an `api-key`.

`litellm_params.model: azure/<deployment>` names the Azure deployment; `api_base` is the resource
endpoint (`https://<resource>.openai.azure.com`). Either `api_key` (sent as `api-key`) or
`azure_ad_token` (sent as a bearer token) authenticates.
"""
from __future__ import annotations

from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, DeploymentTarget
from providers.errors import InvalidRequestError
from providers.openai import OpenAIProvider

DEFAULT_API_VERSION = "2024-10-21"


class AzureProvider(OpenAIProvider):
    name = "azure"
    operations = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})

    def url(self, target: DeploymentTarget, path: str) -> tuple[str, dict[str, str] | None]:
        if not target.api_base:
            raise InvalidRequestError(f"Azure deployment '{target.deployment_id}' has no api_base configured.")
        base = target.api_base.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        return (f"{base}/openai/deployments/{target.model}/{path}",
                {"api-version": target.api_version or DEFAULT_API_VERSION})

    def headers(self, target: DeploymentTarget) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        token = target.params.get("azure_ad_token")
        if target.api_key:
            headers["api-key"] = target.api_key
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        extra = target.params.get("extra_headers")
        if isinstance(extra, dict):
            headers.update({str(key): str(value) for key, value in extra.items()})
        return headers

    def encodes_base64_natively(self, target: DeploymentTarget) -> bool:
        return True
