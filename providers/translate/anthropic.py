"""OpenAI chat <-> Anthropic Messages: requests one way, answers and errors the other.

Anthropic differs from OpenAI in ways a client must never notice: the system prompt is a top-level
field, turns must alternate (consecutive same-role messages are merged), tool results are blocks
inside a user turn, `max_tokens` is required, and structured output has no dedicated switch (a
forced tool whose input schema is the requested schema stands in for it, and its input comes back as
the message's content). Streamed answers are translated in `translate/anthropic_stream.py`, error
answers in `translate/anthropic_errors.py`. A `file` part quoting a `file_id` (a managed file's copy
in Anthropic's Files API) becomes a `document` or `image` block whose source is that file.
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from providers.base import GATEWAY_ONLY_FIELDS
from providers.errors import InvalidRequestError

# Anthropic refuses a request without `max_tokens`; LiteLLM sends 4096 when the client gave none, and so
# do we (every current Claude model allows at least that). A deployment may set its own `max_tokens`.
DEFAULT_MAX_TOKENS = 4096
# The forced tool that carries a `response_format` answer; its input is returned as the message content.
ANSWER_TOOL = "json_tool_call"
# `reasoning_effort` as an extended-thinking budget, in tokens.
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# OpenAI fields this module translates into Anthropic's (or consumes).
TRANSLATED_FIELDS = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop", "temperature",
    "top_p", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
})
# OpenAI fields that are hints about OpenAI's own service; Anthropic would reject them, and no answer changes.
OPENAI_HINT_FIELDS = frozenset({"store", "service_tier", "prompt_cache_key", "safety_identifier"})
# OpenAI fields that would change the answer and that Anthropic cannot honour (`drop_params` decides).
UNSUPPORTED_FIELDS = frozenset({
    "logit_bias", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed", "n", "audio",
    "modalities", "prediction", "functions", "function_call", "web_search_options", "verbosity",
})


# --- requests --------------------------------------------------------------------------------------

def messages_request(body: dict, model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """An Anthropic Messages request from an OpenAI chat body.

    Fields this module does not know are Anthropic's own (`top_k`, `thinking`, ... sent through
    `extra_body`) and pass through untouched; OpenAI-only fields are never forwarded.
    """
    system, messages = translate_messages(body.get("messages") or [])
    request: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        request["system"] = system
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    request["max_tokens"] = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else default_max_tokens
    stop = body.get("stop")
    stop_sequences = [stop] if isinstance(stop, str) else list(stop) if isinstance(stop, list) else []
    # Anthropic refuses whitespace-only stop sequences; OpenAI clients send "\n" happily.
    stop_sequences = [item for item in stop_sequences if isinstance(item, str) and item.strip()]
    if stop_sequences:
        request["stop_sequences"] = stop_sequences
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if isinstance(body.get("user"), str) and body["user"]:
        request["metadata"] = {"user_id": body["user"]}
    _add_tools(request, body)
    effort = body.get("reasoning_effort")
    if effort in THINKING_BUDGETS and "thinking" not in body:
        budget = THINKING_BUDGETS[effort]
        request["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if request["max_tokens"] <= budget:
            request["max_tokens"] = budget + default_max_tokens
    for name, value in body.items():
        if name not in TRANSLATED_FIELDS and name not in OPENAI_HINT_FIELDS and name not in UNSUPPORTED_FIELDS \
                and name not in GATEWAY_ONLY_FIELDS:
            request[name] = value
    return request


def answer_tool_requested(body: dict) -> bool:
    """Does this request ask for structured output (answered through the forced `ANSWER_TOOL`)?"""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object")


def _add_tools(request: dict, body: dict) -> None:
    tools = [_tool(tool) for tool in body.get("tools") or [] if isinstance(tool, dict)]
    choice = _tool_choice(body.get("tool_choice"))
    if answer_tool_requested(body):
        response_format = body["response_format"]
        schema = ((response_format.get("json_schema") or {}).get("schema")
                  if response_format["type"] == "json_schema" else None) or {"type": "object"}
        tools.append({"name": ANSWER_TOOL, "description": "Respond with a JSON value that matches this schema.",
                      "input_schema": schema})
        # Alone (or with the client's tools switched off) the answer tool is forced; beside the client's
        # tools the model must call one of them; a client's named or required choice stands.
        if len(tools) == 1 or (choice is not None and choice["type"] == "none"):
            choice = {"type": "tool", "name": ANSWER_TOOL}
        elif choice is None or choice["type"] == "auto":
            choice = {"type": "any"}
    if not tools:
        return  # Anthropic refuses a tool_choice without tools.
    request["tools"] = tools
    if body.get("parallel_tool_calls") is False:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        request["tool_choice"] = choice


def _tool(tool: dict) -> dict:
    """An OpenAI function tool as an Anthropic tool; Anthropic's own tool types (web search...) pass through."""
    if tool.get("type") != "function":
        return tool
    function = tool.get("function") or {}
    translated = {"name": function.get("name"),
                  "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        translated["description"] = function["description"]
    if "cache_control" in tool:
        translated["cache_control"] = tool["cache_control"]
    return translated


def _tool_choice(choice) -> dict | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    raise InvalidRequestError("'tool_choice' must be 'auto', 'required', 'none' or a named function.",
                              param="tool_choice", code="invalid_value")


def translate_messages(messages: list) -> tuple[list[dict], list[dict]]:
    """The system blocks and the alternating user/assistant turns Anthropic expects."""
    system: list[dict] = []
    turns: list[dict] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{index}] must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content"), index, text_only=True))
            continue
        if role in ("tool", "function"):
            result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id") or message.get("name")}
            content = message.get("content")
            result["content"] = content if isinstance(content, str) else _blocks(content, index)
            _append(turns, "user", [result])
        elif role == "user":
            _append(turns, "user", _blocks(message.get("content"), index))
        elif role == "assistant":
            blocks = _blocks(message.get("content"), index)
            for position, call in enumerate(message.get("tool_calls") or []):
                blocks.append(_tool_use(call, index, position))
            _append(turns, "assistant", blocks)
        else:
            raise InvalidRequestError(f"messages[{index}].role {role!r} cannot be sent to an Anthropic model.",
                                      param=f"messages[{index}].role", code="invalid_value")
    return system, turns


def _append(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Add blocks as a turn of `role`, merged into the previous turn when it has the same role."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _tool_use(call: dict, index: int, position: int) -> dict:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            f"messages[{index}].tool_calls[{position}].function.arguments is not valid JSON.",
            param=f"messages[{index}].tool_calls[{position}].function.arguments", code="invalid_value") from None
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": parsed if isinstance(parsed, dict) else {}}


def _blocks(content, index: int, *, text_only: bool = False) -> list[dict]:
    """A message's content as Anthropic blocks; empty text (which Anthropic refuses) is left out."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for position, part in enumerate(content):
        block = _block(part, f"messages[{index}].content[{position}]", text_only)
        if block is not None:
            blocks.append(block)
    return blocks


def _block(part, where: str, text_only: bool) -> dict | None:
    if isinstance(part, str):
        return {"type": "text", "text": part} if part else None
    if not isinstance(part, dict):
        raise InvalidRequestError(f"{where} must be an object.", param=where, code="invalid_type")
    kind = part.get("type")
    if kind == "text":
        if not part.get("text"):
            return None
        block = {"type": "text", "text": part["text"]}
    elif text_only:
        raise InvalidRequestError(f"{where}: system messages may only contain text.", param=where,
                                  code="invalid_value")
    elif kind == "image_url":
        image = part.get("image_url")
        block = _media_block(image.get("url") if isinstance(image, dict) else image, where)
    elif kind == "file":
        file = part.get("file") or {}
        if file.get("file_data"):
            data = file["file_data"]
            block = _media_block(data if data.startswith("data:") else f"data:application/pdf;base64,{data}", where)
        elif isinstance(file.get("file_id"), str) and file["file_id"]:
            block = file_block(file["file_id"], file.get("format"))
        else:
            raise InvalidRequestError(
                f"{where}: Anthropic models take files as `file.file_data` (base64) or `file.file_id` "
                "(an Anthropic file id).", param=where, code="invalid_value")
    elif kind == "refusal":
        return None
    else:
        raise InvalidRequestError(f"{where}: content parts of type {kind!r} cannot be sent to an Anthropic model.",
                                  param=where, code="invalid_value")
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def file_block(file_id: str, mime_type: str | None) -> dict:
    """A file held by Anthropic's Files API: an `image` block for pictures, a `document` block otherwise.

    Anthropic reads PDFs and plain text as documents; other types are its to refuse, with its own words.
    """
    kind = "image" if isinstance(mime_type, str) and mime_type.startswith("image/") else "document"
    return {"type": kind, "source": {"type": "file", "file_id": file_id}}


def uses_files_api(messages) -> bool:
    """Does an Anthropic-format message list quote a Files API file (which needs the files beta header)?

    Walks only list contents (and tool results' lists), so a request without blocks costs a type check.
    """
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and _blocks_use_files(content):
            return True
    return False


def _blocks_use_files(blocks: list) -> bool:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "file":
            return True
        nested = block.get("content")
        if isinstance(nested, list) and _blocks_use_files(nested):
            return True
    return False


def _media_block(url, where: str) -> dict:
    """A data URL as a base64 image or PDF document block; an http(s) URL as an image fetched by Anthropic."""
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where} has no URL.", param=where, code="invalid_value")
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, _, data = url.partition(",")
    media_type = header[5:].split(";", 1)[0]
    if ";base64" not in header or not data:
        raise InvalidRequestError(f"{where}: data URLs must be base64-encoded.", param=where, code="invalid_value")
    source = {"type": "base64", "media_type": media_type, "data": data}
    if media_type == "application/pdf":
        return {"type": "document", "source": source}
    if media_type.startswith("image/"):
        return {"type": "image", "source": source}
    raise InvalidRequestError(f"{where}: Anthropic models do not accept {media_type or 'this'} data.",
                              param=where, code="invalid_value")


# --- answers ---------------------------------------------------------------------------------------

def chat_completion(message: dict, *, answer_tool: bool) -> dict:
    """An Anthropic message as an OpenAI `chat.completion` (one choice, usage mapped)."""
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
        elif kind == "tool_use" and answer_tool and block.get("name") == ANSWER_TOOL:
            texts.append(orjson.dumps(block.get("input")).decode())
        elif kind == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"),
                                            "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    return {
        "id": message.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or "",
        "choices": [{"index": 0, "message": reply,
                     "finish_reason": finish_reason(message.get("stop_reason"), has_tool_calls=bool(tool_calls)),
                     "logprobs": None}],
        "usage": openai_usage(message.get("usage")),
    }


def finish_reason(stop_reason: str | None, *, has_tool_calls: bool) -> str:
    """Anthropic's `stop_reason` in OpenAI's words; a `tool_use` that was only the answer tool is a plain stop."""
    if stop_reason == "tool_use" and not has_tool_calls:
        return "stop"
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def openai_usage(usage: dict | None) -> dict:
    """Anthropic's usage as OpenAI's: cache writes and reads are prompt tokens too (and billed as such)."""
    usage = usage if isinstance(usage, dict) else {}
    cache_read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cache_read
    completion = usage.get("output_tokens") or 0
    mapped = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cache_read:
        mapped["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return mapped
