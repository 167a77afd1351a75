"""`/v1/messages` through the router: Anthropic's format in and out, whatever provider answers.

Which deployment answers is the router's choice, made per attempt, so each attempt decides how to
speak to it. An adapter with Anthropic's own endpoints (`messages`, `messages_stream`, `count_tokens`)
gets the client's body as it is and its answer goes back byte for byte: no translation at all. Any
other adapter gets the request translated once to an OpenAI chat request (on the first attempt that
needs it) and its answer translated back (`translate/anthropic_inbound*.py`); `drop_params` applies
to that chat request as on `/chat/completions`.

Admission, routing, retries, fallbacks, usage and spend are the relay's (`answer_call`,
`StreamRelay`): a messages call is logged like any other, as operation `messages` (or
`count_tokens`). Usage is OpenAI-shaped in the log: an Anthropic answer's `input_tokens` (plus cache
reads and writes) are its prompt tokens, `output_tokens` its completion tokens.

Managed files quoted by `document`/`image` blocks (`source: {"type": "file", "file_id": "file-…"}`) are
looked up before admission and resolved per attempt (`file_parts.py`): an Anthropic deployment gets
its own Anthropic file id in the block, any other gets the chat translation's file part rewritten for it.

Errors on this surface use Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`,
with the status the OpenAI endpoints would use; a failure mid-stream is one final `error` event.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping

import orjson
from django.http import HttpResponse, StreamingHttpResponse

from keys.access import admit
from keys.choices import RequestStatus
from keys.principal import Caller
from keys.usage import (
    NO_USAGE,
    Usage,
    body_requesting_stream_usage,
    stream_usage_supported,
    usage_from_body,
    usage_from_object,
)
from models_registry.drop_params import fit_params
from models_registry.router import route
from providers.base import UpstreamStream
from providers.errors import GatewayError, UpstreamServerError
from providers.translate.anthropic import openai_usage
from providers.translate.anthropic_inbound import anthropic_message, chat_request, estimate_input_tokens
from providers.translate.anthropic_inbound_stream import AnthropicEvents, frame
from proxy_api.calls import CLIENT_CLOSED_REQUEST, ProxyCall, prepared_call
from proxy_api.file_parts import RequestFiles, messages_files
from proxy_api.relay import (
    Reply,
    StreamRelay,
    admission_headers,
    answer_call,
    release_connections,
    route_headers,
    route_options,
)
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")

# Anthropic's error types by HTTP status (its SDK picks the exception class from the status).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error", 504: "timeout_error"}
MESSAGE_START = b"event: message_start"
MESSAGE_DELTA = b"event: message_delta"


def anthropic_error_type(status_code: int, error: Exception | None = None) -> str:
    """The Anthropic error type for a status: 503 is `overloaded_error` when a provider is overloaded or
    down, other 5xx are `api_error` (an upstream credential failure is the operator's, never the caller's)."""
    if status_code in ERROR_TYPES:
        return ERROR_TYPES[status_code]
    if status_code == 503 and (error is None or isinstance(error, UpstreamServerError)):
        return "overloaded_error"
    return "api_error" if status_code >= 500 else "invalid_request_error"


def anthropic_error(message: str, status_code: int, error: Exception | None = None,
                    request_id: str | None = None) -> dict:
    payload = {"type": "error", "error": {"type": anthropic_error_type(status_code, error), "message": message}}
    if request_id:
        payload["request_id"] = request_id
    return payload


class MessagesRequest:
    """One `/v1/messages` request: the client's Anthropic body, and its chat translation once one is needed."""

    def __init__(self, body: dict, model: str, client_headers: Mapping[str, str]) -> None:
        self.body = body
        self.model = model
        self.client_headers = client_headers
        self._chat: dict | None = None
        self._chat_with_usage: dict | None = None

    @property
    def chat(self) -> dict:
        if self._chat is None:
            self._chat = chat_request(self.body)
        return self._chat

    @property
    def chat_with_usage(self) -> dict:
        """The chat request asking for usage on the stream's last chunk (the message needs its counts)."""
        if self._chat_with_usage is None:
            self._chat_with_usage = body_requesting_stream_usage(self.chat)
        return self._chat_with_usage


def respond_messages(*, caller: Caller, request: MessagesRequest, options: dict, call: ProxyCall) -> HttpResponse:
    """A plain `/v1/messages` call: an Anthropic message object, with the routing and cost headers."""
    files = messages_files(caller=caller, body=request.body)

    def send(deployment, target, deadline) -> Reply:
        native = getattr(deployment.adapter, "messages", None)
        if native is not None:
            body = _native_body(request, files, deployment, deadline)
            result = native(target, body, deadline, client_headers=request.client_headers)
            return Reply(result.body, result.parsed, usage_from_object(openai_usage(result.parsed.get("usage"))))
        payload = _chat_payload(request.chat, files, deployment, deadline, call)
        result = deployment.adapter.chat(target, payload, deadline)
        message = anthropic_message(result.parsed, request.model)
        return Reply(orjson.dumps(message), message, usage_from_body(result.parsed))

    answer = answer_call(caller=caller, operation="messages", model=request.model, body=request.body,
                         options=options, call=call, send=send, route_operation="chat", files=files)
    return json_response(answer.reply.body, headers=answer.headers)


def respond_count_tokens(*, caller: Caller, request: MessagesRequest, options: dict,
                         call: ProxyCall) -> HttpResponse:
    """`/v1/messages/count_tokens`: Anthropic's own count on an Anthropic deployment, else an estimate."""
    files = messages_files(caller=caller, body=request.body)

    def send(deployment, target, deadline) -> Reply:
        native = getattr(deployment.adapter, "count_tokens", None)
        if native is not None:
            body = _native_body(request, files, deployment, deadline)
            result = native(target, body, deadline, client_headers=request.client_headers)
            return Reply(result.body, result.parsed, NO_USAGE)
        estimate = {"input_tokens": estimate_input_tokens(request.body)}
        return Reply(orjson.dumps(estimate), estimate, NO_USAGE)

    answer = answer_call(caller=caller, operation="count_tokens", model=request.model, body=request.body,
                         options=options, call=call, send=send, route_operation="chat", files=files)
    return json_response(answer.reply.body, headers=answer.headers)


def respond_messages_streaming(*, caller: Caller, request: MessagesRequest, options: dict,
                               call: ProxyCall) -> StreamingHttpResponse:
    """A streamed `/v1/messages` call: Anthropic's event sequence, relayed or translated as it arrives."""
    call = prepared_call(call, caller=caller, operation="messages", model=request.model, body=request.body)
    call.streamed = True
    files = messages_files(caller=caller, body=request.body)
    admission = admit(caller=caller, model=request.model, operation="messages")
    call.model_group = admission.model_group

    def attempt(deployment, target, deadline, first_chunk_timeout):
        call.tried(deployment)
        native = getattr(deployment.adapter, "messages_stream", None)
        if native is not None:
            body = _native_body(request, files, deployment, deadline)
            stream = native(target, body, deadline, first_chunk_timeout, client_headers=request.client_headers)
            frames: _Frames = _NativeFrames()
        else:
            payload = request.chat_with_usage if stream_usage_supported(
                provider=deployment.provider, params=deployment.params, model_info=deployment.model_info) \
                else request.chat
            payload = _chat_payload(payload, files, deployment, deadline, call)
            stream = deployment.adapter.chat_stream(target, payload, deadline, first_chunk_timeout)
            frames = _TranslatedFrames(request.model)
        try:
            first = next(stream.chunks, None)
        except BaseException:
            stream.close()
            raise
        call.first_chunk_at = time.monotonic()
        return stream, first, frames

    try:
        (stream, first, frames), outcome = route(model_group=admission.model_group, operation="chat", call=attempt,
                                                 prefer_deployments=files.prefer_deployments if files else None,
                                                 **route_options(options, admission))
    except BaseException:
        admission.release()
        raise
    release_connections()
    relay = _MessagesStreamRelay(call, stream, first, outcome, admission, frames)
    response = StreamingHttpResponse(relay, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = route_headers(call.request_id, outcome)
    headers.update(admission_headers(admission))
    for name, value in headers.items():
        response[name] = value
    return response


def _native_body(request: MessagesRequest, files: RequestFiles | None, deployment, deadline) -> dict:
    """The client's Anthropic body, its quoted files naming this Anthropic deployment's copies."""
    return files.native_messages_body(request.body, deployment, deadline) if files is not None else request.body


def _chat_payload(chat: dict, files: RequestFiles | None, deployment, deadline, call: ProxyCall) -> dict:
    """The translated chat request as this deployment may receive it: `fit_params`, then its files' copies."""
    payload = fit_params(deployment, chat, call.request_id)
    return files.chat_body(payload, deployment, deadline) if files is not None else payload


class _Frames:
    """How an upstream stream's items become the client's SSE bytes, and the usage they reported."""

    usage: Usage = NO_USAGE

    def frames(self, item: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


class _NativeFrames(_Frames):
    """Anthropic's own frames, relayed as they are; only `message_start` and `message_delta` are parsed,
    for the usage they carry (cumulative, so later counts replace earlier ones)."""

    def __init__(self) -> None:
        self.anthropic_usage: dict = {}

    def frames(self, item: bytes) -> bytes:
        if item.startswith(MESSAGE_START):
            message = self._payload(item).get("message")
            self._note(message.get("usage") if isinstance(message, dict) else None)
        elif item.startswith(MESSAGE_DELTA):
            self._note(self._payload(item).get("usage"))
        return item

    def _note(self, usage) -> None:
        if isinstance(usage, dict):
            self.anthropic_usage.update({key: value for key, value in usage.items() if value is not None})
            self.usage = usage_from_object(openai_usage(self.anthropic_usage))

    @staticmethod
    def _payload(item: bytes) -> dict:
        start = item.find(b"\ndata:")
        if start < 0:
            return {}
        try:
            parsed = orjson.loads(item[start + 6:])
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


class _TranslatedFrames(_Frames):
    """OpenAI chunks translated into Anthropic's events, one chunk at a time."""

    def __init__(self, model: str) -> None:
        self.events = AnthropicEvents(model)

    def frames(self, item: bytes) -> bytes:
        return b"".join(self.events.translate(item))

    def finish(self) -> bytes:
        closing = b"".join(self.events.finish())
        if self.events.usage is not None:
            self.usage = usage_from_object(self.events.usage)
        return closing


class _MessagesStreamRelay(StreamRelay):
    """The relay's stream (one log row, limits released once), framed as Anthropic's events."""

    def __init__(self, call: ProxyCall, stream: UpstreamStream, first: bytes | None, outcome, admission,
                 frames: _Frames) -> None:
        self.source = frames
        super().__init__(call, stream, first, outcome, admission, forward_usage=False)

    def _frames(self) -> Iterator[bytes]:
        status, status_code, error_type = RequestStatus.OK, 200, ""
        source = self.source
        try:
            if self.first is not None:
                data = source.frames(self.first)
                if data:
                    yield data
                for item in self.stream.chunks:
                    data = source.frames(item)
                    if data:
                        yield data
            closing = source.finish()
            if closing:
                yield closing
        except GatewayError as error:
            status, status_code, error_type = RequestStatus.ERROR, error.status_code, error.type
            logger.warning("stream %s failed mid-way: %s", self.call.request_id, error.message)
            yield frame("error", anthropic_error(error.message, error.status_code, error))
        except GeneratorExit:
            status, status_code, error_type = (RequestStatus.CLIENT_DISCONNECTED, CLIENT_CLOSED_REQUEST,
                                               "client_disconnected")
            raise
        except Exception:
            status, status_code, error_type = RequestStatus.ERROR, 500, "internal_error"
            logger.exception("stream %s failed mid-way", self.call.request_id)
            yield frame("error", anthropic_error("The stream failed inside the gateway.", 500))
        finally:
            self.usage = source.usage
            self._finish(status, status_code, error_type)
