"""Anthropic Messages -> OpenAI chat and back, for the `/v1/messages` surface on non-Anthropic models.

The reverse of `translate/anthropic.py`: here the client speaks Anthropic and the deployment speaks
OpenAI. A request becomes a chat request for the same model group (system blocks to a system message,
`tool_result` blocks to `tool` messages placed right after the assistant turn that called them,
`tool_use` blocks to `tool_calls`, images and PDFs to `image_url` / `file` parts, tools and
`tool_choice` to OpenAI's); the chat completion comes back as an Anthropic message. Streams are
translated in `translate/anthropic_inbound_stream.py`.

A structured-output request (`output_config.format`, or the older top-level `output_format`) becomes
`response_format` with the same JSON schema. Anthropic-only settings with no OpenAI meaning are not
forwarded: `thinking` and `output_config.effort` (a reasoning budget most OpenAI-format models would
refuse), `cache_control` marks, `service_tier` (its values differ from OpenAI's), and Anthropic's
account and platform settings (`container`, `mcp_servers`, `context_management`, `inference_geo`,
`speed`, `diagnostics`, `user_profile_id`, `workspace_id`). Anything else unknown passes through
untouched (`temperature`, `top_p`, `top_k`...), as on the OpenAI endpoints.
"""
from __future__ import annotations

from typing import Any

import orjson

from providers.errors import InvalidRequestError

# Anthropic fields consumed here (translated into chat fields, or meaningless outside Anthropic).
TRANSLATED_FIELDS = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "tools", "tool_choice",
                               "metadata", "stream", "output_config", "output_format"})
ANTHROPIC_ONLY_FIELDS = frozenset({"thinking", "cache_control", "service_tier", "container", "mcp_servers",
                                   "context_management", "inference_geo", "speed", "diagnostics", "user_profile_id",
                                   "workspace_id"})
# The name OpenAI's `response_format.json_schema` needs; Anthropic's output format has none.
OUTPUT_SCHEMA_NAME = "output"

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    """OpenAI's `finish_reason` as Anthropic's `stop_reason` (an unknown or missing one ends the turn)."""
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


# --- request --------------------------------------------------------------------------------------

def chat_request(body: dict) -> dict:
    """An Anthropic Messages request (already validated for its shape) as an OpenAI chat request."""
    messages: list[dict] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system, "system")})
    for index, message in enumerate(body["messages"]):
        if message["role"] == "assistant":
            messages.append(_assistant_message(message.get("content"), index))
        else:
            messages.extend(_user_messages(message.get("content"), index))
    request: dict[str, Any] = {"model": body["model"], "messages": messages}
    for name, value in body.items():
        if name not in TRANSLATED_FIELDS and name not in ANTHROPIC_ONLY_FIELDS:
            request[name] = value
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        request["stop"] = body["stop_sequences"]
    if body.get("stream") is True:
        request["stream"] = True
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        request["user"] = metadata["user_id"]
    tools = body.get("tools")
    if tools:
        request["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
    _add_tool_choice(request, body.get("tool_choice"), has_tools=bool(tools))
    output = body.get("output_config")
    output_format = output.get("format") if isinstance(output, dict) else body.get("output_format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        request["response_format"] = {"type": "json_schema", "json_schema": {
            "name": OUTPUT_SCHEMA_NAME, "schema": output_format.get("schema") or {}}}
    return request


def _text_of(content, where: str) -> str:
    """A string, or the text of a list of text blocks (Anthropic's `system` may be either)."""
    if isinstance(content, str):
        return content
    texts = []
    for position, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequestError(f"{where}[{position}] must be a text block.", param=f"{where}[{position}]",
                                      code="invalid_value")
        texts.append(block["text"])
    return "\n".join(texts)


def _user_messages(content, index: int) -> list[dict]:
    """One user turn: its `tool_result` blocks as `tool` messages first (OpenAI wants them right after the
    assistant's calls), then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict] = []
    parts: list[dict] = []
    for position, block in enumerate(content):
        where = f"messages[{index}].content[{position}]"
        kind = block.get("type")
        if kind == "tool_result":
            tool_messages.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""),
                                  "content": _tool_result_text(block.get("content"), where)})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind in ("image", "document") and isinstance(block.get("source"), dict) \
                and block["source"].get("type") == "file":
            # An uploaded file, quoted by id: OpenAI's file part by id (a Gatehouse id is resolved per deployment).
            parts.append({"type": "file", "file": {"file_id": block["source"].get("file_id")}})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _source_url(block.get("source"), where)}})
        elif kind == "document":
            parts.append(_document_part(block, where))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _unsupported_block(kind, where)
    messages = tool_messages
    if parts:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        messages.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return messages


def _assistant_message(content, index: int) -> dict:
    """An assistant turn: its text blocks joined, its `tool_use` blocks as `tool_calls`; thinking dropped."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict] = []
    for position, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": str(block.get("id") or ""), "type": "function",
                          "function": {"name": str(block.get("name") or ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _unsupported_block(kind, f"messages[{index}].content[{position}]")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result_text(content, where: str) -> str:
    """A tool result as the string a `tool` message carries: its text blocks joined (images cannot follow)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or an array of blocks.",
                                  param=f"{where}.content", code="invalid_type")
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(block.get("text") or "")
        else:
            kind = block.get("type") if isinstance(block, dict) else None
            raise _unsupported_block(kind, f"{where}.content", detail="inside a tool_result")
    return "\n".join(texts)


def _source_url(source, where: str) -> str:
    """An image source as a URL: base64 data becomes a data URL, a URL stays one."""
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise InvalidRequestError(f"{where}.source must be a base64 or url source.", param=f"{where}.source",
                              code="invalid_value")


def _document_part(block: dict, where: str) -> dict:
    """A document: a base64 PDF becomes a `file` part, a plain-text one its text."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        file: dict[str, Any] = {"file_data": f"data:{media_type};base64,{source['data']}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    if isinstance(source, dict) and source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    raise InvalidRequestError(
        f"{where}: only base64 and text documents can be sent to a model that is not Anthropic's.",
        param=f"{where}.source", code="unsupported_content")


def _unsupported_block(kind, where: str, detail: str = "") -> InvalidRequestError:
    context = f" {detail}" if detail else ""
    return InvalidRequestError(
        f"{where}: content blocks of type {kind!r}{context} cannot be sent to a model that is not Anthropic's.",
        param=where, code="unsupported_content")


def _tool(tool: dict, index: int) -> dict:
    """A custom tool as an OpenAI function; Anthropic's server tools (web search, bash...) have no equivalent."""
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequestError(
            f"tools[{index}]: the server tool {tool.get('type')!r} is only available on Anthropic models.",
            param=f"tools[{index}]", code="unsupported_tool")
    function: dict[str, Any] = {"name": tool.get("name"),
                                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _add_tool_choice(request: dict, choice, *, has_tools: bool) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        request["tool_choice"] = "auto"
    elif kind == "any":
        request["tool_choice"] = "required"
    elif kind == "tool":
        request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind == "none":
        request["tool_choice"] = "none"
    if choice.get("disable_parallel_tool_use") is True and has_tools:
        request["parallel_tool_calls"] = False


# --- answer ---------------------------------------------------------------------------------------

def message_id(completion_id) -> str:
    """An Anthropic-looking message id that still names the provider's completion."""
    text = str(completion_id or "")
    if text.startswith("msg_"):
        return text
    return "msg_" + (text.removeprefix("chatcmpl-") or "gatehouse")


def anthropic_usage(usage) -> dict:
    """OpenAI's usage as Anthropic's: cached prompt tokens are reported as cache reads, not input."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {"input_tokens": max(0, prompt - cached), "output_tokens": _count(usage.get("completion_tokens")),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def anthropic_message(completion: dict, model: str) -> dict:
    """A chat completion (its first choice) as an Anthropic message object."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict] = []
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(part.get("text") or "" for part in text if isinstance(part, dict))
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "",
                        "input": tool_input(function.get("arguments"))})
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def tool_input(arguments) -> dict:
    """A tool call's JSON arguments as the object Anthropic's `input` must be ({} when they are not one)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# --- token estimate (count_tokens on models that cannot count) ------------------------------------

CHARACTERS_PER_TOKEN = 4
# What one image or PDF costs, whatever its size: about what Anthropic charges for a large image.
MEDIA_TOKENS = 1600
# Role markers and separators around each message.
MESSAGE_OVERHEAD_TOKENS = 3


def estimate_input_tokens(body: dict) -> int:
    """An estimate of a Messages request's input tokens, for models whose provider cannot count them.

    A token per four characters of text (the system prompt, every text, tool call and tool result, the
    tool definitions as JSON), a flat `MEDIA_TOKENS` per image or base64 document, and a few tokens per
    message. Tokenizers differ by model; this is the common rule of thumb for English text and code.
    """
    characters = 0
    media = 0
    system = body.get("system")
    if isinstance(system, str):
        characters += len(system)
    elif isinstance(system, list):
        characters += sum(len(block.get("text") or "") for block in system if isinstance(block, dict))
    messages = body.get("messages") or []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            characters += len(content)
            continue
        for block in content or []:
            counted, images = _block_size(block)
            characters += counted
            media += images
    tools = body.get("tools")
    if tools:
        characters += len(orjson.dumps(tools))
    overhead = MESSAGE_OVERHEAD_TOKENS * len(messages)
    return max(1, -(-characters // CHARACTERS_PER_TOKEN) + media * MEDIA_TOKENS + overhead)


def _block_size(block) -> tuple[int, int]:
    """(characters of text, media items) in one content block."""
    if not isinstance(block, dict):
        return 0, 0
    kind = block.get("type")
    if kind == "text":
        return len(block.get("text") or ""), 0
    if kind == "tool_use":
        return len(str(block.get("name") or "")) + len(orjson.dumps(block.get("input") or {})), 0
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return len(content), 0
        sizes = [_block_size(inner) for inner in content or []]
        return sum(size for size, _ in sizes), sum(count for _, count in sizes)
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return len(source.get("data") or ""), 0
        return 0, 1
    if kind == "image":
        return 0, 1
    return 0, 0
