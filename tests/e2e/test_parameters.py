"""Chat parameters the gateway must honour or pass through: tools, streamed usage, n, response_format,
unknown parameters, and `metadata` (recorded, never forwarded)."""
from __future__ import annotations

import json

import jsonschema
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.e2e.helpers import only_request

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "What is the weather and the time in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "boolean"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"offset_hours": {"type": "integer"}}}}}


def _reassembled_tool_calls(chunks: list[ChatCompletionChunk]) -> dict[int, dict]:
    """Tool calls rebuilt from streamed deltas, as a client must: by index, arguments concatenated."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "type": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["type"] = delta.type or call["type"]
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return calls


def test_parallel_tool_calls_on_the_mock(client):
    completion = client.chat.completions.create(model="mock-chat", messages=USER, tools=[WEATHER, TIME],
                                                tool_choice="auto", parallel_tool_calls=True)

    assert type(completion) is ChatCompletion
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [(call.type, call.function.name) for call in calls] == [("function", "get_weather"),
                                                                    ("function", "get_time")]
    assert [json.loads(call.function.arguments) for call in calls] == [{"city": "sample", "celsius": True},
                                                                       {"offset_hours": 1}]
    assert len({call.id for call in calls}) == 2
    assert all(call.id.startswith("call_") for call in calls)


def test_named_tool_choice_on_the_mock_calls_only_that_tool(client):
    completion = client.chat.completions.create(
        model="mock-chat", messages=USER, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}})

    calls = completion.choices[0].message.tool_calls
    assert [(call.function.name, call.function.arguments) for call in calls] == [("get_time", '{"offset_hours":1}')]


def test_tool_result_turn_on_the_mock_answers_in_text(client):
    messages = [*USER,
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}]

    completion = client.chat.completions.create(model="mock-chat", messages=messages, tools=[WEATHER])

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "The tool returned: sunny, 21C"


def test_streamed_parallel_tool_calls_on_the_mock_reassemble(client):
    chunks = list(client.chat.completions.create(model="mock-chat", messages=USER, tools=[WEATHER, TIME],
                                                 stream=True))

    calls = _reassembled_tool_calls(chunks)
    assert sorted(calls) == [0, 1]
    assert [(calls[i]["type"], calls[i]["name"], json.loads(calls[i]["arguments"])) for i in (0, 1)] == [
        ("function", "get_weather", {"city": "sample", "celsius": True}),
        ("function", "get_time", {"offset_hours": 1})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_streamed_tool_call_from_an_upstream_reassembles_and_the_tools_reach_it(client, fake_a):
    chunks = list(client.chat.completions.create(model="gpt-fake", messages=USER, tools=[WEATHER, TIME],
                                                 tool_choice="required", parallel_tool_calls=False, stream=True))

    assert all(type(chunk) is ChatCompletionChunk for chunk in chunks)
    # The name arrives in one delta and the arguments in another: the client joins them.
    argument_deltas = [delta.function.arguments for chunk in chunks for choice in chunk.choices
                       for delta in choice.delta.tool_calls or [] if delta.function and delta.function.arguments]
    assert argument_deltas == ['{"city": "Paris"}']
    assert _reassembled_tool_calls(chunks) == {0: {"id": "call_fake_1", "type": "function", "name": "get_weather",
                                                   "arguments": '{"city": "Paris"}'}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert only_request(fake_a).body == {"model": "gpt-4o-mini", "messages": USER, "tools": [WEATHER, TIME],
                                         "tool_choice": "required", "parallel_tool_calls": False, "stream": True,
                                         "stream_options": {"include_usage": True}}


def test_tool_call_from_an_upstream_plain(client, fake_a):
    completion = client.chat.completions.create(model="gpt-fake", messages=USER, tools=[WEATHER])

    call = completion.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("call_fake_1", "get_weather",
                                                                      '{"city": "Paris"}')
    assert only_request(fake_a).body["tools"] == [WEATHER]


@pytest.mark.parametrize("group", ["mock-stream", "gpt-fake"])
def test_include_usage_yields_a_final_usage_chunk(client, fake_a, group):
    chunks = list(client.chat.completions.create(model=group, messages=[{"role": "user", "content": "count me"}],
                                                 stream=True, stream_options={"include_usage": True}))

    *content, last = chunks
    assert last.choices == []
    assert all(chunk.usage is None for chunk in content)
    assert content[-1].choices[0].finish_reason == "stop"
    if group == "gpt-fake":
        assert last.usage.model_dump(exclude_none=True) == {"prompt_tokens": 11, "completion_tokens": 7,
                                                            "total_tokens": 18}
        assert only_request(fake_a).body["stream_options"] == {"include_usage": True}
    else:
        # "count me" is 2 tokens; "This is a mock response to: count me" is 8.
        assert last.usage.model_dump(exclude_none=True) == {"prompt_tokens": 2, "completion_tokens": 8,
                                                            "total_tokens": 10}


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="mock-stream", messages=USER, stream=True))

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)


def test_n_two_returns_two_choices(client):
    completion = client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "twice"}], n=2)

    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "This is a mock response to: twice", "stop"), (1, "This is a mock response to: twice", "stop")]


def test_n_two_streamed_keeps_the_choices_apart(client):
    chunks = list(client.chat.completions.create(model="mock-stream", messages=[{"role": "user", "content": "twice"}],
                                                 n=2, stream=True))

    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "This is a mock response to: twice", 1: "This is a mock response to: twice"}


def test_response_format_json_schema_on_the_mock_matches_the_schema(client):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags", "address"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                             "tags": {"type": "array", "items": {"type": "string"}},
                             "address": {"type": "object", "properties": {"city": {"type": "string"}},
                                         "required": ["city"], "additionalProperties": False}}}

    completion = client.chat.completions.create(
        model="mock-chat", messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})

    content = json.loads(completion.choices[0].message.content)
    jsonschema.validate(content, schema)
    assert content == {"name": "sample", "age": 1, "tags": ["sample"], "address": {"city": "sample"}}


def test_unknown_parameters_reach_the_upstream_untouched_but_metadata_does_not(client, fake_a):
    completion = client.chat.completions.create(
        model="gpt-fake", messages=USER, seed=7,
        extra_body={"some_new_param": 1, "nested_new_param": {"a": [1, 2]}, "metadata": {"team": "e2e"}})

    assert completion.choices[0].message.content == "Hello from the fake provider."
    received = only_request(fake_a)
    assert received.body == {"model": "gpt-4o-mini", "messages": USER, "seed": 7, "some_new_param": 1,
                             "nested_new_param": {"a": [1, 2]}}
    assert b"metadata" not in received.raw
