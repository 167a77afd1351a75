"""Anthropic's streamed Messages events as OpenAI `chat.completion.chunk` payloads, one event at a time.

Anthropic numbers content blocks (text, thinking and tool_use alike); OpenAI numbers only tool calls.
So each tool_use block gets the next tool-call index when it opens (the first tool call is index 0
even after a text block) and keeps it for every argument delta. The answer tool of a
`response_format` request streams its JSON as content instead. Usage is gathered from
`message_start` (input tokens) and `message_delta` (output tokens) and sent as a final usage-only
chunk when the client asked for it (`stream_options.include_usage`).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from providers.errors import UpstreamConnectionError
from providers.translate.anthropic import ANSWER_TOOL, finish_reason, openai_usage
from providers.translate.anthropic_errors import error_from_type

TEXT, THINKING, TOOL, ANSWER = "text", "thinking", "tool", "answer"


class ChunkTranslator:
    """The state of one translated stream: which OpenAI slot each Anthropic block feeds, and the usage so far."""

    def __init__(self, *, answer_tool: bool, include_usage: bool) -> None:
        self.answer_tool = answer_tool
        self.include_usage = include_usage
        self.base: dict[str, Any] = {"id": "msg_unknown", "object": "chat.completion.chunk",
                                     "created": int(time.time()), "model": ""}
        self.blocks: dict[int, tuple[str, int]] = {}  # Anthropic block index -> (kind, OpenAI tool-call index)
        self.tool_calls = 0
        self.usage: dict[str, Any] = {}
        self.finished = False

    def chunks(self, events: Iterator[dict]) -> Iterator[bytes]:
        """Every OpenAI chunk the events make; raises the provider's error for an `error` event and
        `UpstreamConnectionError` when the stream ends before `message_stop`."""
        for event in events:
            yield from self.translate(event)
            if self.finished:
                return
        raise UpstreamConnectionError("The upstream stream ended before it was complete.")

    def translate(self, event: dict) -> list[bytes]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            message = event.get("message") or {}
            self.base["id"] = message.get("id") or self.base["id"]
            self.base["model"] = message.get("model") or ""
            self._note_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._note_usage(event.get("usage"))
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            reason = finish_reason(stop_reason, has_tool_calls=self.tool_calls > 0)
            return [self._chunk({}, finish=reason)]
        if kind == "message_stop":
            self.finished = True
            if not self.include_usage:
                return []
            return [orjson.dumps({**self.base, "choices": [], "usage": openai_usage(self.usage)})]
        if kind == "error":
            error = event.get("error") or {}
            raise error_from_type(error.get("type"), error.get("message"))
        return []  # ping, content_block_stop, and event types Anthropic adds later

    def _block_start(self, event: dict) -> list[bytes]:
        block = event.get("content_block") or {}
        index = event.get("index", 0)
        kind = block.get("type")
        if kind == "tool_use" and self.answer_tool and block.get("name") == ANSWER_TOOL:
            self.blocks[index] = (ANSWER, 0)
        elif kind == "tool_use":
            position = self.tool_calls
            self.tool_calls += 1
            self.blocks[index] = (TOOL, position)
            opening = {"index": position, "id": block.get("id"), "type": "function",
                       "function": {"name": block.get("name"), "arguments": ""}}
            return [self._chunk({"tool_calls": [opening]})]
        elif kind == "text":
            self.blocks[index] = (TEXT, 0)
            if block.get("text"):
                return [self._chunk({"content": block["text"]})]
        elif kind == "thinking":
            self.blocks[index] = (THINKING, 0)
        return []

    def _delta(self, event: dict) -> list[bytes]:
        delta = event.get("delta") or {}
        kind, position = self.blocks.get(event.get("index", 0), (None, 0))
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            return [self._chunk({"content": delta.get("text") or ""})]
        if delta_type == "input_json_delta":
            partial = delta.get("partial_json")
            if not partial:
                return []
            if kind == ANSWER:
                return [self._chunk({"content": partial})]
            if kind == TOOL:
                return [self._chunk({"tool_calls": [{"index": position, "function": {"arguments": partial}}]})]
            return []
        if delta_type == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        return []  # signature and citation deltas have no OpenAI counterpart

    def _note_usage(self, usage: Any) -> None:
        """Anthropic's counts are cumulative: later events replace earlier numbers, absent ones are kept."""
        if isinstance(usage, dict):
            self.usage.update({name: value for name, value in usage.items() if value is not None})

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        return orjson.dumps({**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                       "logprobs": None}]})
