"""OpenAI's Batch API (and Azure's, at `/openai/batches?api-version=...`) on the loopback fake.

A batch is created from a file the same account (path prefix) holds. Its lines are read and kept
(`FakeBatch.lines`, so a test can assert which lines reached which account and with which
`body.model`), and it then moves through the fake's `batch_plan`, one status per call: create shows
the first, every `GET` the next. Results are computed when the batch reaches its last status, by the
same answers a direct call gets (`FakeOpenAI.answer`), and written as OpenAI's output and error files,
which `GET /files/{id}/content` serves:

- `completed`: every line ran; a line OpenAI would refuse (`max_tokens` below 1) gets a 400 line in
  the error file, the others a 200 line in the output file.
- `failed`: nothing ran; `errors.data` is the fake's `batch_errors`, or, when some line names a
  model outside `batch_models` or another endpoint, one entry per such line (OpenAI's validation).
- `expired`: the first `batch_lines_done` lines ran (half by default); the others are `batch_expired`
  lines in the error file, as OpenAI writes them.
- `POST /batches/{id}/cancel`: `cancelling` at once, `cancelled` on the next `GET`, with the lines
  done so far (none while validating, `batch_lines_done` or half while in progress, all once finalizing).

`request_counts` follow the same numbers live (in progress: the lines done so far).
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.multipart import StoredFile

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

BATCHES_ROUTE = re.compile(r"^(?P<prefix>.*)/batches(?:/(?P<batch_id>[^/]+)(?P<cancel>/cancel)?)?$")
DEFAULT_BATCH_PLAN = ("validating", "in_progress", "finalizing", "completed")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINTS = ("/chat/completions", "/completions", "/embeddings")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
DEFAULT_FAILURE = [{"code": "invalid_request", "message": "The batch could not be processed.", "param": None,
                    "line": None}]


@dataclass
class FakeBatch:
    """One batch the fake holds, with the lines it was given and where it stands in its plan."""

    id: str
    prefix: str
    azure: bool
    endpoint: str
    input_file_id: str
    metadata: dict | None
    lines: list[dict]
    status: str
    plan: list[str]  # the statuses still to come, one per `GET`
    created_at: int = field(default_factory=lambda: int(time.time()))
    validation_errors: list[dict] = field(default_factory=list)
    done: int = 0  # lines with a result so far
    errors: list[dict] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    timestamps: dict[str, int] = field(default_factory=dict)
    cancel_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _endpoint_of(url: object) -> str:
    """`/v1/chat/completions` and Azure's `/chat/completions` name the same endpoint."""
    text = str(url or "")
    return text[3:] if text.startswith("/v1/") else text


def _lines_done(fake: FakeOpenAI, batch: FakeBatch, status: str) -> int:
    total = len(batch.lines)
    if status in ("validating", "failed"):
        return 0
    if status in ("finalizing", "completed"):
        return total
    partial = fake.batch_lines_done if fake.batch_lines_done is not None else total // 2
    return max(0, min(total, partial))


def _line_result(fake: FakeOpenAI, batch: FakeBatch, line: dict) -> tuple[bool, dict]:
    """(succeeded, OpenAI's output line) for one input line, run as a direct call would be."""
    body = line.get("body") or {}
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens < 1:
        error = {"message": f"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got "
                            f"{max_tokens} instead.", "type": "invalid_request_error", "param": "max_tokens",
                 "code": "integer_below_min_value"}
        response = {"status_code": 400, "request_id": request_id, "body": {"error": error}}
        succeeded = False
    else:
        response = {"status_code": 200, "request_id": request_id, "body": fake.answer(line.get("url", ""), body)}
        succeeded = True
    return succeeded, {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line.get("custom_id"),
                       "response": response, "error": None}


def _store(fake: FakeOpenAI, batch: FakeBatch, kind: str, lines: list[dict]) -> str | None:
    if not lines:
        return None
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    stored = StoredFile(id=f"file-{uuid.uuid4().hex[:24]}", prefix=batch.prefix,
                        filename=f"{batch.id}_{kind}.jsonl", purpose="batch_output",
                        content_type="application/jsonl", size=len(data), sha256="", data=data,
                        created_at=int(time.time()))
    with fake.lock:
        fake.files[stored.id] = stored
    return stored.id


def _finish(fake: FakeOpenAI, batch: FakeBatch, status: str) -> None:
    """Write the results of a batch that just reached `status` (one of TERMINAL)."""
    if status == "failed":
        batch.errors = batch.validation_errors or list(fake.batch_errors or DEFAULT_FAILURE)
        return
    outputs, failures = [], []
    for line in batch.lines[: batch.done]:
        succeeded, result = _line_result(fake, batch, line)
        (outputs if succeeded else failures).append(result)
    if status == "expired":
        failures += [{"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line.get("custom_id"),
                      "response": None, "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE}}
                     for line in batch.lines[batch.done:]]
    batch.completed, batch.failed = len(outputs), len(failures)
    batch.output_file_id = _store(fake, batch, "output", outputs)
    batch.error_file_id = _store(fake, batch, "error", failures)


def _advance(fake: FakeOpenAI, batch: FakeBatch) -> None:
    """One step along the plan (a `GET`): the next status, or `cancelled` after a cancel, or `failed`
    when validation found bad lines. A plan that ends without a final status stays on its last one."""
    if batch.status in TERMINAL:
        return
    if batch.status == "cancelling":
        _enter(fake, batch, "cancelled")
    elif batch.validation_errors:
        _enter(fake, batch, "failed")
    elif batch.plan:
        _enter(fake, batch, batch.plan.pop(0))


def _enter(fake: FakeOpenAI, batch: FakeBatch, status: str) -> None:
    """Move to `status`: its timestamp, the lines done by now, and the results once it is final."""
    batch.status = status
    batch.timestamps.setdefault(f"{status}_at", int(time.time()))
    if status not in ("cancelling", "cancelled"):
        batch.done = _lines_done(fake, batch, status)
    if status in TERMINAL:
        _finish(fake, batch, status)
    elif status != "validating":
        # Live counts while it runs: what the lines done so far gave.
        results = [_line_result(fake, batch, line)[0] for line in batch.lines[: batch.done]]
        batch.completed, batch.failed = results.count(True), results.count(False)


def batch_object(batch: FakeBatch) -> dict:
    """The batch as OpenAI (and Azure) describe it."""
    described = {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": batch.status,
        "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "created_at": batch.created_at, "expires_at": batch.created_at + 86400,
        "request_counts": {"total": len(batch.lines) if batch.status != "validating" else 0,
                           "completed": batch.completed, "failed": batch.failed},
        "metadata": batch.metadata,
    }
    for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                 "cancelled_at"):
        described[name] = batch.timestamps.get(name)
    return described


def handle_batches(handler, fake: FakeOpenAI, route: re.Match, body: dict) -> None:
    """Answer one call under `.../batches` (the handler's `_send_json` / `_invalid` write the answer)."""
    prefix, batch_id = route.group("prefix"), route.group("batch_id")
    if handler.command == "POST" and batch_id is None:
        _create(handler, fake, prefix, body)
        return
    if handler.command == "GET" and batch_id is None:
        listed = [batch_object(batch) for batch in reversed(fake.batches_under(prefix))]
        handler._send_json(200, {"object": "list", "data": listed, "has_more": False,
                                 "first_id": listed[0]["id"] if listed else None,
                                 "last_id": listed[-1]["id"] if listed else None})
        return
    batch = fake.batches.get(batch_id or "")
    if batch is None or batch.prefix != prefix:
        handler._send_json(404, {"error": {"message": f"No batch found with id '{batch_id}'.",
                                           "type": "invalid_request_error", "param": None, "code": None}})
        return
    with batch.lock:
        if handler.command == "POST" and route.group("cancel"):
            batch.cancel_requests += 1
            if batch.status in ("completed", "failed", "expired"):
                handler._invalid(f"Cannot cancel a batch with status '{batch.status}'.", None, None)
                return
            if batch.status != "cancelled":
                _enter(fake, batch, "cancelling")
        elif handler.command == "GET" and not route.group("cancel"):
            _advance(fake, batch)
        else:
            handler._send_json(405, {"error": {"message": f"{handler.command} is not allowed here.",
                                               "type": "invalid_request_error", "param": None, "code": None}})
            return
        handler._send_json(200, batch_object(batch))


def _create(handler, fake: FakeOpenAI, prefix: str, body: dict) -> None:
    azure = prefix.endswith("/openai")
    input_file_id = body.get("input_file_id")
    stored = fake.files.get(input_file_id) if isinstance(input_file_id, str) else None
    endpoint = _endpoint_of(body.get("endpoint"))
    if stored is None or stored.prefix != prefix:
        handler._invalid(f"Invalid 'input_file_id': no such file {input_file_id!r}.", "input_file_id", "invalid_file")
        return
    if stored.purpose != "batch":
        handler._invalid(f"File {stored.id} has purpose '{stored.purpose}', not 'batch'.", "input_file_id",
                         "invalid_file")
        return
    if endpoint not in ENDPOINTS:
        handler._invalid(f"Invalid 'endpoint': {body.get('endpoint')!r}.", "endpoint", "invalid_value")
        return
    if body.get("completion_window") != "24h":
        handler._invalid("Invalid 'completion_window': only '24h' is supported.", "completion_window",
                         "invalid_value")
        return
    lines = [json.loads(raw) for raw in (stored.data or b"").splitlines() if raw.strip()]
    batch = FakeBatch(id=f"batch_{uuid.uuid4().hex[:24]}", prefix=prefix, azure=azure, endpoint=body["endpoint"],
                      input_file_id=stored.id, metadata=body.get("metadata"), lines=lines,
                      status=fake.batch_plan[0], plan=list(fake.batch_plan[1:]))
    for number, line in enumerate(lines, start=1):
        model = (line.get("body") or {}).get("model")
        if _endpoint_of(line.get("url")) != endpoint:
            batch.validation_errors.append({"code": "invalid_url", "line": number, "param": "url",
                                            "message": f"The url {line.get('url')!r} does not match the batch's "
                                                       "endpoint."})
        elif fake.batch_models is not None and model not in fake.batch_models:
            batch.validation_errors.append({"code": "model_not_found", "line": number, "param": "body.model",
                                            "message": f"The model '{model}' does not exist or you do not have "
                                                       "access to it."})
    with fake.lock:
        fake.batches[batch.id] = batch
    handler._send_json(200, batch_object(batch))
