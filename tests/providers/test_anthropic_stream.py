"""The Anthropic adapter's streamed chat: Anthropic's event sequence in, OpenAI chunks out.

The fake streams the real event sequence, one frame per write; the tests assert every chunk the
adapter yields, in order, and what reached the fake.
"""
from __future__ import annotations

import pytest

from providers.anthropic import AnthropicProvider
from providers.errors import (
    ContextWindowExceededError,
    UpstreamConnectionError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.http import Deadline
from providers.registry import adapter_for
from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block
from tests.providers.helpers import parsed_chunks, target_for

MODEL = "claude-haiku-4-5-20251001"


@pytest.fixture
def fake(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def anthropic() -> AnthropicProvider:
    return adapter_for("anthropic")


def target(fake: FakeAnthropic):
    return target_for(None, provider="anthropic", model=MODEL, api_base=fake.url)


def body(**fields) -> dict:
    return {"model": "claude-group", "messages": [{"role": "user", "content": "Hi"}], "stream": True, **fields}


def expected(message_id: str, created: int, deltas: list[tuple[dict, str | None]]) -> list[dict]:
    return [{"id": message_id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            for delta, finish in deltas]


def test_text_stream_becomes_openai_chunks_with_a_final_usage_chunk(fake, anthropic, deadline):
    fake.reply_with(text_block("Hello there, friend."), usage={"input_tokens": 9, "cache_read_input_tokens": 3,
                                                               "output_tokens": 4})
    stream = anthropic.chat_stream(target(fake), body(stream_options={"include_usage": True}), deadline, 5)
    chunks = parsed_chunks(stream)

    sent = fake.requests[0].body
    assert sent == {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                    "max_tokens": 4096, "stream": True}
    message_id, created = chunks[0]["id"], chunks[0]["created"]
    assert message_id == f"msg_fake_{fake.message_counter:04d}"
    usage_chunk = {"id": message_id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                   "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16,
                                            "prompt_tokens_details": {"cached_tokens": 3}}}
    assert chunks == [*expected(message_id, created, [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None), ({"content": " there,"}, None), ({"content": " friend."}, None),
        ({}, "stop"),
    ]), usage_chunk]


def test_no_usage_chunk_unless_the_client_asked(fake, anthropic, deadline):
    fake.reply_with(text_block("Hi"), stop_reason="max_tokens")
    chunks = parsed_chunks(anthropic.chat_stream(target(fake), body(), deadline, 5))
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [{"role": "assistant", "content": ""},
                                                                  {"content": "Hi"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in chunk for chunk in chunks)


def test_tool_calls_stream_with_stable_indexes_after_a_text_block(fake, anthropic, deadline):
    """The first tool_use block is tool call 0 even though it is Anthropic's block 1; every argument delta
    keeps its call's index; the empty opening `partial_json` is not sent."""
    fake.json_piece = 6
    fake.reply_with(text_block("Two calls."), tool_use_block("toolu_a", "get_weather", {"city": "Paris"}),
                    tool_use_block("toolu_b", "get_time", {"zone": "CET"}), stop_reason="tool_use")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    chunks = parsed_chunks(anthropic.chat_stream(target(fake), body(tools=[tool]), deadline, 5))
    message_id, created = chunks[0]["id"], chunks[0]["created"]

    def opening(index, call_id, name):
        return {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                "function": {"name": name, "arguments": ""}}]}

    def arguments(index, piece):
        return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}

    assert chunks == expected(message_id, created, [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Two"}, None), ({"content": " calls."}, None),
        (opening(0, "toolu_a", "get_weather"), None),
        (arguments(0, '{"city'), None), (arguments(0, '": "Pa'), None), (arguments(0, 'ris"}'), None),
        (opening(1, "toolu_b", "get_time"), None),
        (arguments(1, '{"zone'), None), (arguments(1, '": "CE'), None), (arguments(1, 'T"}'), None),
        ({}, "tool_calls"),
    ])
    joined = {0: "", 1: ""}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            joined[call["index"]] += call["function"]["arguments"]
    assert joined == {0: '{"city": "Paris"}', 1: '{"zone": "CET"}'}


def test_json_schema_answer_streams_as_content(fake, anthropic, deadline):
    fake.json_piece = 5
    fake.reply_with(tool_use_block("toolu_j", "json_tool_call", {"n": 1}), stop_reason="tool_use")
    response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    chunks = parsed_chunks(anthropic.chat_stream(target(fake), body(response_format=response_format), deadline, 5))
    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ({"role": "assistant", "content": ""}, None), ({"content": '{"n":'}, None), ({"content": " 1}"}, None),
        ({}, "stop")]


def test_mid_stream_error_event_is_raised_from_the_iterator_after_the_chunks_before_it(fake, anthropic,
                                                                                      deadline):
    fake.fail_next(kind="stream_error", after_events=4, error_type="overloaded_error", message="Overloaded")
    fake.reply_with(text_block("one two three four"))
    stream = anthropic.chat_stream(target(fake), body(), deadline, 5)
    received = []
    with pytest.raises(UpstreamServerError) as raised:
        for chunk in stream.chunks:
            received.append(chunk)
    stream.close()
    # message_start, content_block_start, ping, the first text delta; then the error event.
    assert len(received) == 2
    assert (raised.value.status_code, raised.value.message, raised.value.retryable) == (503, "Overloaded", True)


@pytest.mark.parametrize(("error_type", "message", "error_class", "status"), [
    ("rate_limit_error", "Slow down", UpstreamRateLimitError, 429),
    ("api_error", "Internal server error", UpstreamServerError, 502),
    ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", ContextWindowExceededError, 400),
])
def test_an_error_event_first_is_raised_before_any_chunk(fake, anthropic, deadline, error_type, message,
                                                         error_class, status):
    """An error as the first event fails the stream's first chunk: the relay routes it like an HTTP error."""
    fake.fail_next(kind="stream_error", after_events=0, error_type=error_type, message=message)
    stream = anthropic.chat_stream(target(fake), body(), deadline, 5)
    with pytest.raises(error_class) as raised:
        next(stream.chunks)
    stream.close()
    assert (type(raised.value), raised.value.status_code, raised.value.message) == (error_class, status, message)


def test_stream_cut_before_message_stop_raises_a_connection_error(fake, anthropic, deadline):
    fake.fail_next(kind="stream_break", after_events=5)
    stream = anthropic.chat_stream(target(fake), body(), deadline, 5)
    with pytest.raises(UpstreamConnectionError, match="ended before it was complete"):
        list(stream.chunks)
    stream.close()


def test_stream_waits_no_longer_than_the_first_chunk_timeout(fake, anthropic):
    fake.fail_next(kind="hang", seconds=2)
    with pytest.raises(UpstreamTimeoutError):
        anthropic.chat_stream(target(fake), body(), Deadline.after(10), first_chunk_timeout=0.3)
