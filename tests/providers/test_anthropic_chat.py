"""The Anthropic adapter's plain (non-streamed) chat against a loopback fake of the Messages API.

Each test asserts the exact request the fake received (method, path, headers, JSON body) and the
exact OpenAI-format answer the adapter returned. Nothing of Gatehouse is patched.
"""
from __future__ import annotations

import time

import orjson
import pytest

from providers.anthropic import AnthropicProvider
from providers.errors import InvalidRequestError
from providers.registry import adapter_for, split_model
from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block
from tests.providers.helpers import UPSTREAM_KEY, only_request, target_for, transport_headers

MODEL = "claude-sonnet-4-5-20250929"
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PDF_BASE64 = "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg=="


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


def anthropic_headers(fake: FakeAnthropic, recorded, **extra: str) -> dict[str, str]:
    return {**transport_headers(fake, recorded), "content-type": "application/json",
            "anthropic-version": "2023-06-01", "x-api-key": UPSTREAM_KEY, **extra}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# --- the request -------------------------------------------------------------------------------------

def test_registry_routes_the_anthropic_prefix_to_this_adapter():
    assert split_model("anthropic/claude-sonnet-4-5-20250929") == ("anthropic", "claude-sonnet-4-5-20250929")
    assert isinstance(adapter_for("anthropic"), AnthropicProvider)
    assert adapter_for("anthropic").supports("chat")


def test_plain_chat_translates_the_request_and_the_answer(fake, anthropic, deadline):
    """System to `system`, the key in `x-api-key`, the default version and `max_tokens`, `stop` to
    `stop_sequences`, `user` to `metadata.user_id`; gateway-only fields never leave the gateway."""
    body = {"model": "claude-group", "messages": [{"role": "system", "content": "Be brief."}, user("Hi")],
            "temperature": 0.3, "top_p": 0.8, "stop": "END", "user": "end-user-7",
            "metadata": {"trace": "abc"}, "fallbacks": ["other"], "num_retries": 2, "store": True}
    before = orjson.loads(orjson.dumps(body))
    started = int(time.time())
    result = anthropic.chat(anthropic_target(fake), body, deadline)

    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/messages", {})
    assert recorded.headers == anthropic_headers(fake, recorded)
    assert recorded.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 4096, "stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.8,
        "metadata": {"user_id": "end-user-7"},
    }
    assert body == before  # the router may retry the same body elsewhere
    assert started <= result.parsed["created"] <= int(time.time())
    assert result.parsed == {
        "id": f"msg_fake_{fake.message_counter:04d}", "object": "chat.completion",
        "created": result.parsed["created"], "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake Anthropic.",
                                             "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
    assert orjson.loads(result.body) == result.parsed


def test_consecutive_turns_of_one_role_are_merged_and_several_system_messages_kept_in_order(fake, anthropic,
                                                                                           deadline):
    messages = [
        {"role": "system", "content": "Rule one."},
        user("First."), user("Second."),
        {"role": "developer",
         "content": [{"type": "text", "text": "Rule two.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "Answer."},
        {"role": "assistant", "content": [{"type": "text", "text": "More."}]},
        user(""), user([{"type": "text", "text": "Third."}]),
    ]
    anthropic.chat(anthropic_target(fake), {"messages": messages, "max_completion_tokens": 50}, deadline)
    sent = only_request(fake).body
    assert sent["system"] == [{"type": "text", "text": "Rule one."},
                              {"type": "text", "text": "Rule two.", "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Answer."}, {"type": "text", "text": "More."}]},
        {"role": "user", "content": [{"type": "text", "text": "Third."}]},
    ]
    assert sent["max_tokens"] == 50


def test_images_and_pdfs_become_content_blocks(fake, anthropic, deadline):
    """Data URLs become base64 image or document blocks; an http URL is an image Anthropic fetches itself."""
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_BASE64}", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": PDF_BASE64}},
    ]
    anthropic.chat(anthropic_target(fake), {"messages": [{"role": "user", "content": content}]}, deadline)
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64}}
    assert only_request(fake).body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        pdf, pdf,
    ]}]


@pytest.mark.parametrize(("part", "message"), [
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
     "messages[0].content[0]: content parts of type 'input_audio' cannot be sent to an Anthropic model."),
    ({"type": "image_url", "image_url": {"url": "data:audio/wav;base64,AAAA"}},
     "messages[0].content[0]: Anthropic models do not accept audio/wav data."),
    ({"type": "file", "file": {"filename": "a.pdf"}},
     "messages[0].content[0]: Anthropic models take files as `file.file_data` (base64) or `file.file_id` "
     "(an Anthropic file id)."),
])
def test_parts_anthropic_cannot_take_are_a_clear_400_and_nothing_is_sent(fake, anthropic, deadline, part, message):
    with pytest.raises(InvalidRequestError) as raised:
        anthropic.chat(anthropic_target(fake), {"messages": [{"role": "user", "content": [part]}]}, deadline)
    assert raised.value.status_code == 400
    assert raised.value.envelope() == {"error": {"message": message, "type": "invalid_request_error",
                                                 "param": "messages[0].content[0]", "code": "invalid_value"}}
    assert fake.requests == []


def test_tools_tool_calls_and_tool_results_are_translated_both_ways(fake, anthropic, deadline):
    """Function tools to Anthropic tools, `required` to `any`, assistant `tool_calls` to `tool_use`, `tool`
    messages to `tool_result` blocks in one user turn; the answer's `tool_use` blocks come back as tool_calls."""
    fake.reply_with(text_block("Checking both."), tool_use_block("toolu_01", "get_weather", {"city": "Paris"}),
                    tool_use_block("toolu_02", "get_time", {"zone": "CET"}), stop_reason="tool_use",
                    usage={"input_tokens": 30, "output_tokens": 20})
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}
    clock = {"type": "function", "function": {"name": "get_time"}}
    messages = [
        user("Weather in Rome?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_00", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
            {"id": "toolu_0b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "toolu_00", "content": "Sunny, 24C"},
        {"role": "tool", "tool_call_id": "toolu_0b", "content": [{"type": "text", "text": "14:00"}]},
        user("And Paris?"),
    ]
    result = anthropic.chat(anthropic_target(fake), {"messages": messages, "tools": [weather, clock],
                                                     "tool_choice": "required", "parallel_tool_calls": False}, deadline)
    sent = only_request(fake).body
    assert sent["tools"] == [
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
         "description": "Weather now."},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_00", "name": "get_weather", "input": {"city": "Rome"}},
            {"type": "tool_use", "id": "toolu_0b", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_00", "content": "Sunny, 24C"},
            {"type": "tool_result", "tool_use_id": "toolu_0b", "content": [{"type": "text", "text": "14:00"}]},
            {"type": "text", "text": "And Paris?"}]},
    ]
    assert result.parsed["choices"] == [{"index": 0, "message": {
        "role": "assistant", "content": "Checking both.", "refusal": None,
        "tool_calls": [{"id": "toolu_01", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                       {"id": "toolu_02", "type": "function",
                        "function": {"name": "get_time", "arguments": '{"zone":"CET"}'}}]},
        "finish_reason": "tool_calls", "logprobs": None}]
    assert result.parsed["usage"] == {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_values(fake, anthropic, deadline, choice, expected):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    anthropic.chat(anthropic_target(fake), {"messages": [user("Hi")], "tools": [tool], "tool_choice": choice},
                   deadline)
    assert only_request(fake).body["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent_and_invalid_arguments_are_a_400(fake, anthropic, deadline):
    anthropic.chat(anthropic_target(fake), {"messages": [user("Hi")], "tool_choice": "auto"}, deadline)
    assert "tool_choice" not in only_request(fake).body
    bad = {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
                                                "function": {"name": "f", "arguments": "{not json"}}]}
    with pytest.raises(InvalidRequestError) as raised:
        anthropic.chat(anthropic_target(fake), {"messages": [user("Hi"), bad]}, deadline)
    assert raised.value.param == "messages[1].tool_calls[0].function.arguments"
    assert len(fake.requests) == 1


def test_json_schema_is_a_forced_tool_whose_input_is_returned_as_the_content(fake, anthropic, deadline):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    fake.reply_with(tool_use_block("toolu_9", "json_tool_call", {"name": "Ada"}), stop_reason="tool_use")
    body = {"messages": [user("Who?")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}}
    result = anthropic.chat(anthropic_target(fake), body, deadline)
    sent = only_request(fake).body
    assert sent["tools"] == [{"name": "json_tool_call", "description": "Respond with a JSON value that matches this "
                              "schema.", "input_schema": schema}]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    assert "response_format" not in sent
    assert result.parsed["choices"] == [{"index": 0, "message": {"role": "assistant", "content": '{"name":"Ada"}',
                                                                 "refusal": None},
                                         "finish_reason": "stop", "logprobs": None}]


def test_json_schema_beside_client_tools_lets_the_model_pick_any_tool(fake, anthropic, deadline):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    body = {"messages": [user("Who?")], "tools": [tool], "response_format": {"type": "json_object"}}
    anthropic.chat(anthropic_target(fake), body, deadline)
    sent = only_request(fake).body
    assert [t["name"] for t in sent["tools"]] == ["lookup", "json_tool_call"]
    assert sent["tools"][1]["input_schema"] == {"type": "object"}
    assert sent["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"),
])
def test_stop_reasons_map_to_finish_reasons(fake, anthropic, deadline, stop_reason, finish_reason):
    fake.reply_with(text_block("x"), stop_reason=stop_reason)
    result = anthropic.chat(anthropic_target(fake), {"messages": [user("Hi")]}, deadline)
    assert result.parsed["choices"][0]["finish_reason"] == finish_reason


def test_cache_tokens_count_as_prompt_tokens_and_thinking_becomes_reasoning_content(fake, anthropic, deadline):
    fake.reply_with({"type": "thinking", "thinking": "Let me see.", "signature": "sig"}, text_block("42."),
                    usage={"input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                           "output_tokens": 5})
    result = anthropic.chat(anthropic_target(fake), {"messages": [user("Hi")], "reasoning_effort": "low"}, deadline)
    sent = only_request(fake).body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] == 4096
    assert result.parsed["choices"][0]["message"] == {"role": "assistant", "content": "42.", "refusal": None,
                                                      "reasoning_content": "Let me see."}
    assert result.parsed["usage"] == {"prompt_tokens": 1110, "completion_tokens": 5, "total_tokens": 1115,
                                      "prompt_tokens_details": {"cached_tokens": 1000}}


def test_anthropic_fields_pass_through_and_openai_only_fields_do_not(fake, anthropic, deadline):
    body = {"messages": [user("Hi")], "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2000},
            "max_tokens": 3000, "logit_bias": {"1": 2}, "seed": 3, "n": 1, "service_tier": "default",
            "stream_options": {"include_usage": True}, "stop": ["\n", "###"]}
    anthropic.chat(anthropic_target(fake), body, deadline)
    assert only_request(fake).body == {
        "model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 3000, "stop_sequences": ["###"], "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
    }


def test_unsupported_params_are_declared_for_drop_params(anthropic):
    assert {"logit_bias", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed",
            "n"} <= anthropic.unsupported_params
    assert not {"temperature", "top_p", "stop", "tools", "tool_choice", "user", "max_tokens",
                "response_format"} & anthropic.unsupported_params


# --- the deployment ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1/messages"])
def test_api_base_may_be_written_with_or_without_the_path(fake, anthropic, deadline, suffix):
    anthropic.chat(anthropic_target(fake, api_base=fake.url + suffix), {"messages": [user("Hi")]}, deadline)
    assert only_request(fake).path == "/v1/messages"


def test_deployment_version_max_tokens_and_extra_headers(fake, anthropic, deadline):
    target = anthropic_target(fake, api_version="2024-01-01",
                              params={"max_tokens": 777, "extra_headers": {"anthropic-beta": "x-1", "X-Team": 3}})
    anthropic.chat(target, {"messages": [user("Hi")]}, deadline)
    recorded = only_request(fake)
    assert recorded.headers == anthropic_headers(fake, recorded, **{"anthropic-version": "2024-01-01",
                                                                    "anthropic-beta": "x-1", "x-team": "3"})
    assert recorded.body["max_tokens"] == 777


def test_default_api_base_is_anthropics(anthropic):
    target = target_for(None, provider="anthropic", model=MODEL, api_base=None)
    assert anthropic.url(target) == "https://api.anthropic.com/v1/messages"
    assert anthropic.url(target, "messages/count_tokens") == "https://api.anthropic.com/v1/messages/count_tokens"
