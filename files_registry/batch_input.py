"""Batch input files (`purpose: batch`): reading, checking and rewriting their JSONL lines.

A batch input holds one request per line, OpenAI's shape: `{"custom_id", "method": "POST", "url",
"body": {"model": ..., ...}}`. The upload checks every line (`batch_input_check`) so a broken file is
refused with its line number before anything is copied; batch creation reads it again to plan and run
the work (`batch_requests`). Each deployment's copy has `body.model` rewritten to the deployment's own
model or Azure deployment name (`batch_input_rewrite`): providers refuse a batch naming a model group.

Files are read a line at a time (an input may be 200 MB): nothing here holds a whole file in memory.
Line numbers in messages are the file's own, counted from 1, blank lines included; requests are
numbered from 0 in the order they appear, which is the order of the output file.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

# The endpoints a batch line may call, and the router operation each one is.
BATCH_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
MAX_CUSTOM_ID_CHARS = 512
# Problems reported for one file: enough to fix a file, bounded so a broken 50,000-line file stays small.
MAX_PROBLEMS = 100


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One line of a batch input, checked."""

    index: int
    line_number: int
    custom_id: str
    url: str
    body: dict

    @property
    def model(self) -> str:
        return self.body["model"]


@dataclass(frozen=True, slots=True)
class LineProblem:
    """What is wrong with one line, as OpenAI's batch `errors.data[]` entry."""

    line: int
    code: str
    message: str
    param: str | None = None

    def as_error(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(slots=True)
class BatchInputSummary:
    """What a whole input holds: its request count, the models and endpoints named, the problems found."""

    total: int = 0
    models: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def note(self, problem: LineProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


class LineError(Exception):
    def __init__(self, problem: LineProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _raw_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line."""
    for number, raw in enumerate(handle, start=1):
        stripped = raw.strip()
        if stripped:
            yield number, stripped


def batch_request_parse(index: int, line_number: int, raw: bytes) -> BatchRequest:
    """One line as a `BatchRequest`, or `LineError` naming what is wrong with it."""
    def refuse(code: str, message: str, param: str | None = None) -> LineError:
        return LineError(LineProblem(line=line_number, code=code, message=f"Line {line_number}: {message}",
                                     param=param))

    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise refuse("invalid_json_line", "this line is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise refuse("invalid_json_line", "each line must be a JSON object.")
    custom_id = parsed.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise refuse("missing_required_parameter", "'custom_id' must be a non-empty string.", "custom_id")
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise refuse("invalid_value", f"'custom_id' is longer than {MAX_CUSTOM_ID_CHARS} characters.", "custom_id")
    if parsed.get("method") != "POST":
        raise refuse("invalid_value", "'method' must be \"POST\".", "method")
    url = parsed.get("url")
    if url not in BATCH_ENDPOINTS:
        allowed = ", ".join(BATCH_ENDPOINTS)
        raise refuse("invalid_url", f"'url' must be one of {allowed}.", "url")
    body = parsed.get("body")
    if not isinstance(body, dict):
        raise refuse("missing_required_parameter", "'body' must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise refuse("missing_required_parameter", "'body.model' must be a non-empty string.", "body.model")
    if body.get("stream"):
        raise refuse("invalid_value", "batch requests cannot be streamed ('body.stream').", "body.stream")
    return BatchRequest(index=index, line_number=line_number, custom_id=custom_id, url=url, body=body)


def batch_requests(handle: BinaryIO) -> Iterator[BatchRequest]:
    """Every request of an input already checked; raises `LineError` at the first bad line."""
    for index, (number, raw) in enumerate(_raw_lines(handle)):
        yield batch_request_parse(index, number, raw)


def batch_input_check(handle: BinaryIO, *, model_problem: Callable[[str], str | None] | None = None,
                      endpoint: str | None = None) -> BatchInputSummary:
    """Check every line of an input: its shape, unique `custom_id`s, one model, and, when given,
    the model (`model_problem(model)` returns why it may not be used, or None) and the endpoint."""
    summary = BatchInputSummary()
    seen: set[str] = set()
    judged: dict[str, str | None] = {}
    for index, (number, raw) in enumerate(_raw_lines(handle)):
        summary.total = index + 1
        try:
            request = batch_request_parse(index, number, raw)
        except LineError as error:
            summary.note(error.problem)
            continue
        problem = _line_problem(request, seen, judged, summary, model_problem, endpoint)
        if problem is not None:
            summary.note(problem)
    if summary.total == 0:
        summary.note(LineProblem(line=1, code="empty_file", message="The batch input holds no requests."))
    return summary


def _line_problem(request: BatchRequest, seen: set[str], judged: dict[str, str | None], summary: BatchInputSummary,
                  model_problem: Callable[[str], str | None] | None, endpoint: str | None) -> LineProblem | None:
    number = request.line_number
    if request.custom_id in seen:
        return LineProblem(number, "duplicate_custom_id",
                           f"Line {number}: custom_id '{request.custom_id[:64]}' appears more than once.", "custom_id")
    seen.add(request.custom_id)
    if endpoint is not None and request.url != endpoint:
        return LineProblem(number, "mismatched_endpoint",
                           f"Line {number}: url '{request.url}' is not the batch's endpoint '{endpoint}'.", "url")
    if request.url not in summary.urls:
        summary.urls.append(request.url)
    model = request.model
    if model not in judged:
        judged[model] = model_problem(model) if model_problem is not None else None
        if judged[model] is None:
            summary.models.append(model)
    if judged[model] is not None:
        return LineProblem(number, "invalid_model", f"Line {number}: {judged[model]}", "body.model")
    if len(summary.models) > 1 and model != summary.models[0]:
        return LineProblem(number, "mismatched_model",
                           f"Line {number}: model '{model[:64]}' differs from '{summary.models[0][:64]}'; "
                           "a batch runs on one model.", "body.model")
    return None


def batch_input_rewrite(requests: Iterable[BatchRequest], out: BinaryIO, *, model: str) -> int:
    """Write `requests` as JSONL with `body.model` set to `model` (a deployment's own name); returns
    the bytes written. Every other field is kept as the client wrote it."""
    written = 0
    for request in requests:
        line = orjson.dumps({"custom_id": request.custom_id, "method": "POST", "url": request.url,
                             "body": {**request.body, "model": model}}) + b"\n"
        out.write(line)
        written += len(line)
    return written
