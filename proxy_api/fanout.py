"""Multi-model fan-out: `"model": "a,b"` on /chat/completions asks every named group the same question.

Each group gets a call of its own, exactly as if the client had sent it alone: admission (access,
budgets, rate limits), routing with retries and fallbacks, a request log and spend. The calls run
concurrently, at most `FANOUT_CONCURRENCY` at a time, on threads (greenlets under gunicorn's gevent
worker, which patches `threading`), and the answer is a JSON array in the order the models were named.
A call that fails puts its error envelope in its slot; the others are unaffected. The array is built
from each answer's bytes as the provider sent them: nothing is parsed or encoded again.

Streaming several answers into one event stream has no agreed format, so `stream: true` with several
models is refused with a 400 on `model`.
"""
from __future__ import annotations

import logging
import threading

import orjson
from django.db import connections
from django.http import HttpResponse

from keys.choices import RequestStatus
from keys.principal import Caller
from models_registry.snapshot import current_snapshot
from providers.errors import GatewayError, InvalidRequestError
from proxy_api.calls import ProxyCall, finish_call
from proxy_api.relay import answer_call
from proxy_api.rendering import json_response

logger = logging.getLogger("gatehouse.api")

FANOUT_CONCURRENCY = 8
MAX_FANOUT_MODELS = 16


def fanout_models(model: str) -> list[str] | None:
    """The groups of a comma-separated `model`, or None when it names one group (a group may have a comma)."""
    if "," not in model or current_snapshot().group(model):
        return None
    names = [name.strip() for name in model.split(",")]
    if not all(names):
        raise InvalidRequestError(f"'model' lists an empty model name: {model!r}.", param="model",
                                  code="invalid_value")
    if len(names) > MAX_FANOUT_MODELS:
        raise InvalidRequestError(f"'model' may name at most {MAX_FANOUT_MODELS} models at once; it names "
                                  f"{len(names)}.", param="model", code="invalid_value")
    return names


def refuse_streamed_fanout(models: list[str]) -> None:
    raise InvalidRequestError(
        f"'stream' cannot be true when 'model' names several models ({', '.join(models)}); send one request "
        "per model to stream, or drop 'stream' to get one answer per model in an array.",
        param="model", code="invalid_value")


def respond_fanout(*, caller: Caller, models: list[str], body: dict, options: dict) -> HttpResponse:
    """One chat completion (or error envelope) per model, in order, as a JSON array."""
    slots: list[bytes] = [b"null"] * len(models)
    request_ids: list[str] = [""] * len(models)
    gate = threading.BoundedSemaphore(FANOUT_CONCURRENCY)

    def run(index: int) -> None:
        call = ProxyCall(operation="chat")
        request_ids[index] = call.request_id
        try:
            with gate:
                slots[index] = _answer_one(caller, models[index], body, options, call)
        finally:
            # This thread's database connections (a key or registry read) would otherwise outlive it.
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,), name=f"fanout-{index}") for index in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    headers = {"x-request-id": ",".join(request_ids), "x-gatehouse-fanout-models": ",".join(models)}
    return json_response(b"[" + b",".join(slots) + b"]", headers=headers)


def _answer_one(caller: Caller, model: str, body: dict, options: dict, call: ProxyCall) -> bytes:
    try:
        answer = answer_call(caller=caller, operation="chat", model=model, body=body, options=options, call=call)
    except GatewayError as error:
        finish_call(call, status=RequestStatus.ERROR, status_code=error.status_code, error_type=error.type)
        return orjson.dumps(error.envelope())
    except Exception:
        logger.exception("fan-out call %s to %s failed inside the gateway", call.request_id, model,
                         extra={"request_id": call.request_id})
        error = GatewayError("The gateway hit an internal error; it has been logged.", code="internal_error")
        finish_call(call, status=RequestStatus.ERROR, status_code=error.status_code, error_type=error.type)
        return orjson.dumps(error.envelope())
    return answer.reply.body
