"""Sending one proxied call through the router and shaping what goes back to the client.

Plain calls return the provider's bytes as they came. Streams are opened, and their first chunk
read, inside the routed attempt: anything that can fail before the first byte (connection, status,
time to first chunk) is retried or answered with a real status code; after that, a failure becomes
one final `data: {"error": ...}` event.

Each attempt sends the body minus what the chosen deployment cannot honour (`drop_params.fit_params`:
a 400 naming the parameter unless `drop_params` allows dropping it), since only the attempt knows
the deployment. Surfaces that translate (`/v1/messages`) give `answer_call` their own `send`.

A chat request that quotes managed files (`file_parts.py`) has them looked up before admission and
rewritten for the chosen deployment inside each attempt; the router prefers deployments holding copies.

Every call, answered or refused, ends in exactly one `UsageRecord` (`calls.finish_call`): tokens from the
provider's usage, cost from the deployment's prices, queued for the log buffer (no query here), and
one access log line. A stream's usage is requested from the provider even when the client did not
ask (`stream_options.include_usage`); the usage-only chunk then stays with the gateway.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
from django.db import connections
from django.http import HttpResponse, StreamingHttpResponse

from keys.access import Admission, admit
from keys.choices import RequestStatus
from keys.principal import Caller
from keys.usage import (
    NO_USAGE,
    STREAM_USAGE_OPERATIONS,
    USAGE_KEY,
    Usage,
    body_requesting_stream_usage,
    chunk_usage,
    client_wants_stream_usage,
    stream_usage_supported,
    usage_from_body,
)
from models_registry.drop_params import fit_params
from models_registry.router import RouteOutcome, route
from models_registry.snapshot import RoutableDeployment
from providers.base import DeploymentTarget, UpstreamStream
from providers.errors import GatewayError
from providers.http import Deadline
from proxy_api.calls import CLIENT_CLOSED_REQUEST, ProxyCall, finish_call, prepared_call
from proxy_api.file_parts import RequestFiles, chat_files
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")
access_logger = logging.getLogger("gatehouse.access")

DONE_FRAME = b"data: [DONE]\n\n"
_METHOD_FOR = {"chat": ("chat", "chat_stream"), "completions": ("completion", "completion_stream"),
               "embeddings": ("embedding", None), "moderations": ("moderation", None)}
COST_HEADERS = ("x-gatehouse-response-cost", "x-litellm-response-cost")


@dataclass(slots=True)
class Reply:
    """What one successful attempt produced: the client's bytes, their parsed form, and the tokens used."""

    body: bytes
    parsed: dict
    usage: Usage


@dataclass(slots=True)
class Answer:
    """A routed plain call, answered: the reply and the headers that go with it."""

    reply: Reply
    headers: dict[str, str]


# One attempt of a plain call on one deployment (the surfaces that translate provide their own).
Send = Callable[[RoutableDeployment, DeploymentTarget, Deadline], Reply]


def respond(*, caller: Caller, operation: str, model: str, body: dict, options: dict,
            call: ProxyCall | None = None) -> HttpResponse:
    """A plain (non-streamed) call: route it, return the provider's answer with routing and cost headers."""
    answer = answer_call(caller=caller, operation=operation, model=model, body=body, options=options, call=call)
    return json_response(answer.reply.body, headers=answer.headers)


def answer_call(*, caller: Caller, operation: str, model: str, body: dict, options: dict,
                call: ProxyCall | None = None, send: Send | None = None, route_operation: str | None = None,
                files: RequestFiles | None = None) -> Answer:
    """Admit, route and record one plain call; the answer is the client's to render.

    `operation` names the call in its log; `route_operation` (default: the same) is what the chosen
    deployment must support. Without `send`, each attempt calls the adapter's method for the operation
    with the body minus what the deployment cannot honour (`fit_params`), its quoted files rewritten for
    the deployment (a chat call's are looked up here). A `send` gets `files` (looked up by its surface)
    only as the router's preference: rewriting is its own business.
    """
    call = prepared_call(call, caller=caller, operation=operation, model=model, body=body)
    method_name = _METHOD_FOR[route_operation or operation][0]
    if send is None and operation == "chat":
        files = chat_files(caller=caller, body=body)
    admission = admit(caller=caller, model=model, operation=operation)
    call.model_group = admission.model_group

    def attempt(deployment, target, deadline, first_chunk_timeout) -> Reply:
        call.tried(deployment)
        if send is not None:
            return send(deployment, target, deadline)
        payload = fit_params(deployment, body, call.request_id)
        if files is not None:
            payload = files.chat_body(payload, deployment, deadline)
        result = getattr(deployment.adapter, method_name)(target, payload, deadline)
        return Reply(result.body, result.parsed, usage_from_body(result.parsed))

    try:
        reply, outcome = route(model_group=admission.model_group, operation=route_operation or operation,
                               call=attempt, prefer_deployments=files.prefer_deployments if files else None,
                               **route_options(options, admission))
    except BaseException:
        admission.release()
        raise
    usage = reply.usage
    cost = outcome.deployment.prices.cost(usage.prompt_tokens, usage.completion_tokens)
    admission.release(total_tokens=usage.total_tokens)
    outcome.finish(total_tokens=usage.total_tokens)
    call.answer = reply.parsed
    finish_call(call, outcome=outcome, usage=usage, cost=cost)
    headers = route_headers(call.request_id, outcome)
    headers.update(admission_headers(admission))
    headers.update(cost_headers(cost))
    return Answer(reply, headers)


def respond_streaming(*, caller: Caller, operation: str, model: str, body: dict, options: dict,
                      call: ProxyCall | None = None) -> StreamingHttpResponse:
    """A streamed call: route until a deployment has produced its first chunk, then relay the rest.

    The cost is known only after the last chunk, so a stream carries no cost header: it is in the log.
    """
    call = prepared_call(call, caller=caller, operation=operation, model=model, body=body)
    call.streamed = True
    method_name = _METHOD_FOR[operation][1]
    files = chat_files(caller=caller, body=body) if operation == "chat" else None
    admission = admit(caller=caller, model=model, operation=operation)
    call.model_group = admission.model_group
    forward_usage = client_wants_stream_usage(body)
    usage_body = body if forward_usage or operation not in STREAM_USAGE_OPERATIONS \
        else body_requesting_stream_usage(body)

    def attempt(deployment, target, deadline, first_chunk_timeout) -> tuple[UpstreamStream, bytes | None]:
        call.tried(deployment)
        payload = usage_body if stream_usage_supported(provider=deployment.provider, params=deployment.params,
                                                       model_info=deployment.model_info) else body
        payload = fit_params(deployment, payload, call.request_id)
        if files is not None:
            payload = files.chat_body(payload, deployment, deadline)
        stream = getattr(deployment.adapter, method_name)(target, payload, deadline, first_chunk_timeout)
        try:
            first = next(stream.chunks, None)
        except BaseException:
            stream.close()
            raise
        call.first_chunk_at = time.monotonic()
        return stream, first

    try:
        (stream, first), outcome = route(model_group=admission.model_group, operation=operation, call=attempt,
                                         prefer_deployments=files.prefer_deployments if files else None,
                                         **route_options(options, admission))
    except BaseException:
        admission.release()
        raise
    release_connections()
    relay = StreamRelay(call, stream, first, outcome, admission, forward_usage=forward_usage)
    response = StreamingHttpResponse(relay, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = route_headers(call.request_id, outcome)
    headers.update(admission_headers(admission))
    for name, value in headers.items():
        response[name] = value
    return response


def release_connections() -> None:
    """A database connection opened while routing would otherwise stay checked out for the whole stream
    (STACK.md, pitfall 3). One inside a transaction is the caller's to finish, so it is left alone."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def route_headers(request_id: str, outcome: RouteOutcome) -> dict[str, str]:
    """Which deployment answered and what it took; the `x-litellm-attempted-*` pair for scripts written for LiteLLM
    (retries: attempts after the first in each group tried; fallbacks: how far down the fallback list it went)."""
    return {
        "x-request-id": request_id,
        "x-gatehouse-model-group": outcome.model_group,
        "x-gatehouse-deployment-id": outcome.deployment.id,
        "x-gatehouse-attempts": str(outcome.attempts),
        "x-gatehouse-fallbacks": str(outcome.fallbacks_used),
        "x-litellm-attempted-retries": str(outcome.retries),
        "x-litellm-attempted-fallbacks": str(outcome.fallbacks_used),
    }


def cost_headers(cost: float) -> dict[str, str]:
    """The call's cost in USD, under our name and LiteLLM's (scripts written for it read theirs)."""
    value = str(float(cost))
    return dict.fromkeys(COST_HEADERS, value)


def admission_headers(admission: Admission) -> dict[str, str]:
    """What admission wants the client to see (rate-limit headers), on answers and streams alike."""
    return dict(getattr(admission, "headers", None) or {})


def route_options(options: dict, admission: Admission) -> dict:
    """The client's routing options, plus what the key's settings add (`disable_fallbacks` in its metadata)."""
    return {**options, "disable_fallbacks": bool(getattr(admission, "disable_fallbacks", False))}


class StreamRelay:
    """The SSE body of a stream: frames every chunk, keeps the usage, and finishes the call exactly once.

    An object rather than a bare generator so that `close()` finishes the call even when the server
    closes the response before reading it (a generator that never started would skip its `finally`).
    """

    def __init__(self, call: ProxyCall, stream: UpstreamStream, first: bytes | None, outcome: RouteOutcome,
                 admission: Admission, *, forward_usage: bool) -> None:
        self.call = call
        self.stream = stream
        self.first = first
        self.outcome = outcome
        self.admission = admission
        self.forward_usage = forward_usage
        self.usage = NO_USAGE
        self.finished = False
        self.generator = self._frames()

    def __iter__(self) -> Iterator[bytes]:
        return self.generator

    def close(self) -> None:
        self.generator.close()
        if not self.finished:
            self._finish(RequestStatus.CLIENT_DISCONNECTED, CLIENT_CLOSED_REQUEST, "client_disconnected")

    def _frames(self) -> Iterator[bytes]:
        status, status_code, error_type = RequestStatus.OK, 200, ""
        try:
            first = self.first
            if first is not None and not (USAGE_KEY in first and self._kept_back(first)):
                yield b"data: " + first + b"\n\n"
            if first is not None:
                for data in self.stream.chunks:
                    if USAGE_KEY in data and self._kept_back(data):
                        continue
                    yield b"data: " + data + b"\n\n"
            yield DONE_FRAME
        except GatewayError as error:
            status, status_code, error_type = RequestStatus.ERROR, error.status_code, error.type
            logger.warning("stream %s failed mid-way: %s", self.call.request_id, error.message)
            yield b"data: " + orjson.dumps(error.envelope()) + b"\n\n"
        except GeneratorExit:
            status, status_code, error_type = (RequestStatus.CLIENT_DISCONNECTED, CLIENT_CLOSED_REQUEST,
                                               "client_disconnected")
            raise
        except Exception:
            status, status_code, error_type = RequestStatus.ERROR, 500, "internal_error"
            logger.exception("stream %s failed mid-way", self.call.request_id)
            failure = GatewayError("The stream failed inside the gateway.", code="internal_error")
            yield b"data: " + orjson.dumps(failure.envelope()) + b"\n\n"
        finally:
            self._finish(status, status_code, error_type)

    def _kept_back(self, data: bytes) -> bool:
        """Note the usage a chunk carries; True when it is the usage-only chunk the client did not ask for."""
        found = chunk_usage(data)
        if found is None:
            return False
        self.usage = found.usage
        return found.usage_only and not self.forward_usage

    def _finish(self, status: str, status_code: int, error_type: str) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            self.stream.close()
        finally:
            usage = self.usage
            cost = self.outcome.deployment.prices.cost(usage.prompt_tokens, usage.completion_tokens)
            self.admission.release(total_tokens=usage.total_tokens)
            self.outcome.finish(total_tokens=usage.total_tokens)
            finish_call(self.call, outcome=self.outcome, usage=usage, cost=cost, status=status,
                        status_code=status_code, error_type=error_type)
