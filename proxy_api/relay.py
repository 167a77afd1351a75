"""Sending one proxied call through the router and shaping what goes back to the client.

Plain calls return the provider's bytes as they came. Streams are opened, and their first chunk
read, inside the routed attempt: anything that can fail before the first byte (connection, status,
time to first chunk) is retried or answered with a real status code; after that, a failure becomes
one final `data: {"error": ...}` event.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections.abc import Iterator

import orjson
from django.db import connections
from django.http import HttpResponse, StreamingHttpResponse

from keys.access import Admission, admit
from keys.principal import Caller
from models_registry.router import RouteOutcome, route
from providers.base import UpstreamResponse, UpstreamStream
from providers.errors import GatewayError
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")
access_logger = logging.getLogger("gatehouse.access")

DONE_FRAME = b"data: [DONE]\n\n"
_METHOD_FOR = {"chat": ("chat", "chat_stream"), "completions": ("completion", "completion_stream"),
               "embeddings": ("embedding", None), "moderations": ("moderation", None)}


class _RequestIds:
    """Unique request ids without a system call each: a random per-process prefix and a counter.

    The prefix is drawn again after a fork, so gunicorn workers never share a sequence.
    """

    def __init__(self) -> None:
        self.pid = 0
        self.prefix = ""
        self.counter = itertools.count()

    def next(self) -> str:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.prefix = secrets.token_hex(8)
            self.counter = itertools.count()
        return f"req_{self.prefix}{next(self.counter):08x}"


_request_ids = _RequestIds()


def new_request_id() -> str:
    return _request_ids.next()


def respond(*, caller: Caller, operation: str, model: str, body: dict, options: dict) -> HttpResponse:
    """A plain (non-streamed) call: route it, return the provider's answer with routing headers."""
    request_id = new_request_id()
    started = time.monotonic()
    method_name = _METHOD_FOR[operation][0]
    admission = admit(caller=caller, model=model, operation=operation)

    def call(deployment, target, deadline, first_chunk_timeout) -> UpstreamResponse:
        return getattr(deployment.adapter, method_name)(target, body, deadline)

    try:
        result, outcome = route(model_group=admission.model_group, operation=operation, call=call, **options)
    finally:
        admission.release()
    _log_access(request_id, operation, outcome, started, body, streamed=False)
    return json_response(result.body, headers=route_headers(request_id, outcome))


def respond_streaming(*, caller: Caller, operation: str, model: str, body: dict,
                      options: dict) -> StreamingHttpResponse:
    """A streamed call: route until a deployment has produced its first chunk, then relay the rest."""
    request_id = new_request_id()
    started = time.monotonic()
    method_name = _METHOD_FOR[operation][1]
    admission = admit(caller=caller, model=model, operation=operation)

    def call(deployment, target, deadline, first_chunk_timeout) -> tuple[UpstreamStream, bytes | None]:
        stream = getattr(deployment.adapter, method_name)(target, body, deadline, first_chunk_timeout)
        try:
            first = next(stream.chunks, None)
        except BaseException:
            stream.close()
            raise
        return stream, first

    try:
        (stream, first), outcome = route(model_group=admission.model_group, operation=operation, call=call,
                                         **options)
    except BaseException:
        admission.release()
        raise
    # A database connection opened while routing would otherwise stay checked out for the whole stream.
    connections.close_all()
    frames = _frames(stream, first, request_id, operation, outcome, started, body, admission)
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in route_headers(request_id, outcome).items():
        response[name] = value
    return response


def route_headers(request_id: str, outcome: RouteOutcome) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "x-gatehouse-model-group": outcome.model_group,
        "x-gatehouse-deployment-id": outcome.deployment.id,
        "x-gatehouse-attempts": str(outcome.attempts),
        "x-gatehouse-fallbacks": str(outcome.fallbacks_used),
    }


def _frames(stream: UpstreamStream, first: bytes | None, request_id: str, operation: str, outcome: RouteOutcome,
            started: float, body: dict, admission: Admission) -> Iterator[bytes]:
    status = "ok"
    try:
        if first is not None:
            yield b"data: " + first + b"\n\n"
            for data in stream.chunks:
                yield b"data: " + data + b"\n\n"
        yield DONE_FRAME
    except GatewayError as error:
        status = type(error).__name__
        logger.warning("stream %s failed mid-way: %s", request_id, error.message)
        yield b"data: " + orjson.dumps(error.envelope()) + b"\n\n"
    except GeneratorExit:
        status = "client_disconnected"
        raise
    except Exception:
        status = "internal_error"
        logger.exception("stream %s failed mid-way", request_id)
        failure = GatewayError("The stream failed inside the gateway.", code="internal_error")
        yield b"data: " + orjson.dumps(failure.envelope()) + b"\n\n"
    finally:
        stream.close()
        admission.release()
        _log_access(request_id, operation, outcome, started, body, streamed=True, status=status)


def _log_access(request_id: str, operation: str, outcome: RouteOutcome, started: float, body: dict, *,
                streamed: bool, status: str = "ok") -> None:
    """One line per proxied request, with the caller's `metadata` (recorded here, never forwarded)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    metadata = body.get("metadata")
    access_logger.info(
        "request %s %s %s -> %s %s in %.1f ms metadata=%s", request_id, operation, outcome.model_group,
        outcome.deployment.id, status, (time.monotonic() - started) * 1000,
        orjson.dumps(metadata).decode() if metadata else "-",
        extra={"request_id": request_id, "operation": operation, "model_group": outcome.model_group,
               "deployment_id": outcome.deployment.id, "attempts": outcome.attempts, "streamed": streamed,
               "status": status, "metadata": metadata},
    )
