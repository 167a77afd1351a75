"""The answers the OpenAI fake gives to chat, completions and embeddings calls, as plain objects.

Shared by the direct endpoints and by batches (each batch line is answered as the same call would
be), so a test can compare the two. `fake` is the `FakeOpenAI` whose scripted reply and embedding
size the answers use.
"""
from __future__ import annotations

import base64
import struct
import uuid


def _vector(text: str, dimensions: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [struct.unpack("<f", struct.pack("<f", ((seed * (i + 1)) % 97) / 97.0))[0] for i in range(dimensions)]


CHAT_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
COMPLETION_USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def chat_message(fake, body: dict) -> tuple[dict, str]:
    """The assistant message and finish reason: a tool call when tools are offered, else the fake's reply."""
    tools = body.get("tools") or []
    if tools and body.get("tool_choice") != "none":
        call = {"id": "call_fake_1", "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": '{"city": "Paris"}'}}
        return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}, "tool_calls"
    return {"role": "assistant", "content": fake.reply, "refusal": None}, "stop"


def chat_completion(fake, body: dict, completion_id: str | None = None) -> dict:
    """A whole chat completion for `body`."""
    message, finish = chat_message(fake, body)
    return {"id": completion_id or f"chatcmpl-fake-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": 1700000000, "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": dict(CHAT_USAGE), "system_fingerprint": "fp_fake"}


def text_completion(fake, body: dict) -> dict:
    """A whole legacy completion for `body`."""
    return {"id": f"cmpl-fake-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": 1700000000,
            "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "text": " " + fake.reply, "finish_reason": "stop", "logprobs": None}],
            "usage": dict(COMPLETION_USAGE)}


def embeddings_list(fake, body: dict) -> dict:
    """Deterministic embeddings of every input (floats, or base64 when asked)."""
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(str(item), body.get("dimensions") or fake.embedding_dimensions)
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        else:
            data.append({"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
