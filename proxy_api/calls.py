"""One proxied call as the gateway records it: its id, what it asked for, and how it ended.

A view opens a `ProxyCall` before anything can fail; whatever happens next (a refusal, an upstream
failure, an answer, a stream that ends or is abandoned) ends in exactly one `finish_call`: a
`UsageRecord` queued for the log buffer (no query here), the spend added to the caller's counters,
and one access log line.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from django.http import HttpResponse

from keys.budgets import spend_record
from keys.choices import RequestStatus
from keys.log_buffer import usage_record_enqueue
from keys.metrics import in_flight_add, in_flight_discard
from keys.principal import Caller
from keys.usage import NO_USAGE, Usage, UsageRecord
from models_registry.router import RouteOutcome
from models_registry.snapshot import RoutableDeployment
from providers.errors import GatewayError

access_logger = logging.getLogger("gatehouse.access")

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
    answer: dict | None = None  # a plain call's parsed answer, for the log line of a key with log_prompts

    def tried(self, deployment: RoutableDeployment) -> None:
        """An attempt on `deployment` begins (the router may make several)."""
        self.attempts += 1
        self.deployment = deployment
        if deployment.model_name not in self.groups_tried:
            self.groups_tried.append(deployment.model_name)


def prepared_call(call: ProxyCall | None, *, caller: Caller, operation: str, model: str, body: dict) -> ProxyCall:
    """The view's call record (or a new one) with what the relay now knows of the request."""
    call = call or ProxyCall(operation=operation)
    call.operation = operation
    call.caller = caller
    call.model = model
    call.body = body
    in_flight_add(call.request_id)  # until its finish_call (the in-flight gauge, keys/metrics.py)
    return call


def finish_call(call: ProxyCall, *, outcome: RouteOutcome | None = None, usage: Usage = NO_USAGE, cost: float = 0.0,
                status: str = RequestStatus.OK, status_code: int = 200, error_type: str = "") -> None:
    """Record the end of a call, once: its log row (queued, written later), its spend, its access line."""
    if call.finished:
        return
    call.finished = True
    in_flight_discard(call.request_id)
    record = usage_record_for(call, outcome=outcome, usage=usage, cost=cost, status=status, status_code=status_code,
                              error_type=error_type)
    usage_record_enqueue(record)
    if call.caller is not None and cost > 0:
        spend_record(caller=call.caller, cost=cost)
    _log_access(record, call)


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
        user_id=(key.user_id if key is not None and key.user_id else end_user(call.body)),
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


def end_user(body: dict | None) -> str:
    """Who the caller says the request is for: OpenAI's `user`, or Anthropic's `metadata.user_id`.

    Recorded as the log's user when the key belongs to no user; forwarded only to providers that take it.
    """
    if body is None:
        return ""
    user = body.get("user")
    if isinstance(user, str):
        return user
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user if isinstance(user, str) else ""


def _log_access(record: UsageRecord, call: ProxyCall | None = None) -> None:
    """One line per proxied request, answered or not: the row's fields as structured `extra=` (the JSON line's
    fields, docs/logging.md) and a readable message with the caller's `metadata` (recorded, never forwarded).

    What the caller sent and got back is added only for a key whose operator turned `log_prompts` on; the
    line never holds a key's secret, a provider's credentials or a request header.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": record.request_id, "key_id": record.key_id, "key_alias": record.key_alias,
        "team_id": record.team_id, "user_id": record.user_id, "operation": record.operation,
        "model_group": record.model_group, "deployment_id": record.deployment_id, "provider": record.provider,
        "status": record.status, "status_code": record.status_code, "error_type": record.error_type,
        "latency_ms": round(record.latency_ms, 1),
        "time_to_first_token_ms": (round(record.time_to_first_token_ms, 1)
                                   if record.time_to_first_token_ms is not None else None),
        "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens, "cost": record.cost, "attempts": record.attempts,
        "fallbacks": record.fallbacks, "streamed": record.streamed, "metadata": record.metadata,
    }
    logged = prompt_fields(call) if call is not None and _logs_prompts(call) else None
    suffix = ""
    if logged:
        fields.update(logged)
        if settings.GATEWAY_LOG_FORMAT == "plain":  # a plain line has no fields: the text goes into it
            suffix = " " + " ".join(f"{name}={orjson.dumps(value).decode()}" for name, value in logged.items())
    access_logger.info(
        "request %s %s %s -> %s %s %d in %.1f ms tokens=%d/%d cost=%s key=%s metadata=%s%s", record.request_id,
        record.operation, record.model_group or "-", record.deployment_id or "-", record.status,
        record.status_code, record.latency_ms, record.prompt_tokens, record.completion_tokens, record.cost,
        record.key_id or _keyless_label(call), orjson.dumps(record.metadata).decode() if record.metadata else "-",
        suffix,
        extra=fields,
    )


def _keyless_label(call: ProxyCall | None) -> str:
    """How the message names a call without a virtual key: the master key's, or refused before any key was known."""
    return "-" if call is not None and call.caller is None else "master"


# Where each operation's request holds what the caller asked: logged as `prompt` (and Anthropic's `system`).
PROMPT_FIELDS = {"chat": "messages", "completions": "prompt", "embeddings": "input", "moderations": "input",
                 "messages": "messages", "count_tokens": "messages"}


def _logs_prompts(call: ProxyCall) -> bool:
    key = call.caller.key if call.caller is not None else None
    return key is not None and key.log_prompts and call.body is not None


def prompt_fields(call: ProxyCall) -> dict:
    """The request's prompt as the client sent it and, for a plain answer, the answer's text: what a key with
    `log_prompts` adds to its lines. References into the parsed body, never a copy or a second parse.

    A stream's text is not collected (it would mean buffering every chunk of every stream of the key):
    its line has the prompt only.
    """
    body = call.body or {}
    logged: dict = {}
    name = PROMPT_FIELDS.get(call.operation)
    if name is not None and name in body:
        logged["prompt"] = body[name]
    if call.operation in ("messages", "count_tokens") and "system" in body:
        logged["system"] = body["system"]
    answer = answer_text(call.operation, call.answer)
    if answer is not None:
        logged["response"] = answer
    return logged


def answer_text(operation: str, answer: object) -> object:
    """What a plain answer said: a chat choice's message content (with its tool calls when it made some), a
    completion choice's text, an Anthropic message's content blocks; a list when there are several choices.
    Embeddings and moderations answer with numbers, not text: None."""
    if not isinstance(answer, dict):
        return None
    if operation == "messages":
        return answer.get("content")
    if operation not in ("chat", "completions"):
        return None
    choices = [choice for choice in answer.get("choices") or () if isinstance(choice, dict)]
    if operation == "chat":
        texts = [_message_text(choice.get("message")) for choice in choices]
    else:
        texts = [choice.get("text") for choice in choices]
    if not texts:
        return None
    return texts[0] if len(texts) == 1 else texts


def _message_text(message: object) -> object:
    if not isinstance(message, dict):
        return None
    if message.get("tool_calls"):
        return {"content": message.get("content"), "tool_calls": message["tool_calls"]}
    return message.get("content")
