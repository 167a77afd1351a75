"""Gemini models on Vertex AI: the Gemini translation, Vertex's URLs, OAuth tokens from a service account.

`litellm_params.model: vertex_ai/<model>` with `vertex_project` (defaults to the key's `project_id`),
`vertex_location` (default `us-central1`; `global` uses the location-less host; LiteLLM's
`vertex_ai_project` / `vertex_ai_location` spellings are read too) and
`vertex_credentials` (service-account JSON, a path to it, or an `os.environ/` reference). `api_base`
replaces `https://<location>-aiplatform.googleapis.com` (a proxy or Private Service Connect endpoint);
the `/v1/projects/...` path is kept.

Chat and streams use the same `generateContent` bodies as the Gemini API. Embeddings use Vertex's
`:predict` with one instance per input (the text-embedding models' interface), whose token counts
become the usage. Access tokens come from providers/google_auth.py, cached per credentials.
"""
from __future__ import annotations

from typing import Any, ClassVar

from providers.base import DeploymentTarget, UpstreamResponse
from providers.errors import UpstreamServerError
from providers.gemini import (
    GOOGLE_UNSUPPORTED_PARAMS,
    GeminiProvider,
    embeddings_response,
    model_id,
    with_extra_headers,
)
from providers.google_auth import CredentialsUnusableError, service_account_token
from providers.http import Deadline
from providers.translate.gemini import embedding_inputs

DEFAULT_LOCATION = "us-central1"
VERTEX_API_VERSION = "v1"


class VertexProvider(GeminiProvider):
    """Gemini on Vertex AI, authenticated with a service account's access token."""

    name = "vertex_ai"
    unsupported_params: ClassVar[frozenset[str]] = GOOGLE_UNSUPPORTED_PARAMS

    def request_target(self, target: DeploymentTarget, method: str, deadline: Deadline) -> tuple[str, dict]:
        """Vertex's URL for the model and method, and a bearer token (which also tells the default project)."""
        token = service_account_token(target.params.get("vertex_credentials"), deadline,
                                      label=target.deployment_id)
        params = target.params
        location = str(params.get("vertex_location") or params.get("vertex_ai_location") or DEFAULT_LOCATION)
        project = params.get("vertex_project") or params.get("vertex_ai_project") or token.project_id
        if not project:
            raise CredentialsUnusableError(
                f"Vertex AI deployment '{target.deployment_id}' has no vertex_project and its credentials "
                "name no project_id.")
        if target.api_base:
            host = target.api_base.rstrip("/")
        elif location == "global":
            host = "https://aiplatform.googleapis.com"
        else:
            host = f"https://{location}-aiplatform.googleapis.com"
        version = target.api_version or VERTEX_API_VERSION
        url = (f"{host}/{version}/projects/{project}/locations/{location}/publishers/google/models/"
               f"{model_id(target.model)}:{method}")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token.token}"}
        return url, with_extra_headers(headers, target)

    def embedding(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        texts, _ = embedding_inputs(body)
        task_type = body.get("task_type") or body.get("taskType")
        instances: list[dict[str, Any]] = [
            {"content": text, **({"task_type": task_type} if task_type else {})} for text in texts]
        request: dict[str, Any] = {"instances": instances}
        if body.get("dimensions") is not None:
            request["parameters"] = {"outputDimensionality": body["dimensions"]}
        answer = self._call(target, "predict", request, deadline)
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(texts):
            raise UpstreamServerError(f"Vertex AI returned {len(predictions or [])} embeddings for {len(texts)} "
                                      "inputs.")
        vectors, tokens = [], 0
        for prediction in predictions:
            embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
            values = embeddings.get("values") if isinstance(embeddings, dict) else None
            if not isinstance(values, list):
                raise UpstreamServerError("Vertex AI returned an embedding without values.")
            vectors.append(values)
            statistics = embeddings.get("statistics")
            if isinstance(statistics, dict) and isinstance(statistics.get("token_count"), int | float):
                tokens += int(statistics["token_count"])
        return embeddings_response(vectors, target.model, body, tokens)

