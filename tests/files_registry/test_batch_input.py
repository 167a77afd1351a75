"""`files_registry.batch_input` on its own: every problem a line can have, reported with the file's own line
number (blank lines counted), unique `custom_id`s, one model per file, the model judge called once per model,
and the rewrite that changes `body.model` and nothing else."""
from __future__ import annotations

import io

import orjson
import pytest

from files_registry.batch_input import (
    MAX_PROBLEMS,
    BatchRequest,
    LineError,
    LineProblem,
    batch_input_check,
    batch_input_rewrite,
    batch_request_parse,
    batch_requests,
)


def line(custom_id: object = "req-1", *, model: object = "gpt-4o-batch", url: object = "/v1/chat/completions",
         method: object = "POST", **body) -> dict:
    return {"custom_id": custom_id, "method": method, "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": "Hi"}], **body}}


def jsonl(*rows: dict | bytes | str) -> io.BytesIO:
    """Rows as a JSONL file: dicts are dumped, bytes and str are written as they are (one line each)."""
    encoded = [row if isinstance(row, bytes) else row.encode() if isinstance(row, str) else orjson.dumps(row)
               for row in rows]
    return io.BytesIO(b"".join(item + b"\n" for item in encoded))


def problems(handle: io.BytesIO, **options) -> list[tuple[int, str, str | None, str]]:
    summary = batch_input_check(handle, **options)
    return [(p.line, p.code, p.param, p.message) for p in summary.problems]


@pytest.mark.parametrize(("raw", "code", "param", "message"), [
    (b'{"custom_id": "a",', "invalid_json_line", None, "this line is not valid JSON."),
    (b'["custom_id", "a"]', "invalid_json_line", None, "each line must be a JSON object."),
    (orjson.dumps({k: v for k, v in line().items() if k != "custom_id"}), "missing_required_parameter",
     "custom_id", "'custom_id' must be a non-empty string."),
    (orjson.dumps(line("")), "missing_required_parameter", "custom_id", "'custom_id' must be a non-empty string."),
    (orjson.dumps(line(7)), "missing_required_parameter", "custom_id", "'custom_id' must be a non-empty string."),
    (orjson.dumps(line("x" * 513)), "invalid_value", "custom_id", "'custom_id' is longer than 512 characters."),
    (orjson.dumps(line(method="GET")), "invalid_value", "method", "'method' must be \"POST\"."),
    (orjson.dumps(line(url="/v1/responses")), "invalid_url", "url",
     "'url' must be one of /v1/chat/completions, /v1/completions, /v1/embeddings."),
    (orjson.dumps({**line(), "body": "text"}), "missing_required_parameter", "body", "'body' must be a JSON object."),
    (orjson.dumps({k: v for k, v in line().items() if k != "body"}), "missing_required_parameter", "body",
     "'body' must be a JSON object."),
    (orjson.dumps(line(model="")), "missing_required_parameter", "body.model",
     "'body.model' must be a non-empty string."),
    (orjson.dumps(line(model=None)), "missing_required_parameter", "body.model",
     "'body.model' must be a non-empty string."),
    (orjson.dumps(line(stream=True)), "invalid_value", "body.stream",
     "batch requests cannot be streamed ('body.stream')."),
], ids=["not-json", "not-object", "no-custom-id", "empty-custom-id", "number-custom-id", "long-custom-id", "get",
        "unknown-url", "body-text", "no-body", "empty-model", "null-model", "stream"])
def test_each_problem_of_a_line_is_named_with_its_line_number(raw, code, param, message):
    with pytest.raises(LineError) as raised:
        batch_request_parse(0, 5, raw)
    assert raised.value.problem == LineProblem(line=5, code=code, message=f"Line 5: {message}", param=param)
    assert raised.value.problem.as_error() == {"code": code, "message": f"Line 5: {message}", "param": param,
                                               "line": 5}
    assert problems(jsonl(orjson.dumps(line("first")), raw)) == [(2, code, param, f"Line 2: {message}")]


def test_a_custom_id_of_exactly_the_limit_and_stream_false_are_accepted():
    request = batch_request_parse(3, 9, orjson.dumps(line("x" * 512, stream=False)))
    assert (request.index, request.line_number, request.custom_id, request.model) == (3, 9, "x" * 512,
                                                                                      "gpt-4o-batch")


def test_line_numbers_count_blank_lines_but_requests_do_not():
    handle = jsonl("", line("a"), "   ", "", line("b"), "\t", line("c"))
    requests = list(batch_requests(handle))
    assert [(r.index, r.line_number, r.custom_id) for r in requests] == [(0, 2, "a"), (1, 5, "b"), (2, 7, "c")]
    summary = batch_input_check(jsonl("", line("a"), "", b"{oops", line(""), line("b")))
    assert (summary.total, summary.ok, summary.problem_count) == (4, False, 2)
    assert [(p.line, p.message) for p in summary.problems] == [
        (4, "Line 4: this line is not valid JSON."), (5, "Line 5: 'custom_id' must be a non-empty string.")]


def test_crlf_line_endings_and_a_missing_final_newline_are_fine():
    handle = io.BytesIO(orjson.dumps(line("a")) + b"\r\n" + orjson.dumps(line("b")))
    summary = batch_input_check(handle)
    assert (summary.ok, summary.total, summary.models, summary.urls) == (True, 2, ["gpt-4o-batch"],
                                                                         ["/v1/chat/completions"])


def test_batch_requests_stops_at_the_first_bad_line():
    handle = jsonl(line("a"), line("b", method="PUT"), b"not json")
    reader = batch_requests(handle)
    assert next(reader).custom_id == "a"
    with pytest.raises(LineError) as raised:
        next(reader)
    assert (raised.value.problem.line, raised.value.problem.code) == (2, "invalid_value")
    assert str(raised.value) == "Line 2: 'method' must be \"POST\"."


def test_a_repeated_custom_id_is_reported_on_each_repeat():
    summary = batch_input_check(jsonl(line("a"), line("b"), line("a"), line("a")))
    assert [(p.line, p.code, p.param, p.message) for p in summary.problems] == [
        (3, "duplicate_custom_id", "custom_id", "Line 3: custom_id 'a' appears more than once."),
        (4, "duplicate_custom_id", "custom_id", "Line 4: custom_id 'a' appears more than once.")]
    assert summary.total == 4


def test_one_model_per_file():
    summary = batch_input_check(jsonl(line("a"), line("b", model="gpt-4o-mini"), line("c"),
                                      line("d", model="other")))
    assert [(p.line, p.code, p.param, p.message) for p in summary.problems] == [
        (2, "mismatched_model", "body.model",
         "Line 2: model 'gpt-4o-mini' differs from 'gpt-4o-batch'; a batch runs on one model."),
        (4, "mismatched_model", "body.model",
         "Line 4: model 'other' differs from 'gpt-4o-batch'; a batch runs on one model.")]
    assert summary.models == ["gpt-4o-batch", "gpt-4o-mini", "other"]


def test_the_model_judge_is_asked_once_per_model_and_its_reason_is_quoted():
    asked: list[str] = []

    def judge(model: str) -> str | None:
        asked.append(model)
        return None if model == "gpt-4o-batch" else f"model '{model}' is not a model group of this gateway."

    summary = batch_input_check(jsonl(line("a", model="nope"), line("b"), line("c", model="nope"), line("d")),
                                model_problem=judge)
    assert asked == ["nope", "gpt-4o-batch"]
    assert [(p.line, p.code, p.param, p.message) for p in summary.problems] == [
        (1, "invalid_model", "body.model", "Line 1: model 'nope' is not a model group of this gateway."),
        (3, "invalid_model", "body.model", "Line 3: model 'nope' is not a model group of this gateway.")]
    assert summary.models == ["gpt-4o-batch"]


def test_the_endpoint_when_given_must_be_every_lines_url():
    handle = jsonl(line("a"), line("b", url="/v1/embeddings"), line("c", url="/v1/completions"))
    assert problems(handle, endpoint="/v1/chat/completions") == [
        (2, "mismatched_endpoint", "url", "Line 2: url '/v1/embeddings' is not the batch's endpoint "
                                          "'/v1/chat/completions'."),
        (3, "mismatched_endpoint", "url", "Line 3: url '/v1/completions' is not the batch's endpoint "
                                          "'/v1/chat/completions'.")]
    mixed = batch_input_check(jsonl(line("a"), line("b", url="/v1/embeddings")))
    assert (mixed.ok, mixed.urls) == (True, ["/v1/chat/completions", "/v1/embeddings"])


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["empty", "blank-lines"])
def test_a_file_without_requests_is_a_problem(content):
    summary = batch_input_check(io.BytesIO(content))
    assert (summary.total, summary.problem_count) == (0, 1)
    assert summary.problems == [LineProblem(line=1, code="empty_file", message="The batch input holds no requests.")]


def test_problems_are_counted_past_the_ones_kept():
    summary = batch_input_check(jsonl(*[b"[]"] * (MAX_PROBLEMS + 7)))
    assert (summary.problem_count, len(summary.problems), summary.total) == (MAX_PROBLEMS + 7, MAX_PROBLEMS,
                                                                            MAX_PROBLEMS + 7)
    assert summary.problems[-1].line == MAX_PROBLEMS


def test_the_rewrite_sets_the_model_and_keeps_every_other_field():
    original = [
        line("a", temperature=0.2, metadata={"k": "v"}, messages=[{"role": "user", "content": "Grüße 👋"}]),
        {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {"model": "gpt-4o-batch",
                                                                               "input": ["x", "y"]}},
    ]
    handle = jsonl(original[0], "", original[1])
    out = io.BytesIO()
    written = batch_input_rewrite(batch_requests(handle), out, model="east-deployment")
    data = out.getvalue()
    assert written == len(data) and data.endswith(b"\n") and data.count(b"\n") == 2
    rewritten = [orjson.loads(raw) for raw in data.splitlines()]
    assert rewritten == [{**row, "body": {**row["body"], "model": "east-deployment"}} for row in original]
    assert "Grüße 👋".encode() in data


def test_the_rewrite_does_not_change_the_requests_it_was_given():
    request = BatchRequest(index=0, line_number=1, custom_id="a", url="/v1/completions",
                           body={"model": "group", "prompt": "p"})
    out = io.BytesIO()
    batch_input_rewrite([request], out, model="m")
    assert request.body == {"model": "group", "prompt": "p"}
    assert orjson.loads(out.getvalue()) == {"custom_id": "a", "method": "POST", "url": "/v1/completions",
                                            "body": {"model": "m", "prompt": "p"}}
