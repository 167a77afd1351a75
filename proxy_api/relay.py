"""Sending one proxied call through the router and shaping what goes back to the client.

Plain calls return the provider's bytes as they came. Streams are opened, and their first chunk
read, inside the routed attempt: anything that can fail before the first byte (connection, status,
time to first chunk) is retried or answered with a real status code; after that, a failure becomes
one final `data: {"error": ...}` event.

Every call, answered or refused, ends in exactly one `UsageRecord` (`finish_call`): tokens from the
provider's usage, cost from the deployment's prices, queued for the log buffer (no query here), and
one access log line. A stream's usage is requested from the provider even when the client did not
ask (`stream_options.include_usage`); the usage-only chunk then stays with the gateway.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from django.db import connections
from django.http import HttpResponse, StreamingHttpResponse

from keys.access import Admission, admit
from keys.budgets import spend_record
from keys.choices import RequestStatus
from keys.log_buffer import usage_record_enqueue
from keys.principal import Caller
from keys.usage import (
    NO_USAGE,
    STREAM_USAGE_OPERATIONS,
    USAGE_KEY,
    Usage,
    UsageRecord,
    body_requesting_stream_usage,
    chunk_usage,
    client_wants_stream_usage,
    stream_usage_supported,
    usage_from_body,
)
from models_registry.router import RouteOutcome, route
from models_registry.snapshot import RoutableDeployment
from providers.base import UpstreamResponse, UpstreamStream
from providers.errors import GatewayError
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")
access_logger = logging.getLogger("gatehouse.access")

DONE_FRAME = b"data: [DONE]\n\n"
_METHOD_FOR = {"chat": ("chat", "chat_stream"), "completions": ("completion", "completion_stream"),
               "embeddings": ("embedding", None), "moderations": ("moderation", None)}
COST_HEADERS = ("x-gatehouse-response-cost", "x-litellm-response-cost")
# A client that hung up mid-stream: nginx's number for it, so logs can tell it from a server error.
CLIENT_CLOSED_REQUEST = 499


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


@dataclass(slots=True)
class ProxyCall:
    """One proxied request from the view's first line to its last byte: what its log row is made of.

    The view fills in the caller, body and model as it learns them, so that a request refused half-way
    (bad key, bad body, no access) is still logged with whatever was known.
    """

    operation: str
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    caller: Caller | None = None
    body: dict | None = None
    model: str = ""
    model_group: str = ""
    streamed: bool = False
    attempts: int = 0
    groups_tried: list[str] = field(default_factory=list)
    deployment: RoutableDeployment | None = None
    first_chunk_at: float | None = None
    finished: bool = False

    def tried(self, deployment: RoutableDeployment) -> None:
        """An attempt on `deployment` begins (the router may make several)."""
        self.attempts += 1
        self.deployment = deployment
        if deployment.model_name not in self.groups_tried:
            self.groups_tried.append(deployment.model_name)


def respond(*, caller: Caller, operation: str, model: str, body: dict, options: dict,
            call: ProxyCall | None = None) -> HttpResponse:
    """A plain (non-streamed) call: route it, return the provider's answer with routing and cost headers."""
    call = _prepared(call, caller=caller, operation=operation, model=model, body=body)
    method_name = _METHOD_FOR[operation][0]
    admission = admit(caller=caller, model=model, operation=operation)
    call.model_group = admission.model_group

    def attempt(deployment, target, deadline, first_chunk_timeout) -> UpstreamResponse:
        call.tried(deployment)
        return getattr(deployment.adapter, method_name)(target, body, deadline)

    try:
        result, outcome = route(model_group=admission.model_group, operation=operation, call=attempt,
                                **route_options(options, admission))
    except BaseException:
        admission.release()
        raise
    usage = usage_from_body(result.parsed)
    cost = outcome.deployment.prices.cost(usage.prompt_tokens, usage.completion_tokens)
    admission.release(total_tokens=usage.total_tokens)
    outcome.finish(total_tokens=usage.total_tokens)
    finish_call(call, outcome=outcome, usage=usage, cost=cost)
    headers = route_headers(call.request_id, outcome)
    headers.update(admission_headers(admission))
    headers.update(cost_headers(cost))
    return json_response(result.body, headers=headers)


def respond_streaming(*, caller: Caller, operation: str, model: str, body: dict, options: dict,
                      call: ProxyCall | None = None) -> StreamingHttpResponse:
    """A streamed call: route until a deployment has produced its first chunk, then relay the rest.

    The cost is known only after the last chunk, so a stream carries no cost header: it is in the log.
    """
    call = _prepared(call, caller=caller, operation=operation, model=model, body=body)
    call.streamed = True
    method_name = _METHOD_FOR[operation][1]
    admission = admit(caller=caller, model=model, operation=operation)
    call.model_group = admission.model_group
    forward_usage = client_wants_stream_usage(body)
    usage_body = body if forward_usage or operation not in STREAM_USAGE_OPERATIONS \
        else body_requesting_stream_usage(body)

    def attempt(deployment, target, deadline, first_chunk_timeout) -> tuple[UpstreamStream, bytes | None]:
        call.tried(deployment)
        payload = usage_body if stream_usage_supported(provider=deployment.provider, params=deployment.params,
                                                       model_info=deployment.model_info) else body
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
                                         **route_options(options, admission))
    except BaseException:
        admission.release()
        raise
    _release_connections()
    relay = _StreamRelay(call, stream, first, outcome, admission, forward_usage=forward_usage)
    response = StreamingHttpResponse(relay, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = route_headers(call.request_id, outcome)
    headers.update(admission_headers(admission))
    for name, value in headers.items():
        response[name] = value
    return response


def _release_connections() -> None:
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


def _prepared(call: ProxyCall | None, *, caller: Caller, operation: str, model: str, body: dict) -> ProxyCall:
    call = call or ProxyCall(operation=operation)
    call.operation = operation
    call.caller = caller
    call.model = model
    call.body = body
    return call


class _StreamRelay:
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


def finish_call(call: ProxyCall, *, outcome: RouteOutcome | None = None, usage: Usage = NO_USAGE, cost: float = 0.0,
                status: str = RequestStatus.OK, status_code: int = 200, error_type: str = "") -> None:
    """Record the end of a call, once: its log row (queued, written later), its spend, its access line."""
    if call.finished:
        return
    call.finished = True
    record = usage_record_for(call, outcome=outcome, usage=usage, cost=cost, status=status, status_code=status_code,
                              error_type=error_type)
    usage_record_enqueue(record)
    if call.caller is not None and cost > 0:
        spend_record(caller=call.caller, cost=cost)
    _log_access(record)


def finish_failed_call(call: ProxyCall, response: HttpResponse, error: Exception) -> None:
    """Record a call refused or failed before its answer began, from the error response the client got."""
    if call.finished:
        return
    error_type = error.type if isinstance(error, GatewayError) else _envelope_type(response)
    finish_call(call, status=RequestStatus.ERROR, status_code=response.status_code, error_type=error_type or "")


def _envelope_type(response: HttpResponse) -> str:
    try:
        return str(orjson.loads(response.content)["error"]["type"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return ""


def usage_record_for(call: ProxyCall, *, outcome: RouteOutcome | None, usage: Usage, cost: float, status: str,
                     status_code: int, error_type: str) -> UsageRecord:
    key = call.caller.key if call.caller is not None else None
    deployment = outcome.deployment if outcome is not None else call.deployment
    now = time.monotonic()
    metadata = call.body.get("metadata") if call.body is not None else None
    return UsageRecord(
        request_id=call.request_id,
        started_at=call.started_at,
        operation=call.operation,
        key_id=key.id if key is not None else "",
        key_alias=(key.key_alias or "") if key is not None else "",
        team_id=(key.team_id or "") if key is not None else "",
        user_id=key.user_id if key is not None else "",
        model_group=outcome.model_group if outcome is not None else (call.model_group or call.model),
        deployment_id=deployment.id if deployment is not None else "",
        provider=deployment.provider if deployment is not None else "",
        provider_model=deployment.provider_model if deployment is not None else "",
        streamed=call.streamed,
        status=status,
        status_code=status_code,
        error_type=error_type,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cost=cost,
        latency_ms=(now - call.started) * 1000,
        time_to_first_token_ms=(call.first_chunk_at - call.started) * 1000 if call.first_chunk_at else None,
        attempts=outcome.attempts if outcome is not None else call.attempts,
        fallbacks=outcome.fallbacks_used if outcome is not None else max(0, len(call.groups_tried) - 1),
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def _log_access(record: UsageRecord) -> None:
    """One line per proxied request, answered or not, with the caller's `metadata` (recorded, never forwarded)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    access_logger.info(
        "request %s %s %s -> %s %s %d in %.1f ms tokens=%d/%d cost=%s key=%s metadata=%s", record.request_id,
        record.operation, record.model_group or "-", record.deployment_id or "-", record.status,
        record.status_code, record.latency_ms, record.prompt_tokens, record.completion_tokens, record.cost,
        record.key_id or "master", orjson.dumps(record.metadata).decode() if record.metadata else "-",
        extra={"request_id": record.request_id, "operation": record.operation, "model_group": record.model_group,
               "deployment_id": record.deployment_id, "attempts": record.attempts, "fallbacks": record.fallbacks,
               "streamed": record.streamed, "status": record.status, "status_code": record.status_code,
               "error_type": record.error_type, "prompt_tokens": record.prompt_tokens,
               "completion_tokens": record.completion_tokens, "cost": record.cost, "key_id": record.key_id,
               "team_id": record.team_id, "latency_ms": record.latency_ms,
               "time_to_first_token_ms": record.time_to_first_token_ms, "metadata": record.metadata},
    )
