"""The `/v1/messages` translation for non-Anthropic models, on the edge cases a live stream rarely shows: empty
chunks, several tool calls, calls without an index, extra choices, a stream with no content, and the request
shapes that cannot be translated."""
from __future__ import annotations

import json

import orjson
import pytest

from providers.errors import InvalidRequestError
from providers.translate.anthropic_inbound import anthropic_message, chat_request, estimate_input_tokens
from providers.translate.anthropic_inbound_stream import AnthropicEvents


def chunk(*, delta: dict | None = None, finish: str | None = None, index: int = 0, usage: dict | None = None,
          choices: bool = True) -> bytes:
    payload: dict = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    payload["choices"] = [{"index": index, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        payload["usage"] = usage
    return orjson.dumps(payload)


def decoded(frames: list[bytes]) -> list[tuple[str, dict]]:
    result = []
    for item in frames:
        for block in item.decode().split("\n\n"):
            if block:
                name, data = block.split("\n")
                result.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return result


def run(chunks: list[bytes]) -> list[tuple[str, dict]]:
    events = AnthropicEvents("group")
    frames = [frame for item in chunks for frame in events.translate(item)]
    return decoded(frames + events.finish())


def call(index, *, call_id: str | None = None, name: str | None = None, arguments: str = "") -> dict:
    piece: dict = {"function": {"arguments": arguments}}
    if index is not None:
        piece["index"] = index
    if call_id:
        piece.update({"id": call_id, "type": "function"})
        piece["function"]["name"] = name
    return piece


def test_empty_chunks_produce_nothing_but_the_one_message_start():
    received = run([chunk(delta={"role": "assistant", "content": ""}), chunk(), chunk(choices=False),
                    chunk(delta={"content": "Hi"}), chunk(delta={}, finish="stop")])
    assert [name for name, _ in received] == ["message_start", "content_block_start", "content_block_delta",
                                              "content_block_stop", "message_delta", "message_stop"]
    assert received[0][1]["message"]["id"] == "msg_abc"


def test_a_stream_with_no_chunks_still_is_a_whole_message():
    received = run([])
    assert received == [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_gatehouse", "type": "message", "role": "assistant", "model": "group", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 0}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_text_then_two_tool_calls_are_three_blocks_with_their_json_deltas_intact():
    received = run([
        chunk(delta={"content": "Checking"}),
        chunk(delta={"tool_calls": [call(0, call_id="call_1", name="weather")]}),
        chunk(delta={"tool_calls": [call(0, arguments='{"ci')]}),
        chunk(delta={"tool_calls": [call(0, arguments='ty": "Oslo"}')]}),
        chunk(delta={"tool_calls": [call(1, call_id="call_2", name="time", arguments="{}")]}),
        chunk(finish="tool_calls"),
        chunk(choices=False, usage={"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                                    "prompt_tokens_details": {"cached_tokens": 10}}),
    ])
    assert [(name, payload.get("index")) for name, payload in received] == [
        ("message_start", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2), ("content_block_delta", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None),
    ]
    assert received[4][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}
    assert [received[5][1]["delta"], received[6][1]["delta"]] == [
        {"type": "input_json_delta", "partial_json": '{"ci'},
        {"type": "input_json_delta", "partial_json": 'ty": "Oslo"}'}]
    assert received[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                               "usage": {"input_tokens": 20, "output_tokens": 9, "cache_creation_input_tokens": 0,
                                         "cache_read_input_tokens": 10}}


def test_tool_calls_without_an_index_are_told_apart_by_their_ids():
    received = run([chunk(delta={"tool_calls": [call(None, call_id="a", name="one", arguments='{"x":')]}),
                    chunk(delta={"tool_calls": [call(None, arguments="1}")]}),
                    chunk(delta={"tool_calls": [call(None, call_id="b", name="two", arguments="{}")]})])
    starts = [payload["content_block"]["id"] for name, payload in received if name == "content_block_start"]
    deltas = [(payload["index"], payload["delta"]["partial_json"]) for name, payload in received
              if name == "content_block_delta"]
    assert starts == ["a", "b"]
    assert deltas == [(0, '{"x":'), (0, "1}"), (1, "{}")]


def test_choices_beyond_the_first_are_left_out():
    received = run([chunk(delta={"content": "first"}), chunk(delta={"content": "second"}, index=1)])
    texts = [payload["delta"]["text"] for name, payload in received if name == "content_block_delta"]
    assert texts == ["first"]


def test_a_length_finish_is_max_tokens_and_content_filter_is_a_refusal():
    assert run([chunk(finish="length")])[-2][1]["delta"]["stop_reason"] == "max_tokens"
    message = anthropic_message({"id": "chatcmpl-1", "choices": [{"message": {"content": None},
                                                                  "finish_reason": "content_filter"}]}, "g")
    assert (message["content"], message["stop_reason"]) == ([], "refusal")


def test_tool_arguments_that_are_not_an_object_become_an_empty_input():
    message = anthropic_message({"id": "x", "choices": [{"message": {"tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": "not json"}}]}, "finish_reason": "tool_calls"}]}, "g")
    assert message["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]


@pytest.mark.parametrize(("content", "message"), [
    ([{"type": "search_result", "source": "s"}],
     "messages[0].content[0]: content blocks of type 'search_result' cannot be sent to a model that is not "
     "Anthropic's."),
    ([{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}],
     "messages[0].content[0]: only base64 and text documents can be sent to a model that is not Anthropic's."),
    ([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}],
     "messages[0].content[0].content: content blocks of type 'image' inside a tool_result cannot be sent to a "
     "model that is not Anthropic's."),
])
def test_blocks_that_cannot_be_translated_are_a_clear_400(content, message):
    with pytest.raises(InvalidRequestError) as raised:
        chat_request({"model": "g", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})
    assert raised.value.message == message
    assert raised.value.status_code == 400


def test_thinking_blocks_are_left_out_and_text_documents_become_text():
    request = chat_request({"model": "g", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                    "data": "Notes"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                          {"type": "text", "text": "Done."}]},
    ]})
    assert request["messages"] == [{"role": "user", "content": "Notes"},
                                   {"role": "assistant", "content": "Done."}]


def test_the_estimate_counts_text_tools_media_and_messages():
    body = {"system": [{"type": "text", "text": "abcd"}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "12345678"},
                                     {"type": "image", "source": {"type": "base64", "data": "x"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "fn", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
    ]}
    # 4 + 8 + (2 + len('{"a":1}') = 9) + 2 = 23 characters -> 6 tokens; one image; three messages.
    assert estimate_input_tokens(body) == 6 + 1600 + 9
