"""The official OpenAI SDK against a running gateway whose `claude` group is an Anthropic deployment.

The deployment points at a loopback fake of Anthropic's Messages API: the SDK must see ordinary
OpenAI answers, chunks and errors, and the fake must have received Anthropic's format.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-ant-upstream-e2e"
MODEL = "claude-sonnet-4-5-20250929"
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather.",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}},
                                                                "required": ["city"]}}}


@pytest.fixture(scope="module")
def _fake() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()


@pytest.fixture
def fake(_fake) -> FakeAnthropic:
    _fake.reset()
    return _fake


@pytest.fixture(scope="module")
def anthropic_gateway(tmp_path_factory, _fake) -> Iterator[GatewayProcess]:
    config = {
        "model_list": [{"model_name": "claude", "litellm_params": {"model": f"anthropic/{MODEL}", "api_base": _fake.url,
                                                                   "api_key": UPSTREAM_KEY},
                        "model_info": {"id": "claude-1"}}],
        "router_settings": {"num_retries": 0, "timeout": 30},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("anthropic-gateway"), config)
    yield process
    process.stop()


@pytest.fixture
def client(anthropic_gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=anthropic_gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def test_plain_chat(client, fake):
    response = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=64)
    completion = response.parse()

    assert response.headers["x-gatehouse-deployment-id"] == "claude-1"
    assert completion.choices[0].message.content == "Hello from the fake Anthropic."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12, 6, 18)
    [recorded] = fake.requests
    assert (recorded.path, recorded.headers["x-api-key"], recorded.headers["anthropic-version"]) == (
        "/v1/messages", UPSTREAM_KEY, "2023-06-01")
    assert recorded.headers.get("authorization") is None  # the gateway key never goes upstream
    assert recorded.body == {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text",
                                                                                         "text": "Hi"}]}],
                             "system": [{"type": "text", "text": "Be brief."}], "max_tokens": 64}


def test_streamed_chat_hides_usage_unless_asked(client, fake):
    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}],
                                                 stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello from the fake Anthropic."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    # The gateway asked for usage anyway (for its logs); Anthropic streams it unasked, nothing extra was sent.
    assert fake.requests[0].body["stream"] is True

    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 6)


def test_tool_call_plain_and_streamed(client, fake):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    fake.reply_with(tool_use_block("toolu_e2e", "get_weather", {"city": "Paris"}), stop_reason="tool_use")
    completion = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL],
                                                tool_choice="auto")
    [call] = completion.choices[0].message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_e2e", "get_weather",
                                                                                  {"city": "Paris"})
    assert completion.choices[0].finish_reason == "tool_calls"
    assert fake.requests[0].body["tools"] == [{"name": "get_weather",
                                               "input_schema": WEATHER_TOOL["function"]["parameters"],
                                               "description": "Current weather."}]

    fake.reply_with(text_block("Let me check."), tool_use_block("toolu_s", "get_weather", {"city": "Paris"}),
                    stop_reason="tool_use")
    arguments, names, indexes = "", [], set()
    finish = None
    for chunk in client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL], stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            indexes.add(delta.index)
            names += [delta.function.name] if delta.function.name else []
            arguments += delta.function.arguments or ""
    assert (names, indexes, json.loads(arguments), finish) == (["get_weather"], {0}, {"city": "Paris"}, "tool_calls")

    # The tool's answer goes back as a tool_result block inside a user turn.
    follow_up = [*messages, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_s", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "toolu_s", "content": "Sunny"}]
    client.chat.completions.create(model="claude", messages=follow_up, tools=[WEATHER_TOOL])
    assert fake.requests[-1].body["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_s", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_s", "content": "Sunny"}]}]


def test_overloaded_anthropic_is_a_503_in_openai_shape(client, fake):
    fake.fail_next(kind="status", status=529, error_type="overloaded_error", message="Overloaded")
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 503
    assert raised.value.body == {"message": "Overloaded", "type": "api_error", "param": None,
                                 "code": "upstream_error"}
