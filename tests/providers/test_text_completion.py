"""`text-completion-openai`: chat requests to models that only have the legacy `/completions` endpoint."""
from __future__ import annotations

import pytest

from providers.openai import TextCompletionOpenAIProvider
from providers.registry import adapter_for
from tests.providers.helpers import UPSTREAM_KEY, only_request, parsed_chunks, target_for, transport_headers
from tests.support.polling import wait_until

MODEL = "gpt-3.5-turbo-instruct"
CHAT_BODY = {
    "model": "instruct-group",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "image_url", "image_url": {"url": "u"}},
                                     {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "parallel_tool_calls": True, "response_format": {"type": "json_object"},
    "max_completion_tokens": 20, "temperature": 0.2, "user": "u-1", "metadata": {"trace": "x"},
}
EXPECTED_PROMPT = "system: Be brief.\nuser: Hi there\nassistant: Hello.\nuser: Again\nassistant:"


@pytest.fixture
def text_completion() -> TextCompletionOpenAIProvider:
    return adapter_for("text-completion-openai")


def test_chat_is_sent_to_completions_as_a_prompt_without_chat_only_fields(fake_openai, text_completion, deadline):
    """Messages become one `role: text` line each ending with `assistant:`; tools, tool_choice,
    parallel_tool_calls and response_format are dropped; max_completion_tokens becomes max_tokens;
    other fields pass through and gateway fields are stripped."""
    text_completion.chat(target_for(fake_openai.url, provider="text-completion-openai", model=MODEL), CHAT_BODY,
                         deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/completions", {})
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "authorization": f"Bearer {UPSTREAM_KEY}"}
    assert recorded.body == {"model": MODEL, "temperature": 0.2, "user": "u-1", "prompt": EXPECTED_PROMPT,
                             "max_tokens": 20}


def test_an_explicit_max_tokens_wins_over_max_completion_tokens(fake_openai, text_completion, deadline):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "max_completion_tokens": 50}
    text_completion.chat(target_for(fake_openai.url, model=MODEL), body, deadline)
    assert only_request(fake_openai).body == {"max_tokens": 5, "model": MODEL, "prompt": "user: Hi\nassistant:"}


def test_the_completion_answer_comes_back_as_a_chat_completion(fake_openai, text_completion, deadline):
    """The text (leading space removed) becomes the assistant message; id, created, model and usage are kept."""
    result = text_completion.chat(target_for(fake_openai.url, model=MODEL), CHAT_BODY, deadline)

    completion_id = result.parsed["id"]
    assert completion_id.startswith("cmpl-fake-")
    assert result.parsed == {
        "id": completion_id, "object": "chat.completion", "created": 1700000000, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake provider."},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }


def test_chat_stream_becomes_chat_completion_chunks_with_the_role_in_the_first_delta(fake_openai, text_completion,
                                                                                    deadline):
    fake_openai.stream_chunks = 3
    stream = text_completion.chat_stream(target_for(fake_openai.url, model=MODEL), {**CHAT_BODY, "stream": True},
                                         deadline, 5)
    chunks = parsed_chunks(stream)

    recorded = only_request(fake_openai)
    assert recorded.path == "/v1/completions"
    assert recorded.body == {"model": MODEL, "temperature": 0.2, "user": "u-1", "stream": True,
                             "prompt": EXPECTED_PROMPT, "max_tokens": 20}
    completion_id = chunks[0]["id"]
    assert completion_id.startswith("cmpl-fake-")
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL}
    assert chunks == [
        {**base, "choices": [{"index": 0, "delta": {"content": "tok0 ", "role": "assistant"}, "finish_reason": None,
                              "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "tok1 "}, "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "tok2 "}, "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop", "logprobs": None}]},
    ]
    assert wait_until(lambda: fake_openai.completed_streams == 1)


def test_plain_completions_are_relayed_as_text_completions(fake_openai, text_completion, deadline):
    result = text_completion.completion(target_for(fake_openai.url, model=MODEL),
                                        {"model": "g", "prompt": "Say hi", "metadata": {}}, deadline)
    recorded = only_request(fake_openai)
    assert (recorded.path, recorded.body) == ("/v1/completions", {"model": MODEL, "prompt": "Say hi"})
    assert result.parsed["object"] == "text_completion"
    assert result.parsed["choices"][0]["text"] == " Hello from the fake provider."
