"""The Gemini adapter's plain chat calls against a loopback fake of the Gemini API.

Each test asserts the exact `generateContent` request the fake received (path, headers, body) and the
exact OpenAI-format answer the adapter returned. Nothing of Gatehouse is patched.
"""
from __future__ import annotations

import re
import time

import orjson
import pytest

from providers.errors import ContentPolicyViolationError, InvalidRequestError, UpstreamServerError
from providers.registry import adapter_for, split_model
from providers.translate.gemini import THOUGHT_SIGNATURE_MARKER
from tests.fakes.gemini_server import GEMINI_KEY, USAGE, FakeGoogle
from tests.providers.helpers import only_request, target_for, transport_headers

MODEL = "gemini-2.0-flash"
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


@pytest.fixture
def gemini():
    return adapter_for("gemini")


def gemini_target(fake: FakeGoogle, **fields):
    fields.setdefault("api_base", fake.url)
    return target_for(None, provider="gemini", model=MODEL, api_key=GEMINI_KEY, **fields)


def answer(parts: list[dict], finish: str | None = "STOP", usage: dict | None = None, **extra) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage or USAGE, "modelVersion": MODEL,
            "responseId": "scripted-1", **extra}


def test_registry_knows_gemini():
    assert split_model("gemini/gemini-2.5-flash") == ("gemini", "gemini-2.5-flash")
    assert adapter_for("gemini").name == "gemini"
    assert {"logit_bias", "logprobs", "top_logprobs"} <= adapter_for("gemini").unsupported_params


def test_chat_translates_every_kind_of_turn_and_returns_an_openai_completion(google, gemini, deadline):
    """System prompts, merged turns, images by data URL / https / gs://, PDFs, tool calls and results,
    generation settings: the fake receives exactly Gemini's shape, the key only in its header."""
    body = {
        "model": "gemini-group",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Look at these."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in the image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "image_url", "image_url": {"url": "gs://bucket/diagram.webp", "format": "image/webp"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=",
                                          "filename": "a.pdf"}},
                {"type": "file", "file": {"file_id": "gs://bucket/report.pdf"}},
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city": "Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "user", "content": "Thanks"},
        ],
        "temperature": 0.3, "top_p": 0.8, "max_tokens": 100, "stop": "END", "seed": 42, "presence_penalty": 0.1,
        "frequency_penalty": 0.2, "user": "end-user-1", "metadata": {"trace": "x"}, "parallel_tool_calls": True,
    }
    result = gemini.chat(gemini_target(google), body, deadline)

    request = only_request(google)
    assert (request.method, request.path, request.query) == ("POST", f"/v1beta/models/{MODEL}:generateContent", {})
    assert request.headers == {**transport_headers(google, request), "content-type": "application/json",
                               "x-goog-api-key": GEMINI_KEY}
    assert request.body == {
        "contents": [
            {"role": "user", "parts": [
                {"text": "Look at these."}, {"text": "What is in the image?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/diagram.webp"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/report.pdf"}}]},
            {"role": "model", "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                {"text": "Thanks"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "generationConfig": {"temperature": 0.3, "topP": 0.8, "seed": 42, "presencePenalty": 0.1,
                             "frequencyPenalty": 0.2, "maxOutputTokens": 100, "stopSequences": ["END"]},
    }
    assert abs(result.parsed["created"] - time.time()) < 5
    assert result.parsed == {
        "id": "chatcmpl-fake-response-1", "object": "chat.completion", "created": result.parsed["created"],
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake Gemini."},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    assert orjson.loads(result.body) == result.parsed


def test_max_completion_tokens_n_json_schema_and_native_fields(google, gemini, deadline):
    google.script({"candidates": [
        {"content": {"parts": [{"text": '{"a": 1}'}], "role": "model"}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": '{"a": 2}'}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1}],
        "usageMetadata": USAGE})
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
              "properties": {"a": {"type": "integer", "title": "A"}}, "required": ["a"]}
    body = {"messages": [{"role": "user", "content": "json please"}], "max_completion_tokens": 50, "max_tokens": 9,
            "n": 2, "stop": ["x", "y"], "top_k": 5, "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
            "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}
    result = gemini.chat(gemini_target(google), body, deadline)
    assert only_request(google).body == {
        "contents": [{"role": "user", "parts": [{"text": "json please"}]}],
        "generationConfig": {"maxOutputTokens": 50, "candidateCount": 2, "stopSequences": ["x", "y"], "topK": 5,
                             "thinkingConfig": {"thinkingBudget": 1024},
                             "responseMimeType": "application/json",
                             "responseSchema": {"type": "object", "properties": {"a": {"type": "integer",
                                                                                       "title": "A"}},
                                                "required": ["a"]}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    assert [(choice["index"], choice["message"]["content"], choice["finish_reason"])
            for choice in result.parsed["choices"]] == [(0, '{"a": 1}', "stop"), (1, '{"a": 2}', "length")]
    assert result.parsed["id"].startswith("chatcmpl-") and result.parsed["model"] == MODEL


def test_json_object_asks_for_json_only(google, gemini, deadline):
    gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "hi"}],
                                        "response_format": {"type": "json_object"}}, deadline)
    assert only_request(google).body["generationConfig"] == {"responseMimeType": "application/json"}


def test_tools_are_declared_with_schemas_gemini_accepts_and_tool_choice_maps(google, gemini, deadline):
    """Pydantic-style schemas ($defs/$ref, additionalProperties, nullable unions, const) are reduced to
    Gemini's Schema subset; a function without parameters declares none."""
    parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "title": "Unit"}},
        "properties": {
            "city": {"type": "string", "format": "uri", "minLength": 1, "description": "City"},
            "unit": {"$ref": "#/$defs/Unit"},
            "days": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None},
            "tags": {"type": ["array", "null"], "items": {"type": "string", "const": "x"}},
            "extra": {"type": "object", "properties": {}, "additionalProperties": True},
        },
        "required": ["city", "unit", "missing"],
    }
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "strict": True,
                                               "parameters": parameters}},
             {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
             {"google_search": {}}]
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    result = gemini.chat(gemini_target(google), body, deadline)

    sent = only_request(google).body
    assert sent["tools"] == [
        {"functionDeclarations": [
            {"name": "get_weather", "description": "Weather", "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 1, "description": "City"},
                    "unit": {"type": "string", "enum": ["c", "f"], "title": "Unit"},
                    "days": {"type": "integer", "minimum": 1, "nullable": True, "default": None},
                    "tags": {"type": "array", "nullable": True, "items": {"type": "string", "enum": ["x"]}},
                    "extra": {"type": "object"},
                },
                "required": ["city", "unit"]}},
            {"name": "now"}]},
        {"google_search": {}},
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    message = result.parsed["choices"][0]["message"]
    assert result.parsed["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert CALL_ID.match(call["id"])
    assert call == {"id": call["id"], "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"})])
def test_tool_choice_strings(google, gemini, deadline, choice, config):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                           "properties": {"a": {"type": "string"}}}}}]
    gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "x"}], "tools": tools,
                                        "tool_choice": choice}, deadline)
    assert only_request(google).body["toolConfig"] == {"functionCallingConfig": config}


def test_thought_signature_travels_in_the_tool_call_id_and_comes_back(google, gemini, deadline):
    """Thinking models sign their function calls; the signature must be sent back when the call is replayed."""
    google.script(answer([{"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "c2ln/+=="}]))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    first = gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "go"}], "tools": tools},
                        deadline)
    [call] = first.parsed["choices"][0]["message"]["tool_calls"]
    prefix, marker, signature = call["id"].partition(THOUGHT_SIGNATURE_MARKER)
    assert CALL_ID.match(prefix) and marker and signature == "c2ln/+=="
    google.reset()
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "[1, 2]"}]
    gemini.chat(gemini_target(google), {"messages": messages, "tools": tools}, deadline)
    assert only_request(google).body["contents"] == [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}},
                                     "thoughtSignature": "c2ln/+=="}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"content": [1, 2]}}}]},
    ]


def test_thoughts_become_reasoning_content_and_usage_counts_them(google, gemini, deadline):
    usage = {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
             "cachedContentTokenCount": 40, "totalTokenCount": 150}
    google.script(answer([{"text": "Let me think.", "thought": True}, {"text": "Forty"}, {"text": "-two."}],
                         usage=usage))
    result = gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "?"}]}, deadline)
    assert result.parsed["choices"][0]["message"] == {"role": "assistant", "content": "Forty-two.",
                                                      "reasoning_content": "Let me think."}
    assert result.parsed["usage"] == {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                                      "prompt_tokens_details": {"cached_tokens": 40},
                                      "completion_tokens_details": {"reasoning_tokens": 30}}
    assert result.parsed["id"] == "chatcmpl-scripted-1"


def test_a_candidate_stopped_by_safety_filters_is_a_content_filter_finish(google, gemini, deadline):
    google.script({"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}],
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}})
    result = gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "bad"}]}, deadline)
    assert result.parsed["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None},
                                         "finish_reason": "content_filter", "logprobs": None}]
    assert result.parsed["usage"] == {"prompt_tokens": 8, "completion_tokens": 0, "total_tokens": 8}


@pytest.mark.parametrize("reason", ["RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])
def test_other_safety_finishes_are_content_filter(google, gemini, deadline, reason):
    google.script(answer([{"text": "partial"}], finish=reason))
    result = gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "x"}]}, deadline)
    assert result.parsed["choices"][0]["finish_reason"] == "content_filter"


def test_a_blocked_prompt_is_a_content_policy_violation(google, gemini, deadline):
    """Gemini answers 200 with `promptFeedback.blockReason` and no candidate; OpenAI clients (and the
    router's content_policy_fallbacks) expect a 400 content_policy_violation, as Azure sends."""
    google.script({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                   "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}})
    with pytest.raises(ContentPolicyViolationError) as caught:
        gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "bad"}]}, deadline)
    assert caught.value.status_code == 400
    assert caught.value.envelope() == {"error": {"message": "Gemini blocked the prompt (SAFETY).",
                                                 "type": "invalid_request_error", "param": None,
                                                 "code": "content_policy_violation"}}


def test_an_answer_without_candidates_is_a_retryable_upstream_error(google, gemini, deadline):
    google.script({"usageMetadata": USAGE})
    with pytest.raises(UpstreamServerError):
        gemini.chat(gemini_target(google), {"messages": [{"role": "user", "content": "x"}]}, deadline)


@pytest.mark.parametrize(("messages", "param"), [
    ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
     "messages[0].content[0]"),
    ([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}],
     "messages[0].tool_calls[0]"),
    ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ([{"role": "narrator", "content": "x"}], "messages[0].role"),
])
def test_requests_gemini_cannot_take_are_refused_before_reaching_it(google, gemini, deadline, messages, param):
    with pytest.raises(InvalidRequestError) as caught:
        gemini.chat(gemini_target(google), {"messages": messages}, deadline)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert google.requests == []


def test_custom_api_base_with_version_and_extra_headers(google, gemini, deadline):
    target = gemini_target(google, api_base=f"{google.url}/v1beta/",
                           params={"extra_headers": {"x-goog-user-project": "billing-project"}})
    gemini.chat(target, {"messages": [{"role": "user", "content": "x"}]}, deadline)
    request = only_request(google)
    assert request.path == f"/v1beta/models/{MODEL}:generateContent"
    assert request.headers["x-goog-user-project"] == "billing-project"
    assert GEMINI_KEY not in request.path and not request.query
