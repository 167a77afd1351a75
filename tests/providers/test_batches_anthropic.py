"""Native batches on Anthropic deployments: the Message Batches API against the loopback fake.

Each test asserts what reached the fake (method, path, headers, the exact translated params) and what
the adapter made of Anthropic's answers: OpenAI's batch statuses and counts, and OpenAI batch output
lines whose custom ids are the client's own, however Anthropic had to be sent them.
"""
from __future__ import annotations

import time

import orjson
import pytest

from providers.anthropic import FILES_BETA, AnthropicProvider
from providers.batches import BATCH_INPUT_INLINE, ProviderBatch
from providers.errors import (
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamServerError,
)
from providers.http import Deadline, read_all, send
from providers.registry import adapter_for
from providers.translate.anthropic_batches import (
    decode_custom_id,
    encode_custom_id,
    provider_batch,
)
from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block
from tests.providers.helpers import UPSTREAM_KEY, only_request, target_for, transport_headers

MODEL = "claude-sonnet-4-5-20250929"
CHAT = "/v1/chat/completions"
GATEWAY_METADATA = {"gatehouse_batch_id": "batch_abc", "gatehouse_part": "0"}


@pytest.fixture
def fake(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def anthropic() -> AnthropicProvider:
    return adapter_for("anthropic")


def anthropic_target(fake: FakeAnthropic, **fields):
    fields.setdefault("api_base", fake.url)
    return target_for(None, provider="anthropic", model=MODEL, **fields)


def line(custom_id: str, **body) -> dict:
    body.setdefault("model", "claude-group")
    body.setdefault("messages", [{"role": "user", "content": f"Hello {custom_id}"}])
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def read_headers(fake: FakeAnthropic, recorded) -> dict[str, str]:
    """A bodiless call's headers: no content type, the key and the version."""
    return {**transport_headers(fake, recorded), "anthropic-version": "2023-06-01", "x-api-key": UPSTREAM_KEY}


def user_params(text: str, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "max_tokens": 4096, **extra}


def create(anthropic, fake, lines, deadline, **fields) -> ProviderBatch:
    return anthropic.batch_create(anthropic_target(fake, **fields), endpoint=CHAT, input_file=None,
                                  requests=lines, metadata=GATEWAY_METADATA, deadline=deadline)


def ended(anthropic, fake, batch: ProviderBatch, deadline) -> ProviderBatch:
    """Poll the fake until its batch ends (its default plan: one `in_progress` retrieval, then ended)."""
    for _ in range(5):
        batch = anthropic.batch_retrieve(anthropic_target(fake), batch.id, deadline)
        if batch.finished:
            return batch
    raise AssertionError(f"batch never ended: {batch}")


def results(anthropic, fake, batch: ProviderBatch, deadline) -> list[dict]:
    """The output lines, with each line's random `batch_req_` id and the completion's `created` checked
    and removed so the rest can be compared exactly."""
    started = int(time.time())
    lines = list(anthropic.batch_results(anthropic_target(fake), batch, deadline))
    for output in lines:
        line_id = output.pop("id")
        assert line_id.startswith("batch_req_") and len(line_id) == len("batch_req_") + 32
        body = (output["response"] or {}).get("body") or {}
        if "created" in body:
            assert started <= body.pop("created") <= int(time.time())
    return lines


def completion(message_id: str, text: str | None, *, finish: str = "stop", usage=(12, 6), **message) -> dict:
    prompt, answer = usage
    return {"id": message_id, "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None, **message},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}}


def succeeded(custom_id: str, message_id: str, body: dict) -> dict:
    return {"custom_id": custom_id, "response": {"status_code": 200, "request_id": message_id, "body": body},
            "error": None}


# --- create --------------------------------------------------------------------------------------

def test_create_sends_every_line_translated_for_the_deployments_model(fake, anthropic, deadline):
    """The chat translation of a live call, per line: system to `system`, `stop` to `stop_sequences`,
    `user` to `metadata.user_id`, tools to Anthropic tools; `stream` and gateway-only fields never go;
    the deployment's `max_tokens` is the default; the gateway's batch metadata is not sent."""
    assert (anthropic.supports_batches, anthropic.batch_input) == (True, BATCH_INPUT_INLINE)
    lines = [
        line("request-1", messages=[{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"}],
             temperature=0.2, stop=["END"], user="end-user-7", stream=True, metadata={"trace": "x"},
             fallbacks=["other"]),
        line("request-2", max_tokens=50, tools=[{"type": "function", "function": {
            "name": "lookup", "description": "Look it up.", "parameters": {"type": "object"}}}],
             tool_choice="required"),
    ]
    before = orjson.loads(orjson.dumps(lines))
    batch = create(anthropic, fake, lines, deadline, params={"max_tokens": 1000})

    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/messages/batches", {})
    assert recorded.headers == {**transport_headers(fake, recorded), "content-type": "application/json",
                                "anthropic-version": "2023-06-01", "x-api-key": UPSTREAM_KEY}
    assert recorded.body == {"requests": [
        {"custom_id": "request-1", "params": {
            "model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "system": [{"type": "text", "text": "Be brief."}], "max_tokens": 1000, "stop_sequences": ["END"],
            "temperature": 0.2, "metadata": {"user_id": "end-user-7"}}},
        {"custom_id": "request-2", "params": {
            **user_params("Hello request-2", max_tokens=50),
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}, "description": "Look it up."}],
            "tool_choice": {"type": "any"}}},
    ]}
    assert lines == before
    [made] = fake.batches.batches.values()
    assert batch == ProviderBatch(id=made.id, status="in_progress", raw_status="in_progress", total=2, completed=0,
                                  failed=0, results_url=None)
    assert batch.id.startswith("msgbatch_")


def test_create_adds_the_files_beta_when_a_line_quotes_an_anthropic_file(fake, anthropic, deadline):
    part = {"type": "file", "file": {"file_id": "file_011Cabc", "format": "application/pdf"}}
    create(anthropic, fake, [line("doc-1", messages=[{"role": "user", "content": [part]}])], deadline)

    recorded = only_request(fake)
    assert recorded.headers["anthropic-beta"] == FILES_BETA
    assert recorded.body["requests"][0]["params"]["messages"] == [
        {"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "file_011Cabc"}}]}]


def test_only_chat_lines_can_run_on_anthropic(fake, anthropic, deadline):
    for endpoint in ("/v1/embeddings", "/v1/completions"):
        with pytest.raises(UpstreamBadRequestError) as raised:
            anthropic.batch_create(anthropic_target(fake), endpoint=endpoint, input_file=None,
                                   requests=[line("a")], metadata={}, deadline=deadline)
        assert raised.value.envelope() == {"error": {
            "message": f"Anthropic message batches only run /v1/chat/completions requests, not {endpoint}.",
            "type": "invalid_request_error", "param": "endpoint", "code": "unsupported_endpoint"}}
    assert fake.requests == []


def test_a_line_that_cannot_be_translated_refuses_the_batch_before_anything_is_sent(fake, anthropic, deadline):
    lines = [line("ok-1"), line("bad-2", messages=[{"role": "robot", "content": "beep"}])]
    with pytest.raises(UpstreamBadRequestError) as raised:
        create(anthropic, fake, lines, deadline)
    assert (raised.value.status_code, raised.value.retryable) == (400, False)
    assert raised.value.envelope() == {"error": {
        "message": "Batch request 1 (custom_id 'bad-2'): messages[0].role 'robot' cannot be sent to an "
                   "Anthropic model.",
        "type": "invalid_request_error", "param": "messages[0].role", "code": "invalid_value"}}
    with pytest.raises(UpstreamBadRequestError) as empty:
        create(anthropic, fake, [], deadline)
    assert (empty.value.message, empty.value.code) == ("A message batch needs at least one request.", "empty_batch")
    assert fake.requests == []


def test_an_upstream_refusal_of_the_create_call_is_a_provider_error(fake, anthropic, deadline):
    fake.fail_next(status=529, error_type="overloaded_error", message="Overloaded", path_contains="/batches")
    with pytest.raises(UpstreamServerError) as raised:
        create(anthropic, fake, [line("a")], deadline)
    assert (raised.value.status_code, raised.value.retryable, raised.value.message) == (503, True, "Overloaded")

    fake.fail_next(status=400, error_type="invalid_request_error", message="requests: too many",
                   path_contains="/batches")
    with pytest.raises(UpstreamBadRequestError) as refused:
        create(anthropic, fake, [line("a")], deadline)
    assert (refused.value.status_code, refused.value.message) == (400, "requests: too many")
    assert fake.batches.batches == {}


# --- custom ids ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("client_id", "sent"), [
    ("request-1", "request-1"),
    ("task_0", "task__0"),
    ("doc 7/β", "doc_207_2F_CE_B2"),
    ("a.b:c", "a_2Eb_3Ac"),
    ("_", "__"),
    ("x" * 64, "x" * 64),
])
def test_custom_ids_are_encoded_reversibly(client_id, sent):
    assert encode_custom_id(client_id) == sent
    assert decode_custom_id(sent) == client_id


@pytest.mark.parametrize("foreign", ["plain", "lone_underscore", "low_2ehex", "bad_ZZ", "trailing_"])
def test_an_id_the_gateway_did_not_encode_is_kept_as_it_came(foreign):
    assert decode_custom_id(foreign) == foreign


def test_custom_ids_anthropic_would_refuse_come_back_as_the_client_wrote_them(fake, anthropic, deadline):
    lines = [line("row 1.a"), line("row_2"), line("ü")]
    batch = create(anthropic, fake, lines, deadline)
    assert [item["custom_id"] for item in only_request(fake).body["requests"]] == ["row_201_2Ea", "row__2",
                                                                                   "_C3_BC"]
    outputs = results(anthropic, fake, ended(anthropic, fake, batch, deadline), deadline)
    assert [output["custom_id"] for output in outputs] == ["row 1.a", "row_2", "ü"]


def test_an_id_too_long_once_encoded_refuses_the_batch(fake, anthropic, deadline):
    long_id = "item:" + "9" * 60
    with pytest.raises(UpstreamBadRequestError) as raised:
        create(anthropic, fake, [line("fine"), line(long_id)], deadline)
    assert raised.value.envelope() == {"error": {
        "message": f"Batch request 1: custom_id {long_id!r} is too long for Anthropic message batches (at most 64 "
                   "characters from A-Z, a-z, 0-9, '-' and '_', after encoding any other character).",
        "type": "invalid_request_error", "param": "custom_id", "code": "invalid_custom_id"}}
    assert fake.requests == []


# --- retrieve and its status mapping --------------------------------------------------------------

def test_retrieve_follows_the_batch_until_it_ends(fake, anthropic, deadline):
    fake.batches.polls_in_progress = 2
    batch = create(anthropic, fake, [line("a"), line("b"), line("c")], deadline)
    fake.requests.clear()
    target = anthropic_target(fake)

    seen = [anthropic.batch_retrieve(target, batch.id, deadline) for _ in range(3)]
    results_url = f"{fake.url}/v1/messages/batches/{batch.id}/results"
    assert seen == [
        ProviderBatch(id=batch.id, status="in_progress", raw_status="in_progress", total=3),
        ProviderBatch(id=batch.id, status="in_progress", raw_status="in_progress", total=3),
        ProviderBatch(id=batch.id, status="completed", raw_status="ended", total=3, completed=3,
                      results_url=results_url),
    ]
    assert seen[2].finished and not seen[1].finished
    assert [(r.method, r.path, r.body) for r in fake.requests] == [("GET", f"/v1/messages/batches/{batch.id}",
                                                                    None)] * 3
    assert fake.requests[0].headers == read_headers(fake, fake.requests[0])


def test_retrieving_a_batch_anthropic_does_not_know_is_not_found(fake, anthropic, deadline):
    with pytest.raises(UpstreamNotFoundError) as raised:
        anthropic.batch_retrieve(anthropic_target(fake), "msgbatch_missing", deadline)
    assert raised.value.message == "Batch not found: msgbatch_missing"


def raw_batch(status: str, *, cancel: bool = False, **counts: int) -> dict:
    return {"id": "msgbatch_1", "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0, **counts},
            "cancel_initiated_at": "2025-01-01T00:00:00Z" if cancel else None,
            "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results"
            if status == "ended" else None}


@pytest.mark.parametrize(("raw", "status", "counts"), [
    (raw_batch("in_progress", processing=5), "in_progress", (5, 0, 0)),
    (raw_batch("in_progress", cancel=True, processing=5), "cancelling", (5, 0, 0)),
    (raw_batch("canceling", cancel=True, processing=3, succeeded=2), "cancelling", (5, 2, 0)),
    (raw_batch("ended", succeeded=3, errored=2), "completed", (5, 3, 2)),
    (raw_batch("ended", errored=4), "completed", (4, 0, 4)),
    (raw_batch("ended", succeeded=3, expired=2), "expired", (5, 3, 2)),
    (raw_batch("ended", cancel=True, succeeded=1, errored=1, canceled=3), "cancelled", (5, 1, 4)),
    (raw_batch("ended", cancel=True, succeeded=2, expired=1, canceled=2), "cancelled", (5, 2, 3)),
    (raw_batch("archiving_someday", processing=1), "in_progress", (1, 0, 0)),
])
def test_anthropic_statuses_and_counts_in_openais_words(raw, status, counts):
    mapped = provider_batch(raw)
    assert (mapped.status, mapped.raw_status, (mapped.total, mapped.completed, mapped.failed)) == (
        status, raw["processing_status"], counts)
    assert mapped.results_url == raw["results_url"]


def test_a_batch_object_without_an_id_is_an_upstream_failure():
    with pytest.raises(UpstreamServerError) as raised:
        provider_batch({"processing_status": "ended"})
    assert raised.value.message == "The upstream provider answered a batch call without a batch id."


# --- results -------------------------------------------------------------------------------------

def test_results_turn_every_outcome_into_openai_output_lines(fake, anthropic, deadline):
    fake.reply_with(text_block("First answer."), usage={"input_tokens": 20, "output_tokens": 4,
                                                        "cache_read_input_tokens": 5})
    fake.reply_with(tool_use_block("toolu_1", "lookup", {"q": "x"}), stop_reason="tool_use")
    fake.batches.force("bad", "invalid_request_error")
    fake.batches.force("busy", "overloaded_error")
    fake.batches.force("late", "expired")
    batch = create(anthropic, fake, [line("ok"), line("tool"), line("bad"), line("busy"), line("late")], deadline)
    batch = ended(anthropic, fake, batch, deadline)
    assert (batch.status, batch.total, batch.completed, batch.failed) == ("expired", 5, 2, 3)
    fake.requests.clear()

    outputs = results(anthropic, fake, batch, deadline)

    recorded = only_request(fake)
    assert (recorded.method, recorded.path) == ("GET", f"/v1/messages/batches/{batch.id}/results")
    assert recorded.headers == read_headers(fake, recorded)
    assert outputs == [
        succeeded("ok", "msg_batch_0001", {
            **completion("msg_batch_0001", "First answer.", usage=(25, 4)),
            "usage": {"prompt_tokens": 25, "completion_tokens": 4, "total_tokens": 29,
                      "prompt_tokens_details": {"cached_tokens": 5}}}),
        succeeded("tool", "msg_batch_0002", completion(
            "msg_batch_0002", None, finish="tool_calls",
            tool_calls=[{"id": "toolu_1", "type": "function",
                         "function": {"name": "lookup", "arguments": '{"q":"x"}'}}])),
        {"custom_id": "bad", "response": {"status_code": 400, "request_id": "", "body": {"error": {
            "message": "Forced invalid_request_error for bad.", "type": "invalid_request_error", "param": None,
            "code": None}}}, "error": None},
        {"custom_id": "busy", "response": {"status_code": 503, "request_id": "", "body": {"error": {
            "message": "Forced overloaded_error for busy.", "type": "api_error", "param": None,
            "code": "overloaded"}}}, "error": None},
        {"custom_id": "late", "response": None, "error": {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired."}},
    ]


def test_structured_output_comes_back_as_the_message_content(fake, anthropic, deadline):
    fake.reply_with(tool_use_block("toolu_9", "json_tool_call", {"city": "Paris"}), stop_reason="tool_use")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    lines = [line("json-1", response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})]
    batch = create(anthropic, fake, lines, deadline)
    params = only_request(fake).body["requests"][0]["params"]
    assert (params["tools"][0]["name"], params["tool_choice"]) == ("json_tool_call",
                                                                   {"type": "tool", "name": "json_tool_call"})

    outputs = results(anthropic, fake, ended(anthropic, fake, batch, deadline), deadline)
    assert outputs == [succeeded("json-1", "msg_batch_0001", completion("msg_batch_0001", '{"city":"Paris"}'))]


def test_cancel_keeps_what_finished_and_reports_the_rest_cancelled(fake, anthropic, deadline):
    fake.batches.polls_in_progress = 5
    batch = create(anthropic, fake, [line(f"r-{n}") for n in range(4)], deadline)
    target = anthropic_target(fake)
    fake.requests.clear()

    cancelling = anthropic.batch_cancel(target, batch.id, deadline)
    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.raw) == ("POST", f"/v1/messages/batches/{batch.id}/cancel", b"")
    assert recorded.headers == read_headers(fake, recorded)
    assert cancelling == ProviderBatch(id=batch.id, status="cancelling", raw_status="canceling", total=4)

    assert anthropic.batch_retrieve(target, batch.id, deadline).status == "cancelling"
    done = anthropic.batch_retrieve(target, batch.id, deadline)
    assert done == ProviderBatch(id=batch.id, status="cancelled", raw_status="ended", total=4, completed=2, failed=2,
                                 results_url=f"{fake.url}/v1/messages/batches/{batch.id}/results")
    cancelled = {"code": "batch_cancelled", "message": "This request was cancelled before it ran."}
    assert results(anthropic, fake, done, deadline) == [
        succeeded("r-0", "msg_batch_0001", completion("msg_batch_0001", "Hello from the fake Anthropic.")),
        succeeded("r-1", "msg_batch_0002", completion("msg_batch_0002", "Hello from the fake Anthropic.")),
        {"custom_id": "r-2", "response": None, "error": cancelled},
        {"custom_id": "r-3", "response": None, "error": cancelled},
    ]


def test_results_are_read_only_from_the_deployments_own_host(fake, anthropic, deadline):
    """A `results_url` elsewhere (or none) is not followed with the key: the standard path under `api_base` is read."""
    batch = ended(anthropic, fake, create(anthropic, fake, [line("a")], deadline), deadline)
    fake.requests.clear()
    for elsewhere in ("http://198.51.100.7/v1/messages/batches/x/results", None):
        moved = ProviderBatch(id=batch.id, status="completed", results_url=elsewhere)
        assert [output["custom_id"] for output in results(anthropic, fake, moved, deadline)] == ["a"]
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"/v1/messages/batches/{batch.id}/results")] * 2


def test_results_of_a_batch_still_running_are_refused_by_anthropic(fake, anthropic, deadline):
    batch = create(anthropic, fake, [line("a")], deadline)
    with pytest.raises(UpstreamBadRequestError) as raised:
        list(anthropic.batch_results(anthropic_target(fake), batch, deadline))
    assert raised.value.message == f"Batch {batch.id} is still in_progress; results are not ready."
# --- the fake itself (what the adapter cannot send) -----------------------------------------------

def test_the_fake_errors_a_request_whose_max_tokens_is_not_positive_and_checks_shapes(fake):
    headers = {"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    deadline = Deadline.after(10)

    def post(payload: dict) -> dict:
        response = send("POST", f"{fake.url}/v1/messages/batches", headers=headers, body=orjson.dumps(payload),
                        deadline=deadline)
        return orjson.loads(read_all(response, deadline))

    made = post({"requests": [{"custom_id": "zero", "params": user_params("x", max_tokens=0)}]})
    [batch] = fake.batches.batches.values()
    assert made["id"] == batch.id
    assert batch.results == [{"type": "errored", "error": {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Input should be greater than or equal to 1"}}}]
    for payload in ({"requests": []}, {"requests": [{"custom_id": "a b", "params": user_params("x")}]},
                    {"requests": [{"custom_id": "a", "params": user_params("x")}] * 2}):
        with pytest.raises(UpstreamBadRequestError):
            post(payload)
    assert len(fake.batches.batches) == 1
