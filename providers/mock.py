"""The built-in `mock` provider: deterministic answers with no network and no API key.

It lets a fresh checkout serve the demo config, and gives tests and demos a provider whose output is
derived from the request: the reply quotes the last user message, tool calls fill the declared
schema, embeddings are unit vectors seeded by the input's hash, and moderation flags a fixed list
of trigger words. Behaviour is tuned per deployment in `litellm_params`:

- `mock_response`: a fixed reply text;
- `mock_latency_ms`: a delay before answering (before the first chunk when streaming);
- `mock_chunk_count` / `mock_chunk_interval_ms`: how a streamed reply is cut and paced;
- `mock_embedding_dimensions`: vector length when the request gives no `dimensions`.

Managed files: the mock "holds" a copy without keeping any bytes, so it works the same in every
worker and after a restart. Its file id is derived from the content (`mockfile-<sha256 prefix>-<size>`),
and a reply that echoes a message with a file part names the file, its type and its size.
"""
from __future__ import annotations

import hashlib
import math
import struct
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO, ClassVar

import orjson

from providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    MODERATIONS,
    DeploymentTarget,
    Provider,
    UpstreamResponse,
    UpstreamStream,
)
from providers.errors import InvalidRequestError
from providers.files import ProviderFileRef
from providers.http import READ_CHUNK_BYTES, Deadline
from providers.translate.embeddings import vector_to_base64
from providers.translate.prompt import message_text

MODERATION_TRIGGERS = {
    "violence": ("kill", "attack", "violence"),
    "harassment": ("idiot", "stupid"),
    "hate": ("hate",),
    "self-harm": ("self-harm",),
    "illicit": ("steal",),
}
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)
DEFAULT_EMBEDDING_DIMENSIONS = 16
MOCK_FILE_PREFIX = "mockfile-"


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: words plus punctuation runs, at least one per non-empty text."""
    return len(text.split()) if text else 0


class MockProvider(Provider):
    name = "mock"
    operations = frozenset({CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS})
    # The mock invents text, not token probabilities: a caller asking for them is told so.
    unsupported_params = frozenset({"logprobs", "top_logprobs"})

    # --- chat -------------------------------------------------------------------------------
    def chat(self, target, body, deadline):
        _pause(target.params.get("mock_latency_ms"))
        return UpstreamResponse.from_object(self._chat_completion(target, body))

    def chat_stream(self, target, body, deadline, first_chunk_timeout):
        completion = self._chat_completion(target, body)
        return UpstreamStream(self._chat_chunks(target, body, completion))

    def _chat_completion(self, target: DeploymentTarget, body: dict) -> dict:
        messages = body.get("messages") or []
        prompt_text = " ".join(message_text(m.get("content")) for m in messages if isinstance(m, dict))
        choices = []
        for index in range(_choice_count(body)):
            message, finish_reason = self._reply(target, body, messages)
            choices.append({"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None})
        completion_tokens = sum(count_tokens(c["message"].get("content") or "") for c in choices) + sum(
            count_tokens(call["function"]["arguments"]) for c in choices for call in c["message"].get("tool_calls", [])
        )
        prompt_tokens = count_tokens(prompt_text)
        return {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": "fp_gatehouse_mock",
        }

    def _reply(self, target: DeploymentTarget, body: dict, messages: list) -> tuple[dict, str]:
        tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict) and tool.get("type") == "function"]
        tool_choice = body.get("tool_choice", "auto")
        answered_tool = bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
        if tools and tool_choice != "none" and not answered_tool:
            chosen = _chosen_tools(tools, tool_choice, body.get("parallel_tool_calls", True))
            calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": tool["function"]["name"],
                                 "arguments": orjson.dumps(_sample_for_schema(
                                     tool["function"].get("parameters") or {})).decode()},
                }
                for tool in chosen
            ]
            return {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}, "tool_calls"
        text = target.params.get("mock_response") or _echo_reply(messages, answered_tool)
        response_format = body.get("response_format") or {}
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            text = orjson.dumps(_sample_for_schema(schema)).decode()
        elif isinstance(response_format, dict) and response_format.get("type") == "json_object":
            text = orjson.dumps({"reply": text}).decode()
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(text) > max_tokens:
            return {"role": "assistant", "content": " ".join(text.split()[:max_tokens]), "refusal": None}, "length"
        return {"role": "assistant", "content": text, "refusal": None}, "stop"

    def _chat_chunks(self, target: DeploymentTarget, body: dict, completion: dict) -> Iterator[bytes]:
        params = target.params
        _pause(params.get("mock_latency_ms"))
        interval = float(params.get("mock_chunk_interval_ms") or 0) / 1000
        base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
                "model": completion["model"], "system_fingerprint": completion["system_fingerprint"]}
        for choice in completion["choices"]:
            index, message = choice["index"], choice["message"]
            yield orjson.dumps({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                                     "finish_reason": None, "logprobs": None}]})
            for position, call in enumerate(message.get("tool_calls") or []):
                opening = {"index": position, "id": call["id"], "type": "function",
                           "function": {"name": call["function"]["name"], "arguments": ""}}
                yield orjson.dumps({**base, "choices": [{"index": index, "delta": {"tool_calls": [opening]},
                                                         "finish_reason": None, "logprobs": None}]})
                arguments = {"index": position, "function": {"arguments": call["function"]["arguments"]}}
                yield orjson.dumps({**base, "choices": [{"index": index, "delta": {"tool_calls": [arguments]},
                                                         "finish_reason": None, "logprobs": None}]})
            for piece in _split_text(message.get("content") or "", params.get("mock_chunk_count")):
                if interval:
                    time.sleep(interval)
                yield orjson.dumps({**base, "choices": [{"index": index, "delta": {"content": piece},
                                                         "finish_reason": None, "logprobs": None}]})
            yield orjson.dumps({**base, "choices": [{"index": index, "delta": {},
                                                     "finish_reason": choice["finish_reason"], "logprobs": None}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield orjson.dumps({**base, "choices": [], "usage": completion["usage"]})

    # --- completions ------------------------------------------------------------------------
    def completion(self, target, body, deadline):
        _pause(target.params.get("mock_latency_ms"))
        return UpstreamResponse.from_object(self._text_completion(target, body))

    def completion_stream(self, target, body, deadline, first_chunk_timeout):
        completion = self._text_completion(target, body)
        return UpstreamStream(self._completion_chunks(target, body, completion))

    def _text_completion(self, target: DeploymentTarget, body: dict) -> dict:
        prompts = _as_prompt_list(body.get("prompt"))
        text = target.params.get("mock_response")
        choices = []
        for prompt in prompts:
            reply = text or f" This is a mock completion of: {prompt[:200]}"
            for _ in range(_choice_count(body)):
                choices.append({"index": len(choices), "text": reply, "finish_reason": "stop", "logprobs": None})
        prompt_tokens = sum(count_tokens(p) for p in prompts)
        completion_tokens = sum(count_tokens(c["text"]) for c in choices)
        return {
            "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": target.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _completion_chunks(self, target: DeploymentTarget, body: dict, completion: dict) -> Iterator[bytes]:
        _pause(target.params.get("mock_latency_ms"))
        interval = float(target.params.get("mock_chunk_interval_ms") or 0) / 1000
        base = {"id": completion["id"], "object": "text_completion", "created": completion["created"],
                "model": completion["model"]}
        for choice in completion["choices"]:
            for piece in _split_text(choice["text"], target.params.get("mock_chunk_count")):
                if interval:
                    time.sleep(interval)
                yield orjson.dumps({**base, "choices": [{"index": choice["index"], "text": piece,
                                                         "finish_reason": None, "logprobs": None}]})
            yield orjson.dumps({**base, "choices": [{"index": choice["index"], "text": "",
                                                     "finish_reason": "stop", "logprobs": None}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield orjson.dumps({**base, "choices": [], "usage": completion["usage"]})

    # --- embeddings and moderations ---------------------------------------------------------
    def embedding(self, target, body, deadline):
        _pause(target.params.get("mock_latency_ms"))
        inputs = _as_embedding_inputs(body.get("input"))
        dimensions = (body.get("dimensions") or target.params.get("mock_embedding_dimensions")
                      or DEFAULT_EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = deterministic_vector(text, int(dimensions))
            data.append({"object": "embedding", "index": index,
                         "embedding": vector_to_base64(vector) if as_base64 else vector})
        tokens = sum(count_tokens(text) for text in inputs)
        return UpstreamResponse.from_object({
            "object": "list", "data": data, "model": target.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    def moderation(self, target, body, deadline):
        inputs = _as_moderation_inputs(body.get("input"))
        results = []
        for text in inputs:
            lowered = text.lower()
            hits = {category for category, words in MODERATION_TRIGGERS.items() if any(w in lowered for w in words)}
            results.append({
                "flagged": bool(hits),
                "categories": {category: category in hits for category in MODERATION_CATEGORIES},
                "category_scores": {category: (0.98 if category in hits else 0.0001)
                                    for category in MODERATION_CATEGORIES},
                "category_applied_input_types": {category: ["text"] for category in MODERATION_CATEGORIES},
            })
        return UpstreamResponse.from_object({"id": f"modr-mock-{uuid.uuid4().hex[:24]}", "model": target.model,
                                             "results": results})

    # --- files --------------------------------------------------------------------------------
    supports_files: ClassVar[bool] = True

    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """Read the file once (in pieces) for its digest; the id carries digest and size, nothing is stored."""
        _pause(target.params.get("mock_latency_ms"))
        digest = hashlib.sha256()
        read = 0
        while read < size:
            deadline.check()
            block = content.read(min(READ_CHUNK_BYTES, size - read))
            if not block:
                break
            digest.update(block)
            read += len(block)
        return ProviderFileRef(file_id=f"{MOCK_FILE_PREFIX}{digest.hexdigest()[:32]}-{read}", uri=None,
                               mime_type=mime_type)

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """Nothing is held, so nothing is deleted."""

    def file_part(self, ref: ProviderFileRef, part: dict) -> dict:
        """The copy's id and type, and the client's filename when it gave one (the reply quotes them)."""
        resolved = {"file_id": ref.file_id, "format": ref.mime_type}
        filename = (part.get("file") or {}).get("filename") if isinstance(part.get("file"), dict) else None
        if isinstance(filename, str) and filename:
            resolved["filename"] = filename
        return {"type": "file", "file": resolved}


def file_mentions(content) -> str:
    """A deterministic mention of each file part of a message, e.g. `[file report.pdf application/pdf, 1234 bytes]`."""
    if not isinstance(content, list):
        return ""
    mentions = []
    for part in content:
        file = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
        if not isinstance(file, dict):
            continue
        file_id = str(file.get("file_id") or "")
        words = [str(file.get("filename") or file_id or "inline data")]
        if file.get("format"):
            words.append(str(file["format"]))
        size = file_id.rsplit("-", 1)[-1] if file_id.startswith(MOCK_FILE_PREFIX) else ""
        mention = " ".join(words) + (f", {size} bytes" if size.isdigit() else "")
        mentions.append(f"[file {mention}]")
    return " ".join(mentions)


def deterministic_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector seeded by the text's SHA-256, exactly representable as float32 (base64 round-trips)."""
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        raw.extend((value / 65535.0) * 2 - 1 for value in struct.unpack("<16H", block))
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", value / norm))[0] for value in raw]


def _pause(milliseconds) -> None:
    if milliseconds:
        time.sleep(float(milliseconds) / 1000)


def _choice_count(body: dict) -> int:
    n = body.get("n") or 1
    return n if isinstance(n, int) and 1 <= n <= 128 else 1


def _echo_reply(messages: list, answered_tool: bool) -> str:
    if answered_tool:
        return f"The tool returned: {message_text(messages[-1].get('content'))[:200]}"
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            quoted = " ".join(filter(None, (message_text(message.get("content"))[:200],
                                            file_mentions(message.get("content")))))
            return f"This is a mock response to: {quoted}"
    return "This is a mock response."


def _chosen_tools(tools: list[dict], tool_choice, parallel) -> list[dict]:
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        named = [tool for tool in tools if tool["function"].get("name") == wanted]
        return named or tools[:1]
    return tools if parallel is not False else tools[:1]


def _sample_for_schema(schema: dict):
    """A small value that satisfies a JSON schema's shape: what a model asked for `schema` might return."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _sample_for_schema(sub) for name, sub in properties.items()}
    if kind == "array":
        return [_sample_for_schema(schema.get("items") or {})]
    return {"string": "sample", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "sample")


def _split_text(text: str, chunk_count) -> list[str]:
    if not text:
        return []
    if chunk_count:
        # Exactly `chunk_count` pieces (fewer only when the text is shorter), as even as possible.
        count = min(max(1, int(chunk_count)), len(text))
        size, longer = divmod(len(text), count)
        pieces, start = [], 0
        for index in range(count):
            end = start + size + (1 if index < longer else 0)
            pieces.append(text[start:end])
            start = end
        return pieces
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _as_prompt_list(prompt) -> list[str]:
    if prompt is None:
        return [""]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return prompt or [""]
    if isinstance(prompt, list):
        return [" ".join(str(token) for token in p) if isinstance(p, list) else str(p) for p in prompt]
    raise InvalidRequestError("'prompt' must be a string, a list of strings or token arrays.", param="prompt")


def _as_embedding_inputs(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    raise InvalidRequestError("'input' must be a string, a list of strings or token arrays.", param="input")


def _as_moderation_inputs(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        texts = []
        for item in value:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and item.get("type") == "text":
                texts.append(str(item.get("text", "")))
            elif isinstance(item, dict):
                texts.append("")  # an image part: nothing to flag in the mock
        return texts
    raise InvalidRequestError("'input' must be a string, a list of strings or content parts.", param="input")
