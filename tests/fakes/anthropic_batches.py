"""The Message Batches API on the fake Anthropic server (`FakeAnthropic.batches`).

`POST /v1/messages/batches` checks the shape Anthropic checks (a non-empty `requests` list of at most
100,000, each a unique `custom_id` matching `^[a-zA-Z0-9_-]{1,64}$` and `params` with `model`,
`max_tokens` and `messages`), records the batch and decides every request's result at once: a request
whose `max_tokens` is 0 or less errors with `invalid_request_error` (Anthropic checks params only when
it runs a request), the others succeed with the fake's next scripted reply (`FakeAnthropic.reply_with`).
A test may force a result per custom id (`force`: `expired`, `canceled`, or an error type).

Each `GET /v1/messages/batches/{id}` moves the batch along its plan: `in_progress` for
`polls_in_progress` retrievals, then `ended`. A cancel (`POST .../cancel`) turns it `canceling` for
`polls_canceling` retrievals, then `ended`, with the first `processed_before_cancel` requests keeping
their result and the rest `canceled`. Once ended, `results_url` points at
`GET /v1/messages/batches/{id}/results`, served here as JSONL written in pieces of `results_piece`
bytes (so a reader meets lines split across socket reads).
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

BATCH_ROUTE = re.compile(r"^/v1/messages/batches(?:/(?P<batch_id>[^/]+)(?:/(?P<action>cancel|results))?)?$")
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000


def _error(error_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeBatch:
    """One message batch: the requests as received, each one's result, and where it is in its plan."""

    id: str
    requests: list[dict]
    results: list[dict]
    created_at: datetime
    polls_left: int
    processed_before_cancel: int
    status: str = "in_progress"
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    canceling_polls_left: int = 0
    retrievals: int = 0
    results_downloads: int = 0


@dataclass
class FakeMessageBatches:
    """Every batch the fake holds, and the plan new batches follow (tests change these fields)."""

    base_url: str
    polls_in_progress: int = 1
    polls_canceling: int = 1
    processed_before_cancel: int | None = None  # None: half of the requests (rounded down)
    results_piece: int = 7
    messages_made: int = 0  # answers' ids are `msg_batch_0001`, `msg_batch_0002`, ... in creation order
    forced: dict[str, str] = field(default_factory=dict)
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.batches.clear()
            self.forced.clear()
        self.polls_in_progress = 1
        self.polls_canceling = 1
        self.processed_before_cancel = None
        self.results_piece = 7
        self.messages_made = 0

    def force(self, custom_id: str, outcome: str) -> None:
        """Make the request `custom_id` (as Anthropic receives it) end `expired`, `canceled` or with an
        error of type `outcome` (`overloaded_error`, `api_error`, ...)."""
        self.forced[custom_id] = outcome

    # -- routing --------------------------------------------------------------------------------
    def handle(self, handler, method: str, path: str, body, take_reply) -> bool:
        """Answer a request under `/v1/messages/batches`; False when the path is not a batch route."""
        route = BATCH_ROUTE.match(path)
        if route is None:
            return False
        if not handler.headers.get("x-api-key"):
            handler._send_json(401, _error("authentication_error", "x-api-key header is required"))
            return True
        batch_id, action = route.group("batch_id"), route.group("action")
        if batch_id is None:
            if method == "POST":
                self._create(handler, body, take_reply)
            else:
                handler._send_json(405, _error("invalid_request_error", f"{method} is not allowed here."))
            return True
        batch = self.batches.get(batch_id)
        if batch is None:
            handler._send_json(404, _error("not_found_error", f"Batch not found: {batch_id}"))
        elif action is None and method == "GET":
            handler._send_json(200, self._retrieve(batch))
        elif action == "cancel" and method == "POST":
            handler._send_json(200, self._cancel(batch))
        elif action == "results" and method == "GET":
            self._results(handler, batch)
        else:
            handler._send_json(405, _error("invalid_request_error", f"{method} is not allowed here."))
        return True

    # -- create ---------------------------------------------------------------------------------
    def _create(self, handler, body, take_reply) -> None:
        problem = _requests_problem(body)
        if problem:
            handler._send_json(400, _error("invalid_request_error", problem))
            return
        requests = body["requests"]
        results = [self._result(request, take_reply) for request in requests]
        batch = FakeBatch(id=f"msgbatch_{uuid.uuid4().hex[:24]}", requests=requests, results=results,
                          created_at=datetime.now(UTC), polls_left=self.polls_in_progress,
                          processed_before_cancel=(len(requests) // 2 if self.processed_before_cancel is None
                                                   else self.processed_before_cancel))
        with self.lock:
            self.batches[batch.id] = batch
        handler._send_json(200, self._object(batch))

    def _result(self, request: dict, take_reply) -> dict:
        custom_id, params = request["custom_id"], request["params"]
        forced = self.forced.get(custom_id)
        if forced in ("expired", "canceled"):
            return {"type": forced}
        if forced:
            return {"type": "errored", "error": _error(forced, f"Forced {forced} for {custom_id}.")}
        if params["max_tokens"] <= 0:
            return {"type": "errored", "error": _error("invalid_request_error",
                                                       "max_tokens: Input should be greater than or equal to 1")}
        reply = take_reply()
        self.messages_made += 1
        message = {"id": f"msg_batch_{self.messages_made:04d}", "type": "message", "role": "assistant",
                   "model": params["model"], "content": reply["content"], "stop_reason": reply["stop_reason"],
                   "stop_sequence": None, "usage": reply["usage"]}
        return {"type": "succeeded", "message": message}

    # -- retrieve, cancel -----------------------------------------------------------------------
    def _retrieve(self, batch: FakeBatch) -> dict:
        with self.lock:
            batch.retrievals += 1
            if batch.status == "in_progress":
                if batch.polls_left > 0:
                    batch.polls_left -= 1
                else:
                    self._end(batch)
            elif batch.status == "canceling":
                if batch.canceling_polls_left > 0:
                    batch.canceling_polls_left -= 1
                else:
                    self._end(batch)
            return self._object(batch)

    def _cancel(self, batch: FakeBatch) -> dict:
        with self.lock:
            if batch.status == "in_progress":
                batch.status = "canceling"
                batch.cancel_initiated_at = datetime.now(UTC)
                batch.canceling_polls_left = self.polls_canceling
                for position in range(batch.processed_before_cancel, len(batch.results)):
                    batch.results[position] = {"type": "canceled"}
            return self._object(batch)

    @staticmethod
    def _end(batch: FakeBatch) -> None:
        batch.status = "ended"
        batch.ended_at = datetime.now(UTC)

    def _object(self, batch: FakeBatch) -> dict:
        """Anthropic's `message_batch` object; counts show everything `processing` until the batch ends."""
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.status == "ended":
            for result in batch.results:
                counts[result["type"]] += 1
        else:
            counts["processing"] = len(batch.results)
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status,
            "request_counts": counts,
            "ended_at": _timestamp(batch.ended_at) if batch.ended_at else None,
            "created_at": _timestamp(batch.created_at),
            "expires_at": _timestamp(batch.created_at + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": _timestamp(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "results_url": (f"{self.base_url}/v1/messages/batches/{batch.id}/results"
                            if batch.status == "ended" else None),
        }

    # -- results --------------------------------------------------------------------------------
    def _results(self, handler, batch: FakeBatch) -> None:
        if batch.status != "ended":
            handler._send_json(400, _error("invalid_request_error",
                                           f"Batch {batch.id} is still {batch.status}; results are not ready."))
            return
        with self.lock:
            batch.results_downloads += 1
        data = b"".join(json.dumps({"custom_id": request["custom_id"], "result": result}).encode() + b"\n"
                        for request, result in zip(batch.requests, batch.results, strict=True))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/binary")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        piece = max(1, self.results_piece)
        for start in range(0, len(data), piece):
            handler.wfile.write(data[start:start + piece])
            handler.wfile.flush()


def _requests_problem(body) -> str | None:
    """What Anthropic would say about the create body's shape, or None when it is acceptable."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return "requests: Field required and must be a non-empty list"
    if len(requests) > MAX_REQUESTS:
        return f"requests: List should have at most {MAX_REQUESTS} items"
    seen: set[str] = set()
    for index, request in enumerate(requests):
        if not isinstance(request, dict) or set(request) != {"custom_id", "params"}:
            return f"requests.{index}: expected exactly 'custom_id' and 'params'"
        custom_id = request["custom_id"]
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            return f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if custom_id in seen:
            return f"requests.{index}.custom_id: duplicate custom_id {custom_id}"
        seen.add(custom_id)
        params = request["params"]
        if not isinstance(params, dict):
            return f"requests.{index}.params: Input should be an object"
        for required in ("model", "max_tokens", "messages"):
            if required not in params:
                return f"requests.{index}.params.{required}: Field required"
        if not isinstance(params["max_tokens"], int) or "stream" in params:
            return f"requests.{index}.params: max_tokens must be an integer and stream is not allowed"
    return None
