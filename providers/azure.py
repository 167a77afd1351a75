"""Azure OpenAI: OpenAI's formats at deployment-scoped URLs, with an `api-version` and an `api-key`.

`litellm_params.model: azure/<deployment>` names the Azure deployment; `api_base` is the resource
endpoint (`https://<resource>.openai.azure.com`). Either `api_key` (sent as `api-key`) or
`azure_ad_token` (sent as a bearer token) authenticates.

Files live on the resource, not on a deployment: `<endpoint>/openai/files?api-version=...`. Azure's GA
API takes the purposes `assistants`, `batch` and `fine-tune`; OpenAI's `user_data` and `vision` (files
meant for the model to read) are sent as `assistants`, Azure's purpose for documents a model uses,
and `evals` (JSONL datasets) as `fine-tune`. Other purposes go as they are, for Azure to judge.

Batches (Azure's Global Batch deployments) are resource-wide too: `<endpoint>/openai/batches?api-version=...`,
with OpenAI's request and batch object. The input file's `body.model` must name the Azure deployment,
which is why every deployment gets its own rewritten copy of a batch input. Results are read from
`<endpoint>/openai/files/<id>/content`, as every other file.
"""
from __future__ import annotations

from urllib.parse import quote

from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, DeploymentTarget
from providers.errors import InvalidRequestError
from providers.openai import OpenAIProvider

DEFAULT_API_VERSION = "2024-10-21"
AZURE_FILE_PURPOSES = {"user_data": "assistants", "vision": "assistants", "evals": "fine-tune"}


class AzureProvider(OpenAIProvider):
    name = "azure"
    operations = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})

    def url(self, target: DeploymentTarget, path: str) -> tuple[str, dict[str, str] | None]:
        return (f"{self._endpoint(target)}/openai/deployments/{target.model}/{path}",
                {"api-version": target.api_version or DEFAULT_API_VERSION})

    def _endpoint(self, target: DeploymentTarget) -> str:
        """The resource endpoint (`https://<resource>.openai.azure.com`), with or without `/openai` configured."""
        if not target.api_base:
            raise InvalidRequestError(f"Azure deployment '{target.deployment_id}' has no api_base configured.")
        base = target.api_base.rstrip("/")
        return base[: -len("/openai")] if base.endswith("/openai") else base

    def files_url(self, target: DeploymentTarget, file_id: str | None = None) -> tuple[str, dict[str, str] | None]:
        """Files belong to the resource: `<endpoint>/openai/files[/<id>]`, not under a deployment."""
        url = f"{self._endpoint(target)}/openai/files"
        return (f"{url}/{quote(file_id, safe='')}" if file_id else url,
                {"api-version": target.api_version or DEFAULT_API_VERSION})

    def batches_url(self, target: DeploymentTarget, batch_id: str | None = None,
                    action: str | None = None) -> tuple[str, dict[str, str] | None]:
        """Batches belong to the resource: `<endpoint>/openai/batches[/<id>[/<action>]]`."""
        url = f"{self._endpoint(target)}/openai/batches"
        if batch_id:
            url = f"{url}/{quote(batch_id, safe='')}" + (f"/{action}" if action else "")
        return url, {"api-version": target.api_version or DEFAULT_API_VERSION}

    def file_purpose(self, purpose: str) -> str:
        return AZURE_FILE_PURPOSES.get(purpose, purpose)

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
