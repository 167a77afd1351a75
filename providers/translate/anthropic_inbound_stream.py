"""OpenAI chat chunks -> Anthropic's streamed events, for `/v1/messages` on non-Anthropic models.

Anthropic's stream is a strict sequence: one `message_start`; then per content block a
`content_block_start`, its `content_block_delta`s (`text_delta` for text, `input_json_delta` for a
tool call's arguments, verbatim) and a `content_block_stop`; then one `message_delta` (stop reason and
usage) and `message_stop`. OpenAI's chunks carry the same information in another order: text and tool
call deltas in one stream of choices, the finish reason on a late chunk and the usage on the last one.

`AnthropicEvents` turns each chunk into zero or more whole SSE frames as it arrives (one parse, one
encode per event); empty chunks (a role-only delta, keep-alives, `choices: []`) produce nothing, and a
block is opened only when it has content. Input tokens are known only at the end of an OpenAI stream,
so `message_start` reports 0 and `message_delta` carries the real counts (Anthropic's SDK keeps the
later value).
"""
from __future__ import annotations

import orjson

from providers.translate.anthropic_inbound import anthropic_usage, message_id, stop_reason


def frame(kind: str, payload: dict) -> bytes:
    """One Anthropic SSE frame: `event: <type>` then its JSON `data:`."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicEvents:
    """The translation state of one stream: which block is open, which tool call is in which block."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block = -1  # index of the last block opened
        self.open_kind: str | None = None  # "text" or "tool_use" while a block is open
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self.finish_reason: str | None = None
        self.usage: dict | None = None  # the OpenAI usage object, once a chunk has carried it

    def translate(self, data: bytes) -> list[bytes]:
        """The frames one OpenAI chunk (its JSON bytes) becomes."""
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            return []
        frames: list[bytes] = []
        if not self.started:
            frames.append(self._message_start(chunk.get("id")))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or []:
            # An Anthropic message has one answer: choices beyond the first (`n` > 1) have no place in it.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                frames.extend(self._text(text))
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    frames.extend(self._tool_call(call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return frames

    def finish(self) -> list[bytes]:
        """The frames that end the message: the open block's stop, `message_delta`, `message_stop`."""
        frames: list[bytes] = []
        if not self.started:
            frames.append(self._message_start(None))
        frames.extend(self._close())
        if self.usage is not None:
            usage = anthropic_usage(self.usage)
        else:
            usage = {"output_tokens": 0}
        frames.append(frame("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None},
            "usage": usage,
        }))
        frames.append(frame("message_stop", {"type": "message_stop"}))
        return frames

    def _message_start(self, completion_id) -> bytes:
        self.started = True
        return frame("message_start", {"type": "message_start", "message": {
            "id": message_id(completion_id), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})

    def _open(self, kind: str, content_block: dict) -> list[bytes]:
        frames = self._close()
        self.block += 1
        self.open_kind = kind
        frames.append(frame("content_block_start", {"type": "content_block_start", "index": self.block,
                                                    "content_block": content_block}))
        return frames

    def _close(self) -> list[bytes]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [frame("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def _text(self, text: str) -> list[bytes]:
        frames = [] if self.open_kind == "text" else self._open("text", {"type": "text", "text": ""})
        frames.append(frame("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                    "delta": {"type": "text_delta", "text": text}}))
        return frames

    def _tool_call(self, call: dict) -> list[bytes]:
        """A tool call delta: its first piece (id and name) opens a `tool_use` block; argument pieces are
        relayed as they are, as `input_json_delta`s of that call's block."""
        position = call.get("index")
        if not isinstance(position, int):
            # Servers that omit the index send whole calls: a new id is a new call, else the last one continues.
            position = len(self.tool_blocks) if call.get("id") or not self.tool_blocks else len(self.tool_blocks) - 1
        function = call.get("function") or {}
        frames: list[bytes] = []
        if position not in self.tool_blocks:
            frames.extend(self._open("tool_use", {"type": "tool_use", "id": call.get("id") or "",
                                                  "name": function.get("name") or "", "input": {}}))
            self.tool_blocks[position] = self.block
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            frames.append(frame("content_block_delta", {
                "type": "content_block_delta", "index": self.tool_blocks[position],
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            }))
        return frames
