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

Managed files: Vertex AI reads files from Cloud Storage, so a deployment's copy is an object in its
bucket (`gcs_bucket_name`; see providers/google_files.py), uploaded in one streamed media request with
the same service-account token (its `cloud-platform` scope covers Cloud Storage), and quoted in
prompts as `fileData` with its `gs://` URI.
"""
from __future__ import annotations

from typing import Any, BinaryIO, ClassVar
from urllib.parse import quote

from providers.base import DeploymentTarget, UpstreamResponse
from providers.errors import ProviderError, UpstreamServerError
from providers.files import ProviderFileRef
from providers.gemini import (
    GOOGLE_UNSUPPORTED_PARAMS,
    GeminiProvider,
    embeddings_response,
    google_error,
    model_id,
    parse_object,
    with_extra_headers,
)
from providers.google_auth import CredentialsUnusableError, service_account_token
from providers.google_files import new_object_name, split_gs_uri, storage_base, storage_location
from providers.http import Deadline, file_body, read_all, send
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


    # -- managed files: objects in the deployment's Cloud Storage bucket ---------------------------------
    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """Write the copy as a new object (`ifGenerationMatch=0`: never over an existing one) and return its URI.

        The bucket is checked before the token is fetched, so a deployment without one fails at once.
        """
        bucket, prefix = storage_location(target)
        name = new_object_name(prefix, filename)
        response = send("POST", f"{storage_base(target)}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
                        headers=self._storage_headers(target, deadline), body=file_body(content, size, mime_type),
                        params={"uploadType": "media", "name": name, "ifGenerationMatch": "0"},
                        deadline=deadline, error_mapper=google_error)
        stored = parse_object(read_all(response, deadline))
        if stored.get("name") != name or stored.get("bucket", bucket) != bucket:
            raise UpstreamServerError("Cloud Storage answered the upload with another object than the one written.")
        return ProviderFileRef(file_id=None, uri=f"gs://{bucket}/{name}", mime_type=mime_type)

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """Delete the object; one that is already gone (404) counts as deleted."""
        bucket, name = split_gs_uri(ref.uri)
        url = f"{storage_base(target)}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        try:
            response = send("DELETE", url, headers=self._storage_headers(target, deadline), deadline=deadline,
                            error_mapper=_object_error)
        except _ObjectGoneError:
            return
        read_all(response, deadline)

    def _storage_headers(self, target: DeploymentTarget, deadline: Deadline) -> dict[str, str]:
        """The bearer token only: a deployment's `extra_headers` are meant for its Vertex AI endpoint."""
        token = service_account_token(target.params.get("vertex_credentials"), deadline, label=target.deployment_id)
        return {"Authorization": f"Bearer {token.token}"}


class _ObjectGoneError(ProviderError):
    """The object is not there any more (raised only to be caught by `file_delete`)."""


def _object_error(status: int, payload: bytes, headers) -> ProviderError:
    if status == 404:
        return _ObjectGoneError("The object no longer exists.")
    return google_error(status, payload, headers)
