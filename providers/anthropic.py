"""Anthropic's Messages API, behind OpenAI's chat format and natively for the `/v1/messages` surface.

`litellm_params.model: anthropic/<model>` names the Claude model. `api_key` is sent as `x-api-key`;
`api_base` (default `https://api.anthropic.com`, with or without `/v1` or `/v1/messages`) points at
Anthropic or anything that speaks its API. The `anthropic-version` header is `2023-06-01` unless the
deployment sets `api_version` (or the header itself in `extra_headers`, which always wins). A
deployment's `max_tokens` replaces the default sent when a request names none.

Chat requests are translated both ways (`translate/anthropic.py`, `translate/anthropic_stream.py`).
`messages`, `messages_stream` and `count_tokens` relay Anthropic's own format untouched, so an
Anthropic client reaching an Anthropic deployment pays for no translation at all.

Managed files: every Anthropic deployment holds its copies in Anthropic's Files API (a beta:
`anthropic-beta: files-api-2025-04-14` on the upload, the delete and every Messages call that quotes
a file). A chat part for such a copy becomes a `document` (or `image`) block whose source is the
file id. Uploads are always on: a deployment whose account lacks the beta fails its copy visibly
(recorded per deployment by the files registry) rather than silently inlining the bytes.

Native batches run on Anthropic's Message Batches API, which takes the requests inline in the create
call (no input file): each OpenAI chat line is translated as `chat()` translates it, and each result
comes back as an OpenAI batch output line (`translate/anthropic_batches.py`, which also explains how
custom ids Anthropic would refuse are encoded and restored). Anthropic keeps no metadata on a batch,
so the gateway's is not sent.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO, ClassVar
from urllib.parse import quote, urlsplit

import orjson
import requests

from providers.base import CHAT, GATEWAY_ONLY_FIELDS, DeploymentTarget, Provider, UpstreamResponse, UpstreamStream
from providers.batches import BATCH_INPUT_INLINE, ProviderBatch
from providers.errors import (
    UpstreamBadRequestError,
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
from providers.translate.anthropic import (
    DEFAULT_MAX_TOKENS,
    UNSUPPORTED_FIELDS,
    answer_tool_requested,
    chat_completion,
    messages_request,
    uses_files_api,
)
from providers.translate.anthropic_batches import (
    CHAT_ENDPOINT,
    message_batch_requests,
    output_line,
    provider_batch,
)
from providers.translate.anthropic_errors import error_for_response, error_from_type
from providers.translate.anthropic_stream import ChunkTranslator

ANTHROPIC_API_BASE = "https://api.anthropic.com"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# Headers an Anthropic client may send that change what the API does; the `/v1/messages` surface forwards them.
FORWARDED_CLIENT_HEADERS = ("anthropic-beta", "anthropic-version")
# The beta flag Anthropic's Files API (and any message quoting one of its files) requires.
FILES_BETA = "files-api-2025-04-14"
# Generation settings the token-counting endpoint refuses; a client reusing a Messages body may send them.
NOT_COUNTED_FIELDS = frozenset({"max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
                                "metadata", "service_tier"})


class AnthropicProvider(Provider):
    """Claude models on Anthropic's API (or a server that speaks it at `api_base`)."""

    name = "anthropic"
    operations = frozenset({CHAT})
    unsupported_params: ClassVar[frozenset[str]] = UNSUPPORTED_FIELDS

    # --- plumbing --------------------------------------------------------------------------------
    def url(self, target: DeploymentTarget, path: str = "messages") -> str:
        """`<api_base>/v1/<path>`; an `api_base` written with `/v1` or `/v1/messages` (as LiteLLM allows) works too."""
        base = (target.api_base or ANTHROPIC_API_BASE).rstrip("/")
        for suffix in ("/messages", "/v1"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        return f"{base}/v1/{path}"

    def headers(self, target: DeploymentTarget, client_headers: Mapping[str, str] | None = None,
                betas: Iterable[str] = ()) -> dict[str, str]:
        """Version, key, the client's forwarded headers, the deployment's `extra_headers` (which win),
        then `betas` the call itself needs, added to whatever `anthropic-beta` list is already there."""
        headers = {"Content-Type": "application/json",
                   "anthropic-version": target.api_version or DEFAULT_ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        if client_headers:
            for name in FORWARDED_CLIENT_HEADERS:
                value = client_headers.get(name)
                if value:
                    headers[name] = value
        extra = target.params.get("extra_headers")
        if isinstance(extra, dict):
            headers.update({str(key): str(value) for key, value in extra.items()})
        for beta in betas:
            _add_beta(headers, beta)
        return headers

    def _post(self, target: DeploymentTarget, path: str, payload: dict, deadline: Deadline, *,
              first_chunk_timeout: float | None = None,
              client_headers: Mapping[str, str] | None = None) -> requests.Response:
        betas = (FILES_BETA,) if uses_files_api(payload.get("messages")) else ()
        return send("POST", self.url(target, path), headers=self.headers(target, client_headers, betas),
                    body=orjson.dumps(payload), deadline=deadline, first_byte_timeout=first_chunk_timeout,
                    error_mapper=error_for_response)

    def _call(self, target: DeploymentTarget, path: str, payload: dict, deadline: Deadline,
              client_headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        response = self._post(target, path, payload, deadline, client_headers=client_headers)
        return UpstreamResponse.from_upstream(read_all(response, deadline))

    # --- files (Anthropic's Files API, beta) ---------------------------------------------------
    supports_files: ClassVar[bool] = True

    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """`POST /v1/files` with the file alone (Anthropic has no purposes), streamed; the answer's `id` is the copy."""
        body = multipart_body([], file_field="file", filename=filename, content=content, size=size,
                              mime_type=mime_type)
        response = send("POST", self.url(target, "files"), headers=self._file_headers(target), body=body,
                        deadline=deadline, error_mapper=error_for_response)
        uploaded = UpstreamResponse.from_upstream(read_all(response, deadline)).parsed
        file_id = uploaded.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise UpstreamServerError("The upstream provider accepted the file but returned no file id.")
        return ProviderFileRef(file_id=file_id, uri=None, mime_type=mime_type)

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """`DELETE /v1/files/<id>`; Anthropic's 404 means the copy is already gone."""
        if not ref.file_id:
            return
        try:
            response = send("DELETE", self.url(target, f"files/{quote(ref.file_id, safe='')}"),
                            headers=self._file_headers(target), deadline=deadline, error_mapper=error_for_response)
        except UpstreamNotFoundError:
            return
        read_all(response, deadline)

    def file_part(self, ref: ProviderFileRef, part: dict) -> dict:
        """A `file_id` part with its type in `format`: the translation makes it a document (or image) block."""
        resolved = {"type": "file", "file": {"file_id": ref.file_id, "format": ref.mime_type}}
        if "cache_control" in part:
            resolved["cache_control"] = part["cache_control"]
        return resolved

    def _file_headers(self, target: DeploymentTarget) -> dict[str, str]:
        headers = self.headers(target, betas=(FILES_BETA,))
        headers.pop("Content-Type", None)  # a multipart body sets its own; a DELETE has none
        return headers

    # --- OpenAI chat ---------------------------------------------------------------------------
    def chat(self, target, body, deadline):
        """An OpenAI chat completion, answered by the Messages API and translated back."""
        request = messages_request(body, target.model, default_max_tokens=self._default_max_tokens(target))
        answer = self._call(target, "messages", request, deadline)
        return UpstreamResponse.from_object(chat_completion(answer.parsed, answer_tool=answer_tool_requested(body)))

    def chat_stream(self, target, body, deadline, first_chunk_timeout):
        """OpenAI chunks translated from Anthropic's events as each arrives; usage last when asked for."""
        request = messages_request(body, target.model, default_max_tokens=self._default_max_tokens(target))
        request["stream"] = True
        response = self._post(target, "messages", request, deadline, first_chunk_timeout=first_chunk_timeout)
        options = body.get("stream_options")
        translator = ChunkTranslator(answer_tool=answer_tool_requested(body),
                                     include_usage=isinstance(options, dict) and options.get("include_usage") is True)
        events = _parsed_events(response, deadline, first_chunk_timeout)
        return UpstreamStream(translator.chunks(events), close=response.close)

    def _default_max_tokens(self, target: DeploymentTarget) -> int:
        configured = target.params.get("max_tokens")
        if isinstance(configured, str) and configured.isdigit():
            configured = int(configured)
        return configured if isinstance(configured, int) and configured > 0 else DEFAULT_MAX_TOKENS

    # --- native batches (Message Batches API) ------------------------------------------------------
    supports_batches: ClassVar[bool] = True
    batch_input: ClassVar[str] = BATCH_INPUT_INLINE

    def batch_create(self, target: DeploymentTarget, *, endpoint: str, input_file: ProviderFileRef | None = None,
                     requests: list[dict] | None = None, metadata: dict[str, str] | None = None,
                     deadline: Deadline) -> ProviderBatch:
        """`POST /v1/messages/batches` with every chat line translated to Messages params for the deployment's model.

        Only chat lines can run here (Anthropic has no batch text completions or embeddings); `input_file`
        and `metadata` are not used (the requests go inline, and Anthropic keeps no batch metadata).
        """
        if endpoint != CHAT_ENDPOINT:
            raise UpstreamBadRequestError(
                f"Anthropic message batches only run {CHAT_ENDPOINT} requests, not {endpoint}.", param="endpoint",
                code="unsupported_endpoint")
        payload = {"requests": message_batch_requests(requests or [], model=target.model,
                                                      default_max_tokens=self._default_max_tokens(target))}
        betas = (FILES_BETA,) if any(uses_files_api(item["params"].get("messages"))
                                     for item in payload["requests"]) else ()
        response = send("POST", self.url(target, "messages/batches"), headers=self.headers(target, betas=betas),
                        body=orjson.dumps(payload), deadline=deadline, error_mapper=error_for_response)
        return provider_batch(UpstreamResponse.from_upstream(read_all(response, deadline)).parsed)

    def batch_retrieve(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """`GET /v1/messages/batches/<id>`, its status mapped onto OpenAI's (`translate.anthropic_batches`)."""
        return self._batch_call(target, "GET", self._batch_path(batch_id), deadline)

    def batch_cancel(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """`POST /v1/messages/batches/<id>/cancel`: `cancelling` now, `cancelled` once Anthropic has ended it."""
        return self._batch_call(target, "POST", f"{self._batch_path(batch_id)}/cancel", deadline)

    def batch_results(self, target: DeploymentTarget, batch: ProviderBatch, deadline: Deadline) -> Iterator[dict]:
        """Every result of an ended batch as an OpenAI batch output line, read from the socket as it arrives.

        The batch's `results_url` is followed only on the deployment's own host (the key goes with it);
        anything else, or no URL, reads `/v1/messages/batches/<id>/results` under `api_base`.
        """
        url = self._results_url(target, batch)
        headers = self.headers(target)
        headers.pop("Content-Type", None)
        response = send("GET", url, headers=headers, deadline=deadline, error_mapper=error_for_response)
        for result in iter_jsonl_objects(response, deadline, source="batch results"):
            yield output_line(result)

    def _batch_path(self, batch_id: str) -> str:
        return f"messages/batches/{quote(batch_id, safe='')}"

    def _batch_call(self, target: DeploymentTarget, method: str, path: str, deadline: Deadline) -> ProviderBatch:
        headers = self.headers(target)
        headers.pop("Content-Type", None)  # no body
        response = send(method, self.url(target, path), headers=headers, deadline=deadline,
                        error_mapper=error_for_response)
        return provider_batch(UpstreamResponse.from_upstream(read_all(response, deadline)).parsed)

    def _results_url(self, target: DeploymentTarget, batch: ProviderBatch) -> str:
        own = urlsplit(self.url(target))
        given = urlsplit(batch.results_url or "")
        if batch.results_url and (given.scheme, given.netloc) == (own.scheme, own.netloc):
            return batch.results_url
        return self.url(target, f"{self._batch_path(batch.id)}/results")

    # --- Anthropic's own format (the `/v1/messages` surface) -------------------------------------
    def messages(self, target: DeploymentTarget, body: dict, deadline: Deadline, *,
                 client_headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """`POST /v1/messages` with an Anthropic-format body; the answer is Anthropic's JSON, byte for byte.

        The model is replaced by the deployment's and gateway-only fields are dropped (`metadata`
        keeps only Anthropic's `user_id`). `client_headers` (lower-case names, or a case-insensitive
        mapping such as Django's `request.headers`) may carry the client's `anthropic-beta` and
        `anthropic-version`: only those two are forwarded, the deployment's `extra_headers` still
        win. Errors are raised as `ProviderError`s, exactly as for chat.
        """
        payload = native_body(body, target.model)
        payload.pop("stream", None)
        return self._call(target, "messages", payload, deadline, client_headers)

    def messages_stream(self, target: DeploymentTarget, body: dict, deadline: Deadline,
                        first_chunk_timeout: float | None, *,
                        client_headers: Mapping[str, str] | None = None) -> UpstreamStream:
        """A streamed `POST /v1/messages`: `chunks` yields each upstream SSE frame as complete bytes
        (`event: ...\\ndata: ...\\n\\n`, line endings normalised to `\\n`), to be relayed untouched.

        The iterator ends after `message_stop`. An `error` event is not relayed: it is raised as the
        matching `ProviderError` (before the first frame the router may then retry), like a stream
        that ends without `message_stop` (`UpstreamConnectionError`). The caller reads usage from the
        `message_start` and `message_delta` frames (`translate.anthropic.openai_usage` maps it).
        """
        payload = native_body(body, target.model)
        payload["stream"] = True
        response = self._post(target, "messages", payload, deadline, first_chunk_timeout=first_chunk_timeout,
                              client_headers=client_headers)
        return UpstreamStream(_native_frames(response, deadline, first_chunk_timeout), close=response.close)

    def count_tokens(self, target: DeploymentTarget, body: dict, deadline: Deadline, *,
                     client_headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """`POST /v1/messages/count_tokens`: Anthropic's `{"input_tokens": n}` for a Messages body.

        Generation-only fields (`max_tokens`, `stream`, `temperature`, ...) are dropped, since the
        counting endpoint refuses them and clients often reuse the body they are about to send.
        """
        payload = {name: value for name, value in native_body(body, target.model).items()
                   if name not in NOT_COUNTED_FIELDS}
        return self._call(target, "messages/count_tokens", payload, deadline, client_headers)


def _add_beta(headers: dict[str, str], beta: str) -> None:
    """Add one flag to the comma-separated `anthropic-beta` list (whatever the header's case), once."""
    name = next((key for key in headers if key.lower() == "anthropic-beta"), "anthropic-beta")
    present = [flag.strip() for flag in headers.get(name, "").split(",") if flag.strip()]
    if beta not in present:
        headers[name] = ",".join([*present, beta])


def native_body(body: dict, model: str) -> dict:
    """An Anthropic-format body as the deployment should see it: its model, no gateway-only fields."""
    payload = {name: value for name, value in body.items() if name not in GATEWAY_ONLY_FIELDS}
    payload["model"] = model
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        payload["metadata"] = {"user_id": metadata["user_id"]}
    return payload


def _parsed_events(response: requests.Response, deadline: Deadline, idle_timeout: float | None) -> Iterator[dict]:
    """Each SSE event's JSON payload, parsed once; the connection is closed when iteration stops."""
    try:
        for event in iter_sse_events(response, deadline, idle_timeout):
            data = sse_data(event)
            if not data:
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamServerError("The upstream provider sent a stream event that is not JSON.") from None
            if isinstance(parsed, dict):
                yield parsed
    finally:
        response.close()


def _native_frames(response: requests.Response, deadline: Deadline, idle_timeout: float | None) -> Iterator[bytes]:
    """Anthropic's frames as they came, read by their `event:` line alone (no JSON parse per frame)."""
    try:
        for event in iter_sse_events(response, deadline, idle_timeout):
            name = _event_name(event)
            if name == b"error":
                raise _event_error(event)
            yield event + b"\n\n"
            if name == b"message_stop":
                return
        raise UpstreamConnectionError("The upstream stream ended before it was complete.")
    finally:
        response.close()


def _event_name(event: bytes) -> bytes | None:
    """The `event:` line's value (Anthropic always sends it first); the payload's `type` otherwise."""
    if event.startswith(b"event:"):
        line = event.split(b"\n", 1)[0]
        return line[6:].strip()
    try:
        parsed = orjson.loads(sse_data(event) or b"")
    except orjson.JSONDecodeError:
        return None
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind.encode() if isinstance(kind, str) else None


def _event_error(event: bytes) -> Exception:
    data = sse_data(event) or b""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    error = error if isinstance(error, dict) else {}
    return error_from_type(error.get("type"), error.get("message"))
