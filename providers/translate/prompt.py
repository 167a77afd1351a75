"""Chat <-> legacy text completion, for models that only have `/completions`."""
from __future__ import annotations


def message_text(content) -> str:
    """The text of a message's content, whether a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def prompt_from_messages(messages: list) -> str:
    """A plain prompt from chat turns: one `role: text` line each, ending with the assistant's turn."""
    lines = [f"{message.get('role', 'user')}: {message_text(message.get('content'))}"
             for message in messages if isinstance(message, dict)]
    lines.append("assistant:")
    return "\n".join(lines)


def chat_from_completion(completion: dict) -> dict:
    """A `text_completion` object re-shaped as a `chat.completion`."""
    choices = [
        {
            "index": choice.get("index", index),
            "message": {"role": "assistant", "content": (choice.get("text") or "").lstrip()},
            "finish_reason": choice.get("finish_reason") or "stop",
            "logprobs": None,
        }
        for index, choice in enumerate(completion.get("choices") or [])
    ]
    result = {
        "id": completion.get("id") or "chatcmpl-unknown",
        "object": "chat.completion",
        "created": completion.get("created") or 0,
        "model": completion.get("model") or "",
        "choices": choices,
    }
    if completion.get("usage") is not None:
        result["usage"] = completion["usage"]
    return result


def chat_chunk_from_completion_chunk(chunk: dict, *, first: bool, created: int) -> dict:
    """One streamed `text_completion` chunk as a `chat.completion.chunk`."""
    choices = []
    for index, choice in enumerate(chunk.get("choices") or []):
        delta: dict = {"content": choice.get("text") or ""}
        if first:
            delta["role"] = "assistant"
        choices.append({"index": choice.get("index", index), "delta": delta,
                        "finish_reason": choice.get("finish_reason"), "logprobs": None})
    result = {
        "id": chunk.get("id") or "chatcmpl-unknown",
        "object": "chat.completion.chunk",
        "created": chunk.get("created") or created,
        "model": chunk.get("model") or "",
        "choices": choices,
    }
    if chunk.get("usage") is not None:
        result["usage"] = chunk["usage"]
    return result
