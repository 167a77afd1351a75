"""Gemini answers (whole, streamed, embeddings) as OpenAI's chat completions, chunks and embedding lists.

- candidates become choices: text parts joined into `content`, thought parts into `reasoning_content`,
  `functionCall` parts into `tool_calls` with ids we generate (`call_...`);
- `finishReason` STOP -> stop, MAX_TOKENS -> length, the safety family -> content_filter, and a turn
  that called a function -> tool_calls;
- a prompt Gemini blocked (`promptFeedback.blockReason`, no candidates) is a
  `ContentPolicyViolationError` (400 `content_policy_violation`), as Azure OpenAI answers a filtered
  prompt: OpenAI clients already handle that error, and the router can try `content_policy_fallbacks`.
  A candidate cut by the safety filters is an answer with `finish_reason: "content_filter"`;
- usage from `usageMetadata`: prompt (+ tool-use prompt) tokens, candidates + thoughts tokens as
  completion tokens (thinking is billed as output), the total Gemini reports.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from providers.errors import ContentPolicyViolationError, UpstreamConnectionError, UpstreamServerError
from providers.translate.gemini import THOUGHT_SIGNATURE_MARKER

FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def completion_id(response: dict) -> str:
    response_id = response.get("responseId")
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{uuid.uuid4().hex}"


def tool_call_id(part: dict) -> str:
    """A fresh `call_...` id; Gemini's thought signature (needed when the conversation is replayed) rides along."""
    signature = part.get("thoughtSignature")
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    return f"{call_id}{THOUGHT_SIGNATURE_MARKER}{signature}" if signature else call_id


def finish_reason(reason: str | None, called_function: bool) -> str | None:
    if reason is None:
        return None
    mapped = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if called_function and mapped == "stop" else mapped


def raise_if_prompt_blocked(response: dict) -> None:
    feedback = response.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason and not response.get("candidates"):
        message = feedback.get("blockReasonMessage") or f"Gemini blocked the prompt ({reason})."
        raise ContentPolicyViolationError(message)


def usage_from_metadata(metadata: Any) -> dict[str, Any] | None:
    if not isinstance(metadata, dict):
        return None
    prompt = int(metadata.get("promptTokenCount") or 0) + int(metadata.get("toolUsePromptTokenCount") or 0)
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0) + thoughts
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": int(metadata.get("totalTokenCount") or prompt + completion)}
    cached = metadata.get("cachedContentTokenCount")
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": int(cached)}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _split_parts(parts: list) -> tuple[str, str, list[dict]]:
    """(answer text, thought text, function call parts) of one candidate's parts."""
    texts, thoughts, calls = [], [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            calls.append(part)
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    return "".join(texts), "".join(thoughts), calls


def _tool_call(part: dict) -> dict:
    call = part["functionCall"]
    return {"id": tool_call_id(part), "type": "function",
            "function": {"name": call.get("name", ""), "arguments": orjson.dumps(call.get("args") or {}).decode()}}


def chat_completion(response: dict, model: str) -> dict[str, Any]:
    """A whole `generateContent` answer as a `chat.completion`."""
    raise_if_prompt_blocked(response)
    candidates = response.get("candidates")
    if not candidates:
        raise UpstreamServerError("Gemini answered without any candidate.")
    choices = []
    for position, candidate in enumerate(candidates):
        content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
        text, thoughts, calls = _split_parts(content.get("parts") or [])
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if thoughts:
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = [_tool_call(part) for part in calls]
        choices.append({"index": candidate.get("index", position), "message": message,
                        "finish_reason": finish_reason(candidate.get("finishReason") or "STOP", bool(calls)),
                        "logprobs": None})
    result: dict[str, Any] = {"id": completion_id(response), "object": "chat.completion", "created": int(time.time()),
                              "model": response.get("modelVersion") or model, "choices": choices}
    usage = usage_from_metadata(response.get("usageMetadata"))
    if usage is not None:
        result["usage"] = usage
    return result


class StreamTranslator:
    """Gemini's streamed `GenerateContentResponse` objects, one at a time, as OpenAI chunks.

    Each upstream event becomes at most one chunk (role on a choice's first delta, text deltas,
    whole tool calls with indexes that keep counting across events, the finish reason). The last
    `usageMetadata` seen is the stream's usage, sent as a final `choices: []` chunk when the client
    asked with `stream_options.include_usage`. Gemini ends a stream by closing it, so a stream that
    closes before any finish reason was cut off.
    """

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id: str | None = None
        self.created = int(time.time())
        self.started: set[int] = set()
        self.tool_indexes: dict[int, int] = {}
        self.finished: set[int] = set()
        self.usage: dict | None = None

    def chunk(self, response: dict) -> bytes | None:
        """The OpenAI chunk for one upstream event, or None when it carries nothing for the client."""
        if self.id is None:
            self.id = completion_id(response)
            self.model = response.get("modelVersion") or self.model
        raise_if_prompt_blocked(response)
        usage = usage_from_metadata(response.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        choices = []
        for position, candidate in enumerate(response.get("candidates") or []):
            choice = self._choice(candidate.get("index", position), candidate)
            if choice is not None:
                choices.append(choice)
        if not choices:
            return None
        return orjson.dumps({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                             "model": self.model, "choices": choices})

    def _choice(self, index: int, candidate: dict) -> dict | None:
        content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
        text, thoughts, calls = _split_parts(content.get("parts") or [])
        delta: dict[str, Any] = {}
        if index not in self.started:
            self.started.add(index)
            delta["role"] = "assistant"
        if text:
            delta["content"] = text
        if thoughts:
            delta["reasoning_content"] = thoughts
        if calls:
            first = self.tool_indexes.get(index, 0)
            delta["tool_calls"] = [{"index": first + offset, **_tool_call(part)} for offset, part in enumerate(calls)]
            self.tool_indexes[index] = first + len(calls)
        reason = finish_reason(candidate.get("finishReason"), index in self.tool_indexes)
        if reason is not None:
            self.finished.add(index)
        if not delta and reason is None:
            return None
        return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}

    def close(self) -> bytes | None:
        """The usage chunk, if asked for, once the upstream stream has ended; a cut-off stream raises."""
        if not self.finished:
            raise UpstreamConnectionError("The upstream stream ended before it was complete.")
        if not self.include_usage:
            return None
        return orjson.dumps({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                             "model": self.model, "choices": [],
                             "usage": self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})


def embedding_list(vectors: list[list[float]], model: str, prompt_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's embedding list. The Gemini API reports no token counts for embeddings, so its usage is 0
    (the gateway never guesses with a tokenizer); Vertex AI's `:predict` counts tokens and they are used."""
    return {"object": "list",
            "data": [{"object": "embedding", "index": index, "embedding": vector}
                     for index, vector in enumerate(vectors)],
            "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
