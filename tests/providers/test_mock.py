"""The built-in `mock` provider: deterministic answers derived from the request, with no network at all.

The demo config, the gateway-executed batch tests and the e2e suite all rely on these exact shapes, so
they are pinned here: quoted replies, tool calls that fill the declared schema, stream pacing, unit
embedding vectors that survive base64, and moderation categories.
"""
from __future__ import annotations

import itertools
import math
import re
import time

import orjson
import pytest

from providers.base import UpstreamResponse
from providers.errors import InvalidRequestError
from providers.mock import MODERATION_CATEGORIES, MockProvider
from providers.registry import adapter_for
from providers.translate.embeddings import base64_to_vector
from tests.providers.helpers import drain, parsed_chunks, target_for

MODEL = "mock-gpt"
HI = {"role": "user", "content": "Hi"}
HI_REPLY = "This is a mock response to: Hi"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object",
                                       "properties": {"timezone": {"type": "string", "enum": ["UTC", "CET"]}}}}}
WEATHER_ARGUMENTS = '{"city":"sample","days":1}'
TIME_ARGUMENTS = '{"timezone":"UTC"}'


@pytest.fixture
def mock() -> MockProvider:
    return adapter_for("mock")


def mock_target(**params):
    return target_for(None, provider="mock", model=MODEL, api_key=None, params=params)


def chat(mock: MockProvider, body: dict, deadline, **params) -> dict:
    result = mock.chat(mock_target(**params), body, deadline)
    assert isinstance(result, UpstreamResponse)
    assert orjson.loads(result.body) == result.parsed
    return result.parsed


def only_message(completion: dict) -> tuple[dict, str]:
    (choice,) = completion["choices"]
    return choice["message"], choice["finish_reason"]


def assert_tool_call(call: dict, name: str, arguments: str) -> None:
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
    assert call == {"id": call["id"], "type": "function", "function": {"name": name, "arguments": arguments}}


# --- chat ------------------------------------------------------------------------------------------

def test_chat_quotes_the_last_user_message_with_exact_usage(mock, deadline):
    body = {"model": "g", "messages": [{"role": "system", "content": "Be kind."},
                                       {"role": "user", "content": "Earlier question"},
                                       {"role": "assistant", "content": "Earlier answer"},
                                       {"role": "user", "content": "What is the capital of France?"}]}
    completion = chat(mock, body, deadline)

    assert re.fullmatch(r"chatcmpl-mock-[0-9a-f]{24}", completion["id"])
    assert abs(completion["created"] - time.time()) < 5
    assert completion == {
        "id": completion["id"], "object": "chat.completion", "created": completion["created"], "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None,
                                             "content": "This is a mock response to: What is the capital of France?"},
                     "finish_reason": "stop", "logprobs": None}],
        # prompt: the words of every message (2 + 2 + 2 + 6); completion: the reply's 12 words
        "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24},
        "system_fingerprint": "fp_gatehouse_mock",
    }


def test_chat_is_deterministic_apart_from_id_and_timestamp(mock, deadline):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Same "},
                                                      {"type": "image_url", "image_url": {"url": "u"}},
                                                      {"type": "text", "text": "question"}]}]}
    first, second = chat(mock, body, deadline), chat(mock, body, deadline)
    assert first["id"] != second["id"]
    for completion in (first, second):
        completion.pop("id")
        completion.pop("created")
    assert first == second
    assert first["choices"][0]["message"]["content"] == "This is a mock response to: Same question"


def test_the_quoted_message_is_cut_at_200_characters(mock, deadline):
    message, _ = only_message(chat(mock, {"messages": [{"role": "user", "content": "x" * 500}]}, deadline))
    assert message["content"] == "This is a mock response to: " + "x" * 200


def test_mock_response_replaces_the_reply_text(mock, deadline):
    message, finish = only_message(chat(mock, {"messages": [HI]}, deadline, mock_response="Fixed answer."))
    assert (message, finish) == ({"role": "assistant", "content": "Fixed answer.", "refusal": None}, "stop")


def test_n_returns_that_many_identical_choices_counted_in_usage(mock, deadline):
    completion = chat(mock, {"messages": [HI], "n": 3}, deadline)
    assert completion["choices"] == [
        {"index": index, "message": {"role": "assistant", "content": HI_REPLY, "refusal": None},
         "finish_reason": "stop", "logprobs": None} for index in range(3)]
    assert completion["usage"] == {"prompt_tokens": 1, "completion_tokens": 21, "total_tokens": 22}


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
def test_a_token_limit_shorter_than_the_reply_cuts_it_and_finishes_with_length(mock, deadline, limit_field):
    message, finish = only_message(chat(mock, {"messages": [HI], limit_field: 3}, deadline))
    assert (message["content"], finish) == ("This is a", "length")


def test_a_token_limit_longer_than_the_reply_finishes_with_stop(mock, deadline):
    message, finish = only_message(chat(mock, {"messages": [HI], "max_tokens": 7}, deadline))
    assert (message["content"], finish) == (HI_REPLY, "stop")


# --- tools -----------------------------------------------------------------------------------------

def test_auto_tool_choice_calls_every_declared_tool_with_arguments_filling_its_schema(mock, deadline):
    completion = chat(mock, {"messages": [HI], "tools": [WEATHER_TOOL, TIME_TOOL]}, deadline)
    message, finish = only_message(completion)

    assert finish == "tool_calls"
    assert (message["role"], message["content"], message["refusal"]) == ("assistant", None, None)
    weather, clock = message["tool_calls"]
    assert_tool_call(weather, "get_weather", WEATHER_ARGUMENTS)
    assert_tool_call(clock, "get_time", TIME_ARGUMENTS)
    assert weather["id"] != clock["id"]
    assert completion["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_required_tool_choice_behaves_like_auto(mock, deadline):
    message, _ = only_message(chat(mock, {"messages": [HI], "tools": [WEATHER_TOOL], "tool_choice": "required"},
                                   deadline))
    assert [call["function"]["name"] for call in message["tool_calls"]] == ["get_weather"]


def test_parallel_tool_calls_false_makes_a_single_call(mock, deadline):
    body = {"messages": [HI], "tools": [WEATHER_TOOL, TIME_TOOL], "parallel_tool_calls": False}
    message, finish = only_message(chat(mock, body, deadline))
    (call,) = message["tool_calls"]
    assert_tool_call(call, "get_weather", WEATHER_ARGUMENTS)
    assert finish == "tool_calls"


def test_a_named_tool_choice_calls_exactly_that_tool(mock, deadline):
    body = {"messages": [HI], "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    message, _ = only_message(chat(mock, body, deadline))
    (call,) = message["tool_calls"]
    assert_tool_call(call, "get_time", TIME_ARGUMENTS)


def test_tool_choice_none_answers_in_text(mock, deadline):
    message, finish = only_message(chat(mock, {"messages": [HI], "tools": [WEATHER_TOOL], "tool_choice": "none"},
                                        deadline))
    assert (message, finish) == ({"role": "assistant", "content": HI_REPLY, "refusal": None}, "stop")


def test_after_a_tool_result_the_model_answers_in_text_quoting_it(mock, deadline):
    messages = [HI, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'}]
    message, finish = only_message(chat(mock, {"messages": messages, "tools": [WEATHER_TOOL]}, deadline))
    assert (message, finish) == ({"role": "assistant", "content": 'The tool returned: {"temperature": 21}',
                                  "refusal": None}, "stop")


def test_tool_arguments_fill_every_kind_of_schema_field(mock, deadline):
    schema = {"type": "object", "properties": {
        "text": {"type": "string"}, "count": {"type": "integer"}, "ratio": {"type": "number"},
        "enabled": {"type": "boolean"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "tags": {"type": "array", "items": {"type": "string"}}, "maybe": {"type": ["null", "integer"]},
        "nested": {"properties": {"inner": {"type": "boolean"}}}, "anything": {}, "nothing": {"type": "null"}}}
    tool = {"type": "function", "function": {"name": "fill", "parameters": schema}}
    message, _ = only_message(chat(mock, {"messages": [HI], "tools": [tool]}, deadline))
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "text": "sample", "count": 1, "ratio": 1.5, "enabled": True, "unit": "celsius", "tags": ["sample"],
        "maybe": 1, "nested": {"inner": True}, "anything": "sample", "nothing": None}


# --- response_format -------------------------------------------------------------------------------

def test_json_object_response_format_wraps_the_reply_in_a_json_object(mock, deadline):
    message, _ = only_message(chat(mock, {"messages": [HI], "response_format": {"type": "json_object"}}, deadline))
    assert message["content"] == '{"reply":"This is a mock response to: Hi"}'


def test_json_schema_response_format_answers_a_sample_of_the_schema(mock, deadline):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                         "emails": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "age", "emails"], "additionalProperties": False}}}
    message, finish = only_message(chat(mock, {"messages": [HI], "response_format": response_format}, deadline))
    assert orjson.loads(message["content"]) == {"name": "sample", "age": 1, "emails": ["sample"]}
    assert finish == "stop"


# --- chat streaming --------------------------------------------------------------------------------

def stream_chat(mock, body, deadline, **params) -> list[dict]:
    return parsed_chunks(mock.chat_stream(mock_target(**params), {**body, "stream": True}, deadline, None))


def chunk_base(chunks: list[dict]) -> dict:
    first = chunks[0]
    base = {"id": first["id"], "object": "chat.completion.chunk", "created": first["created"], "model": MODEL,
            "system_fingerprint": "fp_gatehouse_mock"}
    for chunk in chunks:
        assert {key: chunk[key] for key in base} == base
    return base


def test_a_stream_sends_the_role_first_then_the_reply_cut_into_the_requested_chunk_count(mock, deadline):
    chunks = stream_chat(mock, {"messages": [HI]}, deadline, mock_chunk_count=4)
    base = chunk_base(chunks)
    assert re.fullmatch(r"chatcmpl-mock-[0-9a-f]{24}", base["id"])

    def choice(delta, finish_reason=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    assert chunks == [choice({"role": "assistant", "content": ""}),
                      choice({"content": "This is "}), choice({"content": "a mock r"}),
                      choice({"content": "esponse"}), choice({"content": " to: Hi"}),
                      choice({}, "stop")]


def test_the_chunk_count_is_exact_even_when_the_text_does_not_divide_evenly(mock, deadline):
    """51 characters in 20 chunks: eleven of 3 and nine of 2, never fewer chunks than asked for."""
    message = {"role": "user", "content": "x" * 23}  # the reply quotes it: 28 + 23 = 51 characters
    chunks = stream_chat(mock, {"messages": [message]}, deadline, mock_chunk_count=20)
    pieces = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-1]]
    assert [len(piece) for piece in pieces] == [3] * 11 + [2] * 9
    assert "".join(pieces) == "This is a mock response to: " + "x" * 23


def test_a_chunk_count_above_the_text_length_gives_one_character_per_chunk(mock, deadline):
    chunks = stream_chat(mock, {"messages": [HI]}, deadline, mock_chunk_count=500)
    pieces = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-1]]
    assert pieces == list("This is a mock response to: Hi")


def test_without_a_chunk_count_the_reply_streams_word_by_word(mock, deadline):
    chunks = stream_chat(mock, {"messages": [HI]}, deadline)
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "This"}, {"content": " is"}, {"content": " a"},
        {"content": " mock"}, {"content": " response"}, {"content": " to:"}, {"content": " Hi"}, {}]


def test_a_stream_honours_the_chunk_interval(mock, deadline):
    stream = mock.chat_stream(mock_target(mock_chunk_count=3, mock_chunk_interval_ms=60),
                              {"messages": [HI], "stream": True}, deadline, None)
    arrivals = []
    started = time.monotonic()
    for chunk in stream.chunks:
        arrivals.append((time.monotonic() - started, orjson.loads(chunk)["choices"][0]["delta"]))
    stream.close()
    content_times = [at for at, delta in arrivals if "content" in delta and "role" not in delta]
    assert len(content_times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(content_times)]
    assert content_times[0] >= 0.055
    assert all(gap >= 0.055 for gap in gaps), gaps


def test_the_usage_chunk_comes_last_and_only_when_include_usage_is_set(mock, deadline):
    without = stream_chat(mock, {"messages": [HI], "stream_options": {"include_usage": False}}, deadline)
    assert all("usage" not in chunk for chunk in without)

    chunks = stream_chat(mock, {"messages": [HI], "stream_options": {"include_usage": True}}, deadline,
                         mock_chunk_count=2)
    base = chunk_base(chunks)
    assert chunks[-1] == {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 7,
                                                           "total_tokens": 8}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_streamed_tool_calls_open_each_call_then_send_its_arguments_under_a_stable_index(mock, deadline):
    chunks = stream_chat(mock, {"messages": [HI], "tools": [WEATHER_TOOL, TIME_TOOL]}, deadline)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    weather_id, time_id = deltas[1]["tool_calls"][0]["id"], deltas[3]["tool_calls"][0]["id"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", weather_id)
    assert re.fullmatch(r"call_[0-9a-f]{24}", time_id)
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"tool_calls": [{"index": 0, "id": weather_id, "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": WEATHER_ARGUMENTS}}]},
        {"tool_calls": [{"index": 1, "id": time_id, "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": TIME_ARGUMENTS}}]},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None] * 5 + ["tool_calls"]


def test_a_stream_with_n_choices_sends_each_choice_under_its_own_index(mock, deadline):
    chunks = stream_chat(mock, {"messages": [HI], "n": 2}, deadline, mock_chunk_count=1)
    assert [(chunk["choices"][0]["index"], chunk["choices"][0]["delta"], chunk["choices"][0]["finish_reason"])
            for chunk in chunks] == [
        (0, {"role": "assistant", "content": ""}, None), (0, {"content": HI_REPLY}, None), (0, {}, "stop"),
        (1, {"role": "assistant", "content": ""}, None), (1, {"content": HI_REPLY}, None), (1, {}, "stop")]


def test_closing_a_mock_stream_early_stops_it(mock, deadline):
    stream = mock.chat_stream(mock_target(), {"messages": [HI], "stream": True}, deadline, None)
    assert orjson.loads(next(stream.chunks))["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    stream.close()
    assert list(stream.chunks) == []


# --- completions -----------------------------------------------------------------------------------

def test_text_completion_answers_each_prompt_n_times(mock, deadline):
    result = mock.completion(mock_target(), {"prompt": ["Say hi", "Say bye"], "n": 2}, deadline).parsed
    assert re.fullmatch(r"cmpl-mock-[0-9a-f]{24}", result["id"])
    assert result == {
        "id": result["id"], "object": "text_completion", "created": result["created"], "model": MODEL,
        "choices": [{"index": 0, "text": " This is a mock completion of: Say hi", "finish_reason": "stop",
                     "logprobs": None},
                    {"index": 1, "text": " This is a mock completion of: Say hi", "finish_reason": "stop",
                     "logprobs": None},
                    {"index": 2, "text": " This is a mock completion of: Say bye", "finish_reason": "stop",
                     "logprobs": None},
                    {"index": 3, "text": " This is a mock completion of: Say bye", "finish_reason": "stop",
                     "logprobs": None}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 32, "total_tokens": 36},
    }


def test_text_completion_stream_cuts_the_text_and_ends_with_stop_and_optional_usage(mock, deadline):
    stream = mock.completion_stream(mock_target(mock_response="abcdef", mock_chunk_count=2),
                                    {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
                                    deadline, None)
    chunks = [orjson.loads(chunk) for chunk in drain(stream)]
    base = {"id": chunks[0]["id"], "object": "text_completion", "created": chunks[0]["created"], "model": MODEL}
    assert chunks == [
        {**base, "choices": [{"index": 0, "text": "abc", "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "text": "def", "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    ]


def test_a_prompt_of_the_wrong_type_is_a_400_naming_the_prompt(mock, deadline):
    with pytest.raises(InvalidRequestError) as caught:
        mock.completion(mock_target(), {"prompt": 42}, deadline)
    assert (caught.value.status_code, caught.value.type, caught.value.param, caught.value.message) == (
        400, "invalid_request_error", "prompt", "'prompt' must be a string, a list of strings or token arrays.")


# --- embeddings ------------------------------------------------------------------------------------

def embed(mock, body, deadline, **params) -> dict:
    return mock.embedding(mock_target(**params), body, deadline).parsed


def test_embeddings_are_deterministic_unit_vectors_with_the_default_16_dimensions(mock, deadline):
    first = embed(mock, {"input": ["hello", "world"]}, deadline)
    again = embed(mock, {"input": ["hello", "world"]}, deadline)

    assert first == again
    assert [(item["object"], item["index"], len(item["embedding"])) for item in first["data"]] == [
        ("embedding", 0, 16), ("embedding", 1, 16)]
    assert {key: value for key, value in first.items() if key != "data"} == {
        "object": "list", "model": MODEL, "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    hello, world = (item["embedding"] for item in first["data"])
    assert hello != world
    for vector in (hello, world):
        assert math.isclose(math.sqrt(sum(value * value for value in vector)), 1.0, abs_tol=1e-6)


def test_the_vector_for_a_text_never_changes_between_releases(mock, deadline):
    """Stored embeddings made through the mock must stay comparable, so the seed scheme is pinned."""
    (item,) = embed(mock, {"input": "hello", "dimensions": 4}, deadline)["data"]
    assert item["embedding"] == [-0.04099804908037186, -0.8386912941932678, -0.3672870993614197,
                                 0.4000203311443329]


def test_dimensions_come_from_the_request_then_the_deployment_then_the_default(mock, deadline):
    assert len(embed(mock, {"input": "a", "dimensions": 5}, deadline, mock_embedding_dimensions=32)["data"][0][
        "embedding"]) == 5
    assert len(embed(mock, {"input": "a"}, deadline, mock_embedding_dimensions=32)["data"][0]["embedding"]) == 32
    assert len(embed(mock, {"input": "a"}, deadline)["data"][0]["embedding"]) == 16


def test_base64_embeddings_decode_to_exactly_the_float_vector(mock, deadline):
    floats = embed(mock, {"input": ["hello", "world"], "dimensions": 64}, deadline)
    encoded = embed(mock, {"input": ["hello", "world"], "dimensions": 64, "encoding_format": "base64"}, deadline)
    assert all(isinstance(item["embedding"], str) for item in encoded["data"])
    assert [base64_to_vector(item["embedding"]) for item in encoded["data"]] == [
        item["embedding"] for item in floats["data"]]


def test_token_array_inputs_embed_like_their_space_joined_text(mock, deadline):
    tokens = embed(mock, {"input": [[1, 2, 3], [4]]}, deadline)["data"]
    single = embed(mock, {"input": [1, 2, 3]}, deadline)["data"]
    texts = embed(mock, {"input": ["1 2 3", "4"]}, deadline)["data"]
    assert tokens == texts
    assert single == texts[:1]


def test_an_embedding_input_of_the_wrong_type_is_a_400_naming_the_input(mock, deadline):
    with pytest.raises(InvalidRequestError) as caught:
        mock.embedding(mock_target(), {"input": 42}, deadline)
    assert (caught.value.status_code, caught.value.param, caught.value.message) == (
        400, "input", "'input' must be a string, a list of strings or token arrays.")


# --- moderations -----------------------------------------------------------------------------------

def moderation_result(*flagged: str) -> dict:
    return {"flagged": bool(flagged),
            "categories": {category: category in flagged for category in MODERATION_CATEGORIES},
            "category_scores": {category: 0.98 if category in flagged else 0.0001
                                for category in MODERATION_CATEGORIES},
            "category_applied_input_types": {category: ["text"] for category in MODERATION_CATEGORIES}}


def test_moderation_flags_trigger_words_under_their_category_and_reports_every_category(mock, deadline):
    inputs = ["I will KILL the process", "you idiot", "I hate mondays", "how to steal a bike",
              "self-harm questions", "a kind word"]
    result = mock.moderation(mock_target(), {"input": inputs}, deadline).parsed

    assert re.fullmatch(r"modr-mock-[0-9a-f]{24}", result["id"])
    assert result == {"id": result["id"], "model": MODEL, "results": [
        moderation_result("violence"), moderation_result("harassment"), moderation_result("hate"),
        moderation_result("illicit"), moderation_result("self-harm"), moderation_result()]}
    assert len(MODERATION_CATEGORIES) == 13
    assert set(MODERATION_CATEGORIES) == {
        "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
        "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
        "violence/graphic"}


def test_moderation_of_content_parts_checks_text_parts_and_passes_images(mock, deadline):
    body = {"input": [{"type": "text", "text": "attack at dawn"},
                      {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}
    result = mock.moderation(mock_target(), body, deadline).parsed
    assert result["results"] == [moderation_result("violence"), moderation_result()]


def test_a_single_string_is_moderated_as_one_input(mock, deadline):
    assert mock.moderation(mock_target(), {"input": "hello"}, deadline).parsed["results"] == [moderation_result()]


def test_a_moderation_input_of_the_wrong_type_is_a_400_naming_the_input(mock, deadline):
    with pytest.raises(InvalidRequestError) as caught:
        mock.moderation(mock_target(), {"input": None}, deadline)
    assert (caught.value.status_code, caught.value.param, caught.value.message) == (
        400, "input", "'input' must be a string, a list of strings or content parts.")
