"""Google's Gemini API (`generativelanguage.googleapis.com`) behind OpenAI's chat and embeddings formats.

`litellm_params.model: gemini/<model>`; `api_key` is sent in the `x-goog-api-key` header (never in the
URL, where it would end up in access logs); `api_base` replaces the default host (a proxy, a private
endpoint) and `api_version` the default `v1beta`. Chat goes to `:generateContent`, streams to
`:streamGenerateContent?alt=sse`, one embedding to `:embedContent` and several to
`:batchEmbedContents`. The translation (providers/translate/gemini*.py) is shared with Vertex AI,
which subclasses this adapter for its URLs and OAuth tokens.

Google's errors (`{"error": {"code", "message", "status", "details"}}`) are mapped by `google_error`
so that retries and fallbacks behave as for every other provider.

Managed files: a deployment's copy of a Gatehouse file lives in the Files API: a resumable upload
(start, then the bytes streamed with `upload, finalize`), a wait while Gemini processes it, and the
48-hour expiry Gemini sets. A chat quoting the copy sends `fileData {fileUri, mimeType}`.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

import orjson

from providers.base import CHAT, EMBEDDINGS, DeploymentTarget, Provider, UpstreamResponse, UpstreamStream
from providers.errors import (
    ContextWindowExceededError,
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.files import ProviderFileRef
from providers.google_files import (
    CLEANUP_SECONDS,
    DISPLAY_NAME_MAX_CHARS,
    FILE_NAME_PATTERN,
    FILES_API_VERSION,
    PROCESSING_POLL_FIRST_SECONDS,
    PROCESSING_POLL_MAX_SECONDS,
    gemini_file_ref,
    same_origin,
)
from providers.http import (
    CONTEXT_WINDOW_PHRASES,
    Deadline,
    error_for_status,
    file_body,
    iter_sse_events,
    parse_retry_after,
    read_all,
    send,
    sse_data,
)
from providers.translate.embeddings import encode_embeddings_base64
from providers.translate.gemini import embed_content_request, embedding_inputs, generate_content_request
from providers.translate.gemini_response import StreamTranslator, chat_completion, embedding_list

logger = logging.getLogger("gatehouse.providers")

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"
GEMINI_API_VERSION = "v1beta"
# OpenAI parameters the Gemini API has no equivalent for (the others are translated, or, like `user`
# and `parallel_tool_calls`, only recorded by the gateway).
GOOGLE_UNSUPPORTED_PARAMS = frozenset({"logit_bias", "logprobs", "top_logprobs", "functions", "function_call",
                                       "prediction", "audio", "web_search_options"})


class GeminiProvider(Provider):
    """The Gemini API, keyed by an API key."""

    name = "gemini"
    operations = frozenset({CHAT, EMBEDDINGS})
    unsupported_params: ClassVar[frozenset[str]] = GOOGLE_UNSUPPORTED_PARAMS

    # -- where and how to call (Vertex AI overrides this) ----------------------------------------------
    def request_target(self, target: DeploymentTarget, method: str, deadline: Deadline) -> tuple[str, dict]:
        """The URL of `models/<model>:<method>` and the headers that authenticate the call."""
        base = (target.api_base or GEMINI_API_BASE).rstrip("/")
        version = target.api_version or GEMINI_API_VERSION
        if not base.endswith(f"/{version}"):
            base = f"{base}/{version}"
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return f"{base}/models/{model_id(target.model)}:{method}", with_extra_headers(headers, target)

    # -- operations ---------------------------------------------------------------------------------
    def chat(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        answer = self._call(target, "generateContent", generate_content_request(body), deadline)
        return UpstreamResponse.from_object(chat_completion(answer, target.model))

    def chat_stream(self, target: DeploymentTarget, body: dict, deadline: Deadline,
                    first_chunk_timeout: float | None) -> UpstreamStream:
        request = generate_content_request(body)
        response = self._post(target, "streamGenerateContent", request, deadline, params={"alt": "sse"},
                              first_byte_timeout=first_chunk_timeout)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        translator = StreamTranslator(target.model, include_usage=include_usage)
        return UpstreamStream(stream_chunks(response, deadline, first_chunk_timeout, translator),
                              close=response.close)

    def embedding(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        texts, single = embedding_inputs(body)
        model = model_id(target.model)
        if single:
            answer = self._call(target, "embedContent", embed_content_request(model, texts[0], body), deadline)
            vectors = [_values(answer.get("embedding"))]
        else:
            requests = [embed_content_request(model, text, body) for text in texts]
            answer = self._call(target, "batchEmbedContents", {"requests": requests}, deadline)
            vectors = [_values(item) for item in answer.get("embeddings") or []]
        if len(vectors) != len(texts):
            raise UpstreamServerError(f"Gemini returned {len(vectors)} embeddings for {len(texts)} inputs.")
        return embeddings_response(vectors, target.model, body)

    # -- managed files ------------------------------------------------------------------------------
    supports_files: ClassVar[bool] = True

    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """Upload to the Files API with its resumable protocol, and wait until Gemini can use the file.

        The Gemini API has no purposes: any file may be quoted in a prompt. The session URL Google
        answers authorises the second step by itself; the deployment's key and extra headers go to
        it only when it is on the same host as the API (a proxy may need them; nobody else gets them).
        """
        root = files_root(target)
        headers = self._files_headers(target)
        start = send("POST", f"{root}/upload/{FILES_API_VERSION}/files", deadline=deadline, error_mapper=google_error,
                     headers={**headers, "Content-Type": "application/json", "X-Goog-Upload-Protocol": "resumable",
                              "X-Goog-Upload-Command": "start", "X-Goog-Upload-Header-Content-Length": str(size),
                              "X-Goog-Upload-Header-Content-Type": mime_type},
                     body=orjson.dumps({"file": {"display_name": filename[:DISPLAY_NAME_MAX_CHARS]}}))
        upload_url = start.headers.get("X-Goog-Upload-URL") or ""
        read_all(start, deadline)
        if not upload_url.startswith(("https://", "http://")):
            raise UpstreamServerError("The Gemini Files API did not answer an upload URL.")
        upload_headers = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
        if same_origin(upload_url, root):
            upload_headers = {**headers, **upload_headers}
        response = send("POST", upload_url, headers=upload_headers, body=file_body(content, size, mime_type),
                        deadline=deadline, error_mapper=google_error)
        resource = parse_object(read_all(response, deadline)).get("file")
        if not isinstance(resource, dict):
            raise UpstreamServerError("The Gemini Files API answered the upload without the file.")
        ref = gemini_file_ref(resource, mime_type)
        if resource.get("state") == "PROCESSING":
            self._wait_until_active(target, ref, deadline)
        elif resource.get("state") == "FAILED":
            raise self._processing_failed(target, ref, resource)
        return ref

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """Delete the Files API copy; one Gemini no longer knows (or has let expire) counts as deleted.

        Google answers 403 "... or it may not exist" for a file it does not have, not 404.
        """
        if ref.expires_at is not None and ref.expires_at <= time.time():
            return  # Gemini has deleted it already
        try:
            response = send("DELETE", self._file_url(target, ref), headers=self._files_headers(target),
                            deadline=deadline, error_mapper=_file_error)
        except _FileGoneError:
            return
        read_all(response, deadline)

    def file_part(self, ref: ProviderFileRef, part: dict) -> dict:
        """A `file` part naming the copy's URI and MIME type, which the Gemini translation (shared with
        Vertex AI) turns into `{"fileData": {"mimeType", "fileUri"}}`: `file_id` holding a URI is read as
        one, and `format` is the MIME type, as LiteLLM spells it for file parts."""
        return {"type": "file", "file": {"file_id": ref.uri or ref.file_id, "format": ref.mime_type}}

    def _wait_until_active(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """Poll the file while Gemini processes it (videos take a while; PDFs are usually ACTIVE at once).

        A file still processing at the deadline, or that Gemini failed to process, is deleted (best
        effort, on a short deadline of its own) rather than left behind unrecorded.
        """
        delay = PROCESSING_POLL_FIRST_SECONDS
        try:
            while True:
                if deadline.remaining() <= delay:
                    raise UpstreamTimeoutError(
                        "Gemini was still processing the uploaded file when the request timed out.")
                time.sleep(delay)
                delay = min(delay * 2, PROCESSING_POLL_MAX_SECONDS)
                response = send("GET", self._file_url(target, ref), headers=self._files_headers(target),
                                deadline=deadline, error_mapper=google_error)
                resource = parse_object(read_all(response, deadline))
                state = resource.get("state")
                if state == "FAILED":
                    raise self._processing_failed(target, ref, resource)
                if state != "PROCESSING":
                    return
        except UpstreamTimeoutError:
            self._discard(target, ref)
            raise

    def _processing_failed(self, target: DeploymentTarget, ref: ProviderFileRef, resource: dict) -> ProviderError:
        self._discard(target, ref)
        status = resource.get("error") if isinstance(resource.get("error"), dict) else {}
        reason = f": {status['message']}" if isinstance(status.get("message"), str) else "."
        return UpstreamBadRequestError(f"Gemini could not process the uploaded file{reason}",
                                       code="file_processing_failed")

    def _discard(self, target: DeploymentTarget, ref: ProviderFileRef) -> None:
        try:
            self.file_delete(target, ref, Deadline.after(CLEANUP_SECONDS))
        except ProviderError:
            logger.warning("could not delete an unusable Gemini file", extra={"deployment": target.deployment_id})

    def _files_headers(self, target: DeploymentTarget) -> dict[str, str]:
        headers = {"x-goog-api-key": target.api_key} if target.api_key else {}
        return with_extra_headers(headers, target)

    def _file_url(self, target: DeploymentTarget, ref: ProviderFileRef) -> str:
        name = ref.file_id or ""
        if not FILE_NAME_PATTERN.match(name):
            raise UpstreamBadRequestError("This copy does not name a Gemini file (files/<id>).",
                                          code="invalid_file_ref")
        return f"{files_root(target)}/{FILES_API_VERSION}/{name}"

    # -- plumbing -----------------------------------------------------------------------------------
    def _post(self, target: DeploymentTarget, method: str, payload: dict, deadline: Deadline, *,
              params: dict[str, str] | None = None, first_byte_timeout: float | None = None):
        url, headers = self.request_target(target, method, deadline)
        return send("POST", url, headers=headers, body=orjson.dumps(payload), params=params, deadline=deadline,
                    first_byte_timeout=first_byte_timeout, error_mapper=google_error)

    def _call(self, target: DeploymentTarget, method: str, payload: dict, deadline: Deadline) -> dict:
        response = self._post(target, method, payload, deadline)
        return parse_object(read_all(response, deadline))


class _FileGoneError(ProviderError):
    """The file is not there any more (raised only to be caught by `file_delete`)."""


def _file_error(status: int, payload: bytes, headers) -> ProviderError:
    """`google_error`, except that a file Google does not know is gone rather than failed."""
    if status == 404 or (status == 403 and b"may not exist" in payload):
        return _FileGoneError("The file no longer exists.")
    return google_error(status, payload, headers)


def files_root(target: DeploymentTarget) -> str:
    """The API's host (and any proxy path) without the version: the Files API routes choose their own."""
    base = (target.api_base or GEMINI_API_BASE).rstrip("/")
    for version in (target.api_version, GEMINI_API_VERSION, "v1"):
        if version and base.endswith(f"/{version}"):
            return base[: -len(version) - 1]
    return base


def model_id(model: str) -> str:
    """`models/gemini-2.0-flash` and `gemini-2.0-flash` name the same model."""
    return model[len("models/"):] if model.startswith("models/") else model


def with_extra_headers(headers: dict[str, str], target: DeploymentTarget) -> dict[str, str]:
    extra = target.params.get("extra_headers")
    if isinstance(extra, dict):
        headers.update({str(key): str(value) for key, value in extra.items()})
    return headers


def parse_object(payload: bytes) -> dict:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamServerError("The upstream provider returned a body that is not a JSON object.")
    return parsed


def embeddings_response(vectors: list[list[float]], model: str, body: dict, prompt_tokens: int = 0) -> UpstreamResponse:
    """The OpenAI embedding list, base64-encoded here when asked (Google's APIs only return floats)."""
    result = embedding_list(vectors, model, prompt_tokens)
    if body.get("encoding_format") == "base64":
        encode_embeddings_base64(result)
    return UpstreamResponse.from_object(result)


def _values(embedding: Any) -> list[float]:
    values = embedding.get("values") if isinstance(embedding, dict) else None
    if not isinstance(values, list):
        raise UpstreamServerError("Gemini returned an embedding without values.")
    return values


def stream_chunks(response, deadline: Deadline, idle_timeout: float | None,
                  translator: StreamTranslator) -> Iterator[bytes]:
    """Each upstream SSE event translated as it arrives; an error object inside the stream is raised."""
    try:
        for event in iter_sse_events(response, deadline, idle_timeout):
            data = sse_data(event)
            if not data:
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamServerError("The upstream stream sent an event that is not JSON.") from None
            if not isinstance(parsed, dict):
                raise UpstreamServerError("The upstream stream sent an event that is not a JSON object.")
            if "error" in parsed:
                raise google_error_from_object(parsed, status=None, headers=None)
            chunk = translator.chunk(parsed)
            if chunk is not None:
                yield chunk
        tail = translator.close()
        if tail is not None:
            yield tail
    finally:
        response.close()


# --- errors ----------------------------------------------------------------------------------------

AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
BAD_REQUEST_STATUSES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
SERVER_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN", "ABORTED", "DATA_LOSS"})
# How Gemini words a prompt longer than the model's context.
GEMINI_CONTEXT_PHRASES = ("input token count", "exceeds the maximum number of tokens", "too many tokens")
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def google_error(status: int, payload: bytes, headers) -> ProviderError:
    """Map an HTTP error from the Gemini API or Vertex AI onto our hierarchy."""
    try:
        parsed = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]  # Vertex AI wraps some errors in a one-element array
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return error_for_status(status, payload, headers)
    return google_error_from_object(parsed, status=status, headers=headers)


def google_error_from_object(parsed: dict, *, status: int | None, headers) -> ProviderError:
    """The error for a parsed Google error object (from an error response, or inside a stream)."""
    error = parsed.get("error") if isinstance(parsed.get("error"), dict) else {}
    http_status = status or _int(error.get("code")) or 500
    google_status = str(error.get("status") or "").upper()
    message = str(error.get("message") or f"The upstream provider failed with HTTP {http_status}.")
    details = [item for item in error.get("details") or [] if isinstance(item, dict)]
    reasons = {str(item.get("reason")) for item in details if item.get("@type") == ERROR_INFO_TYPE}
    if google_status == "RESOURCE_EXHAUSTED" or http_status == 429:
        retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None)
        if retry_after is None:
            retry_after = _retry_delay(details)
        out_headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else None
        return UpstreamRateLimitError(message, retry_after=retry_after, headers=out_headers)
    if (google_status in AUTH_STATUSES or http_status in (401, 403) or "API_KEY_INVALID" in reasons
            or "api key not valid" in message.lower()):
        # Google's text is never repeated: it may quote the key or the service account.
        return UpstreamAuthenticationError(
            "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.")
    if google_status == "NOT_FOUND" or http_status == 404:
        return UpstreamNotFoundError(message)
    if google_status == "DEADLINE_EXCEEDED" or http_status == 504:
        return UpstreamTimeoutError(message)
    if google_status in SERVER_STATUSES or http_status >= 500 or http_status in (408, 409):
        server_error = UpstreamServerError(message)
        if google_status == "UNAVAILABLE" or http_status == 503:
            server_error.status_code = 503
        return server_error
    lowered = message.lower()
    if any(phrase in lowered for phrase in GEMINI_CONTEXT_PHRASES + CONTEXT_WINDOW_PHRASES):
        return ContextWindowExceededError(message)
    code = google_status.lower() if google_status in BAD_REQUEST_STATUSES else None
    return UpstreamBadRequestError(message, code=code)


def _retry_delay(details: list[dict]) -> float | None:
    """Seconds from a `google.rpc.RetryInfo` detail (`"retryDelay": "37s"` or `"1.5s"`)."""
    for item in details:
        if item.get("@type") != RETRY_INFO_TYPE:
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
