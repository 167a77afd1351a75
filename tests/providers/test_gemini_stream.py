"""The Gemini adapter's streams: `streamGenerateContent?alt=sse` events translated one by one into OpenAI chunks."""
from __future__ import annotations

import re

import orjson
import pytest

from providers.errors import (
    ContentPolicyViolationError,
    UpstreamConnectionError,
    UpstreamRateLimitError,
    UpstreamServerError,
)
from providers.registry import adapter_for
from tests.fakes.gemini_server import GEMINI_KEY, USAGE, FakeGoogle, google_error
from tests.providers.helpers import drain, only_request, parsed_chunks, target_for, transport_headers

MODEL = "gemini-2.0-flash"
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")
PLAIN = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}


@pytest.fixture
def gemini():
    return adapter_for("gemini")


def gemini_target(fake: FakeGoogle):
    return target_for(None, provider="gemini", model=MODEL, api_key=GEMINI_KEY, api_base=fake.url)


def event(parts: list[dict] | None = None, finish: str | None = None, usage: dict | None = None,
          index: int = 0) -> dict:
    candidate: dict = {"index": index}
    if parts is not None:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish:
        candidate["finishReason"] = finish
    result = {"candidates": [candidate], "modelVersion": MODEL, "responseId": "stream-1"}
    if usage:
        result["usageMetadata"] = usage
    return result


def expected(choices: list[dict], created: int, **extra) -> dict:
    return {"id": "chatcmpl-fake-response-1", "object": "chat.completion.chunk", "created": created, "model": MODEL,
            "choices": choices, **extra}


def choice(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}


def test_text_stream_becomes_openai_chunks_with_a_final_usage_chunk(google, gemini, deadline):
    body = {**PLAIN, "stream_options": {"include_usage": True}}
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), body, deadline, None))

    request = only_request(google)
    assert (request.path, request.query) == (f"/v1beta/models/{MODEL}:streamGenerateContent", {"alt": ["sse"]})
    assert request.headers == {**transport_headers(google, request), "content-type": "application/json",
                               "x-goog-api-key": GEMINI_KEY}
    assert request.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    created = chunks[0]["created"]
    assert chunks == [
        expected([choice({"role": "assistant", "content": "Hello fro"})], created),
        expected([choice({"content": "m the fak"})], created),
        expected([choice({"content": "e Gemini."}, "stop")], created),
        expected([], created, usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}),
    ]


def test_without_include_usage_no_usage_chunk_is_sent(google, gemini, deadline):
    google.stream_pieces = 1
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), PLAIN, deadline, None))
    assert chunks == [expected([choice({"role": "assistant", "content": "Hello from the fake Gemini."}, "stop")],
                               chunks[0]["created"])]


def test_streamed_tool_calls_arrive_whole_with_stable_indexes(google, gemini, deadline):
    """Gemini sends each function call whole; indexes keep counting across events and the finish is tool_calls."""
    google.script([
        event([{"text": "Checking both."}]),
        event([{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
               {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]),
        event([{"functionCall": {"name": "time", "args": {}}}], finish="STOP", usage=USAGE),
    ])
    body = {**PLAIN, "tools": [{"type": "function", "function": {"name": "weather"}},
                               {"type": "function", "function": {"name": "time"}}],
            "stream_options": {"include_usage": True}}
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), body, deadline, None))

    assert only_request(google).body["tools"] == [{"functionDeclarations": [{"name": "weather"}, {"name": "time"}]}]
    created = chunks[0]["created"]
    calls = [call for chunk in chunks[1:3] for call in chunk["choices"][0]["delta"]["tool_calls"]]
    assert all(CALL_ID.match(call["id"]) for call in calls)
    assert len({call["id"] for call in calls}) == 3

    def tool_call(index: int, name: str, arguments: str) -> dict:
        return {"index": index, "id": calls[index]["id"], "type": "function",
                "function": {"name": name, "arguments": arguments}}

    stream_id = {"id": "chatcmpl-stream-1"}
    assert chunks == [
        {**expected([choice({"role": "assistant", "content": "Checking both."})], created), **stream_id},
        {**expected([choice({"tool_calls": [tool_call(0, "weather", '{"city":"Paris"}'),
                                            tool_call(1, "weather", '{"city":"Rome"}')]})], created), **stream_id},
        {**expected([choice({"tool_calls": [tool_call(2, "time", "{}")]}, "tool_calls")], created), **stream_id},
        {**expected([], created, usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}),
         **stream_id},
    ]


def test_events_without_anything_for_the_client_are_skipped(google, gemini, deadline):
    google.script([event([{"text": "A"}]), {"usageMetadata": {"promptTokenCount": 3}, "modelVersion": MODEL},
                   event([], finish="STOP", usage=USAGE)])
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), PLAIN, deadline, None))
    assert [c["choices"] for c in chunks] == [[choice({"role": "assistant", "content": "A"})],
                                              [choice({}, "stop")]]


def test_safety_stop_mid_stream_is_a_content_filter_finish(google, gemini, deadline):
    google.script([event([{"text": "Once upon"}]), event(None, finish="SAFETY", usage=USAGE)])
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), PLAIN, deadline, None))
    assert chunks[-1]["choices"] == [choice({}, "content_filter")]


def test_a_blocked_prompt_fails_the_stream_before_its_first_chunk(google, gemini, deadline):
    """The relay reads the first chunk inside the routed attempt, so the client gets a real 400."""
    google.script([{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": USAGE}])
    stream = gemini.chat_stream(gemini_target(google), PLAIN, deadline, None)
    with pytest.raises(ContentPolicyViolationError):
        next(stream.chunks)
    stream.close()


def test_an_error_object_mid_stream_is_raised_after_the_chunks_before_it(google, gemini, deadline):
    google.fail_next(kind="stream_error", after_events=1,
                     body=google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded mid-stream."))
    stream = gemini.chat_stream(gemini_target(google), PLAIN, deadline, None)
    first = orjson.loads(next(stream.chunks))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hello fro"}
    with pytest.raises(UpstreamRateLimitError) as caught:
        drain(stream)
    assert caught.value.message == "Quota exceeded mid-stream."


def test_a_stream_that_closes_without_a_finish_reason_was_cut_off(google, gemini, deadline):
    google.fail_next(kind="no_finish")
    stream = gemini.chat_stream(gemini_target(google), PLAIN, deadline, None)
    with pytest.raises(UpstreamConnectionError):
        drain(stream)


def test_a_broken_connection_mid_stream_is_a_connection_error(google, gemini, deadline):
    google.fail_next(kind="stream_break", after_events=1)
    stream = gemini.chat_stream(gemini_target(google), PLAIN, deadline, None)
    with pytest.raises(UpstreamConnectionError):
        drain(stream)


def test_an_error_status_is_raised_by_the_call_itself(google, gemini, deadline):
    google.fail_next(status=503, body=google_error(503, "UNAVAILABLE", "The model is overloaded."))
    with pytest.raises(UpstreamServerError) as caught:
        gemini.chat_stream(gemini_target(google), PLAIN, deadline, None)
    assert (caught.value.status_code, caught.value.message, caught.value.retryable) == (
        503, "The model is overloaded.", True)


def test_two_candidates_stream_side_by_side(google, gemini, deadline):
    google.script([
        {"candidates": [{"index": 0, "content": {"parts": [{"text": "A"}], "role": "model"}},
                        {"index": 1, "content": {"parts": [{"text": "B"}], "role": "model"}}]},
        {"candidates": [{"index": 0, "finishReason": "STOP"}, {"index": 1, "finishReason": "MAX_TOKENS"}],
         "usageMetadata": USAGE},
    ])
    chunks = parsed_chunks(gemini.chat_stream(gemini_target(google), {**PLAIN, "n": 2}, deadline, None))
    assert [c["choices"] for c in chunks] == [
        [choice({"role": "assistant", "content": "A"}), choice({"role": "assistant", "content": "B"}, index=1)],
        [choice({}, "stop"), choice({}, "length", index=1)],
    ]
