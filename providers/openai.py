"""OpenAI and every OpenAI-compatible server (vLLM, Ollama's /v1, LM Studio, ...).

Requests already are in the right format, so the adapter's job is small and must stay cheap: swap
in the deployment's model name, drop gateway-only fields, and relay the answer as the bytes the
provider sent. `text-completion-openai` models only have `/completions`; chat requests to them are
turned into a prompt and their answers back into chat completions.

Managed files: an `openai` deployment gets its own copy through the Files API (`POST /files`,
multipart, streamed) and a chat part then quotes that copy's id. `hosted_vllm` and `openai_like`
deployments use a second instance of this adapter built with `files_api=False`: vLLM, Ollama, LM
Studio and llama.cpp have no Files API and their chat endpoints take no `file_id`, so the files
registry carries files to them another way instead of uploading copies that would fail.

Native batches: the same `openai` deployments (and Azure, which inherits all of this) run Gatehouse
batch parts on OpenAI's Batch API: the rewritten JSONL copy is the provider batch's input file, the
batch is polled with `GET /batches/{id}`, and its output and error files are read back one line at a
time. The `files_api=False` instance has no Batch API either (vLLM, Ollama ...).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import BinaryIO, ClassVar
from urllib.parse import quote

import orjson

from providers.base import (
    BATCHES,
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    FILES,
    MODERATIONS,
    DeploymentTarget,
    Provider,
    UpstreamResponse,
    UpstreamStream,
    outbound_body,
)
from providers.batches import BATCH_INPUT_FILE, PROVIDER_BATCH_STATUSES, ProviderBatch
from providers.errors import (
    InvalidRequestError,
    UpstreamConnectionError,
    UpstreamNotFoundError,
    UpstreamServerError,
)
from providers.files import ProviderFileRef
from providers.http import (
    Deadline,
    iter_jsonl_objects,
    iter_sse_events,
    multipart_body,
    read_all,
    send,
    sse_data,
)
from providers.translate.embeddings import encode_embeddings_base64
from providers.translate.prompt import (
    chat_chunk_from_completion_chunk,
    chat_from_completion,
    prompt_from_messages,
)

OPENAI_API_BASE = "https://api.openai.com/v1"
DONE = b"[DONE]"
# OpenAI's Batch API accepts only this window; Gatehouse enforces the batch's own window itself.
PROVIDER_COMPLETION_WINDOW = "24h"
# A result line longer than this is not a batch output line but a broken file (a body is at most a few MB).


def openai_headers(target: DeploymentTarget) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    if target.organization:
        headers["OpenAI-Organization"] = target.organization
    extra = target.params.get("extra_headers")
    if isinstance(extra, dict):
        headers.update({str(key): str(value) for key, value in extra.items()})
    return headers


def relay_chunks(response, deadline: Deadline, idle_timeout: float | None = None) -> Iterator[bytes]:
    """The JSON payload of each upstream SSE event, stopping at `[DONE]`; comments and blanks skipped.

    A stream that ends without `[DONE]` was cut off: that is an error, not a complete answer.
    """
    try:
        for event in iter_sse_events(response, deadline, idle_timeout):
            data = sse_data(event)
            if not data:
                continue
            if data == DONE:
                return
            yield data
        raise UpstreamConnectionError("The upstream stream ended before it was complete.")
    finally:
        response.close()


class OpenAIProvider(Provider):
    """OpenAI's own API, or any server that speaks it at `api_base`."""

    name = "openai"
    operations = frozenset({CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS})
    supports_files: ClassVar[bool] = True
    supports_batches: ClassVar[bool] = True
    batch_input: ClassVar[str] = BATCH_INPUT_FILE

    def __init__(self, *, files_api: bool = True) -> None:
        """`files_api=False` for servers that speak OpenAI's chat but have no Files API (vLLM, Ollama...):
        without files there is no Batch API either, so their batches run on the gateway's workers."""
        if not files_api:
            # This instance only; the class keeps its defaults.
            self.supports_files = False  # type: ignore[misc]
            self.supports_batches = False  # type: ignore[misc]

    def url(self, target: DeploymentTarget, path: str) -> tuple[str, dict[str, str] | None]:
        """The endpoint URL and query parameters for one operation (Azure overrides this)."""
        base = (target.api_base or OPENAI_API_BASE).rstrip("/")
        return f"{base}/{path}", None

    def headers(self, target: DeploymentTarget) -> dict[str, str]:
        return openai_headers(target)

    def _post(self, target: DeploymentTarget, path: str, payload: dict, deadline: Deadline,
              first_chunk_timeout: float | None = None):
        url, params = self.url(target, path)
        return send("POST", url, headers=self.headers(target), body=orjson.dumps(payload), params=params,
                    deadline=deadline, first_byte_timeout=first_chunk_timeout)

    def _call(self, target: DeploymentTarget, path: str, payload: dict, deadline: Deadline) -> UpstreamResponse:
        response = self._post(target, path, payload, deadline)
        return UpstreamResponse.from_upstream(read_all(response, deadline))

    def _stream(self, target: DeploymentTarget, path: str, payload: dict, deadline: Deadline,
                first_chunk_timeout: float | None) -> UpstreamStream:
        payload["stream"] = True
        response = self._post(target, path, payload, deadline, first_chunk_timeout)
        return UpstreamStream(relay_chunks(response, deadline, first_chunk_timeout), close=response.close)

    def chat(self, target, body, deadline):
        return self._call(target, "chat/completions", outbound_body(body, target.model), deadline)

    def chat_stream(self, target, body, deadline, first_chunk_timeout):
        payload = outbound_body(body, target.model)
        return self._stream(target, "chat/completions", payload, deadline, first_chunk_timeout)

    def completion(self, target, body, deadline):
        return self._call(target, "completions", outbound_body(body, target.model), deadline)

    def completion_stream(self, target, body, deadline, first_chunk_timeout):
        payload = outbound_body(body, target.model)
        return self._stream(target, "completions", payload, deadline, first_chunk_timeout)

    def embedding(self, target, body, deadline):
        payload = outbound_body(body, target.model)
        wants_base64 = payload.get("encoding_format") == "base64"
        if wants_base64 and not self.encodes_base64_natively(target):
            # Many compatible servers ignore or reject base64; ask for floats and encode them here.
            payload["encoding_format"] = "float"
            response = self._call(target, "embeddings", payload, deadline)
            return UpstreamResponse.from_object(encode_embeddings_base64(response.parsed))
        return self._call(target, "embeddings", payload, deadline)

    def encodes_base64_natively(self, target: DeploymentTarget) -> bool:
        """Only OpenAI itself is known to honour `encoding_format=base64`; other servers get floats."""
        return target.api_base is None or target.api_base.rstrip("/") == OPENAI_API_BASE

    def moderation(self, target, body, deadline):
        return self._call(target, "moderations", outbound_body(body, target.model), deadline)

    # --- files ------------------------------------------------------------------------------
    def files_url(self, target: DeploymentTarget, file_id: str | None = None) -> tuple[str, dict[str, str] | None]:
        """`<api_base>/files` or `<api_base>/files/<id>` (Azure overrides this: its files are per resource)."""
        url, params = self.url(target, "files")
        return (f"{url}/{quote(file_id, safe='')}" if file_id else url), params

    def file_purpose(self, purpose: str) -> str:
        """The purpose sent upstream; OpenAI takes its own purposes as they are."""
        return purpose

    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """`POST /files` (multipart `purpose` then `file`, streamed with its length); the answer's `id` is the copy."""
        self._require_files_api(target)
        body = multipart_body([("purpose", self.file_purpose(purpose))], file_field="file", filename=filename,
                              content=content, size=size, mime_type=mime_type)
        url, params = self.files_url(target)
        response = send("POST", url, headers=self._file_headers(target), body=body, params=params, deadline=deadline)
        uploaded = UpstreamResponse.from_upstream(read_all(response, deadline)).parsed
        file_id = uploaded.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise UpstreamServerError("The upstream provider accepted the file but returned no file id.")
        return ProviderFileRef(file_id=file_id, uri=None, mime_type=mime_type)

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """`DELETE /files/<id>`; a 404 means the copy is already gone, which is what was asked."""
        self._require_files_api(target)
        if not ref.file_id:
            return
        url, params = self.files_url(target, ref.file_id)
        try:
            response = send("DELETE", url, headers=self._file_headers(target), params=params, deadline=deadline)
        except UpstreamNotFoundError:
            return
        read_all(response, deadline)

    def _file_headers(self, target: DeploymentTarget) -> dict[str, str]:
        headers = self.headers(target)
        headers.pop("Content-Type", None)  # a multipart body sets its own; a DELETE has none
        return headers

    def _require_files_api(self, target: DeploymentTarget) -> None:
        if not self.supports_files:
            raise self._unsupported(FILES)

    # --- batches ----------------------------------------------------------------------------
    def batches_url(self, target: DeploymentTarget, batch_id: str | None = None,
                    action: str | None = None) -> tuple[str, dict[str, str] | None]:
        """`<api_base>/batches[/<id>[/<action>]]` (Azure overrides this: its batches are per resource)."""
        url, params = self.url(target, "batches")
        if batch_id:
            url = f"{url}/{quote(batch_id, safe='')}"
            if action:
                url = f"{url}/{action}"
        return url, params

    def batch_create(self, target: DeploymentTarget, *, endpoint: str, input_file: ProviderFileRef | None,
                     requests: list[dict] | None, metadata: dict[str, str], deadline: Deadline) -> ProviderBatch:
        """`POST /batches` with the deployment's copy of the input; the window is always OpenAI's `24h`."""
        self._require_batches()
        if input_file is None or not input_file.file_id:
            raise InvalidRequestError("A native OpenAI batch needs the deployment's copy of the input file.",
                                      param="input_file_id", code="missing_required_parameter")
        payload = {"input_file_id": input_file.file_id, "endpoint": endpoint,
                   "completion_window": PROVIDER_COMPLETION_WINDOW, "metadata": metadata}
        url, params = self.batches_url(target)
        response = send("POST", url, headers=self.headers(target), body=orjson.dumps(payload), params=params,
                        deadline=deadline)
        return provider_batch_from(UpstreamResponse.from_upstream(read_all(response, deadline)).parsed)

    def batch_retrieve(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """`GET /batches/<id>`."""
        self._require_batches()
        url, params = self.batches_url(target, batch_id)
        response = send("GET", url, headers=self._file_headers(target), params=params, deadline=deadline)
        return provider_batch_from(UpstreamResponse.from_upstream(read_all(response, deadline)).parsed)

    def batch_cancel(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """`POST /batches/<id>/cancel`: the batch turns `cancelling`, then `cancelled` with what was done."""
        self._require_batches()
        url, params = self.batches_url(target, batch_id, "cancel")
        response = send("POST", url, headers=self._file_headers(target), params=params, deadline=deadline)
        return provider_batch_from(UpstreamResponse.from_upstream(read_all(response, deadline)).parsed)

    def batch_results(self, target: DeploymentTarget, batch: ProviderBatch, deadline: Deadline) -> Iterator[dict]:
        """The output file's lines, then the error file's, each read from the socket as it arrives.

        OpenAI's lines already are OpenAI's batch output lines: they are only parsed. Only one line is
        ever held in memory (plus one socket read), whatever the size of the files.
        """
        self._require_batches()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                yield from self._result_lines(target, file_id, deadline)

    def _result_lines(self, target: DeploymentTarget, file_id: str, deadline: Deadline) -> Iterator[dict]:
        url, params = self.files_url(target, file_id)
        response = send("GET", f"{url}/content", headers=self._file_headers(target), params=params,
                        deadline=deadline)
        return iter_jsonl_objects(response, deadline, source=f"batch result file {file_id}")

    def batch_file_delete(self, target: DeploymentTarget, file_id: str, deadline: Deadline) -> None:
        """`DELETE /files/<id>` of a shard's input or a batch's output; a 404 means it is already gone."""
        if self.supports_batches and file_id:
            self.file_delete(target, ProviderFileRef(file_id=file_id, uri=None, mime_type=""), deadline)

    def _require_batches(self) -> None:
        if not self.supports_batches:
            raise self._unsupported(BATCHES)


def provider_batch_from(parsed: dict) -> ProviderBatch:
    """OpenAI's (and Azure's) batch object as a `ProviderBatch`.

    Both already use OpenAI's status words; one this code does not know yet (a new provider state)
    is reported as `in_progress`, so the batch is polled again rather than taken as finished.
    """
    batch_id = parsed.get("id")
    if not isinstance(batch_id, str) or not batch_id:
        raise UpstreamServerError("The upstream provider answered a batch call without a batch id.")
    raw_status = str(parsed.get("status") or "")
    counts = parsed.get("request_counts") if isinstance(parsed.get("request_counts"), dict) else {}
    errors = parsed.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else errors
    return ProviderBatch(
        id=batch_id, status=raw_status if raw_status in PROVIDER_BATCH_STATUSES else "in_progress",
        raw_status=raw_status, total=_count(counts.get("total")), completed=_count(counts.get("completed")),
        failed=_count(counts.get("failed")), output_file_id=parsed.get("output_file_id") or None,
        error_file_id=parsed.get("error_file_id") or None,
        errors=[entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else [])


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class TextCompletionOpenAIProvider(OpenAIProvider):
    """Models that only have the legacy `/completions` endpoint (davinci-style, instruct models)."""

    name = "text-completion-openai"
    operations = frozenset({CHAT, COMPLETIONS})
    # A prompt has no place for a file reference; its batches run on the gateway's workers.
    supports_files: ClassVar[bool] = False
    supports_batches: ClassVar[bool] = False
    # A prompt has no room for tools or a response format; a tool-less text answer would mislead the caller.
    unsupported_params = frozenset({"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
                                    "response_format"})

    def chat(self, target, body, deadline):
        request = _completion_request_from_chat(body, target.model)
        response = self._call(target, "completions", request, deadline)
        return UpstreamResponse.from_object(chat_from_completion(response.parsed))

    def chat_stream(self, target, body, deadline, first_chunk_timeout):
        request = _completion_request_from_chat(body, target.model)
        upstream = self._stream(target, "completions", request, deadline, first_chunk_timeout)
        return UpstreamStream(_chat_chunks(upstream.chunks), close=upstream.close)


CHAT_ONLY_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "max_completion_tokens",
                    "logprobs", "top_logprobs", "stream_options")


def _completion_request_from_chat(body: dict, model: str) -> dict:
    """A `/completions` request from a chat one: a prompt, and chat-only fields translated or dropped."""
    request = outbound_body(body, model)
    request["prompt"] = prompt_from_messages(request.pop("messages", []))
    chat_fields = {name: request.pop(name) for name in CHAT_ONLY_FIELDS if name in request}
    if chat_fields.get("max_completion_tokens") is not None:
        request.setdefault("max_tokens", chat_fields["max_completion_tokens"])
    if chat_fields.get("logprobs") is True:
        # Chat asks `logprobs: true, top_logprobs: k`; completions asks `logprobs: k`.
        request["logprobs"] = chat_fields.get("top_logprobs") or 0
    if chat_fields.get("stream_options"):
        request["stream_options"] = chat_fields["stream_options"]
    return request


def _chat_chunks(completion_chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Completion chunks re-shaped as chat chunks; each choice's first delta carries the role."""
    started: set[int] = set()
    created = int(time.time())
    for data in completion_chunks:
        chunk = orjson.loads(data)
        indexes = {choice.get("index", 0) for choice in chunk.get("choices") or []}
        first = bool(indexes - started)
        started |= indexes
        yield orjson.dumps(chat_chunk_from_completion_chunk(chunk, first=first, created=created))
