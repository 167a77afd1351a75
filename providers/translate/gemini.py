"""OpenAI chat and embedding requests as Gemini `generateContent` / `embedContent` requests.

Shared by the Gemini API and Vertex AI adapters, whose request bodies are the same. The rules:

- `system` (and `developer`) messages become `systemInstruction`, wherever they stand;
- `assistant` turns become `model` turns, `user` and `tool` turns `user` turns, and consecutive
  turns of one role are merged (Gemini wants them alternating; parallel tool results share one turn);
- image parts: data URLs become `inlineData`, `gs://` and `https://` URLs `fileData`; `file` parts
  (base64 PDFs in `file_data`, or a provider file URI in `file_id`) likewise, with `format` as the
  MIME type (how a managed file's copy arrives: a Files API URI, or `gs://` on Vertex AI); `input_audio` inline;
- assistant `tool_calls` become `functionCall` parts, `tool` messages `functionResponse` parts
  (the function name found from the matching call id);
- Gemini's `thoughtSignature` on a function call travels inside the tool call id we hand out
  (`call_<id>__thought__<signature>`), so a client replaying the conversation sends it back intact.
"""
from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from providers.errors import InvalidRequestError
from providers.translate.gemini_schema import clean_schema, has_parameters
from providers.translate.prompt import message_text

THOUGHT_SIGNATURE_MARKER = "__thought__"
SYSTEM_ROLES = frozenset({"system", "developer"})
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# OpenAI `reasoning_effort` as a Gemini thinking budget (tokens); "none" turns thinking off where allowed.
THINKING_BUDGETS = {"none": 0, "minimal": 128, "low": 1024, "medium": 8192, "high": 24576}
# Gemini-native fields a client may send through the OpenAI SDK's `extra_body`, copied as they are.
NATIVE_FIELDS = {"safety_settings": "safetySettings", "safetySettings": "safetySettings",
                 "cached_content": "cachedContent", "cachedContent": "cachedContent", "labels": "labels"}
# Tools Gemini runs itself (search grounding, code execution), passed through untouched.
NATIVE_TOOL_KEYS = frozenset({"googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval",
                              "codeExecution", "code_execution", "urlContext", "url_context"})


def generate_content_request(body: dict) -> dict[str, Any]:
    """The `generateContent` body for an OpenAI chat request (the model goes in the URL, not here)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty list.", param="messages")
    system_parts, contents = _contents(messages)
    if not contents:
        raise InvalidRequestError("The conversation has no user or assistant turn for Gemini to answer.",
                                  param="messages")
    request: dict[str, Any] = {"contents": contents}
    if system_parts:
        request["systemInstruction"] = {"parts": system_parts}
    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config:
        request["toolConfig"] = tool_config
    generation_config = _generation_config(body)
    if generation_config:
        request["generationConfig"] = generation_config
    for name, native in NATIVE_FIELDS.items():
        if body.get(name) is not None:
            request[native] = body[name]
    return request


# --- turns ------------------------------------------------------------------------------------------

def _contents(messages: list) -> tuple[list[dict], list[dict]]:
    system_parts: list[dict] = []
    contents: list[dict] = []
    call_names: dict[str, str] = {}
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{position}] must be an object.", param=f"messages[{position}]")
        role = message.get("role")
        if role in SYSTEM_ROLES:
            text = message_text(message.get("content"))
            if text:
                system_parts.append({"text": text})
            continue
        if role == "assistant":
            gemini_role, parts = "model", _assistant_parts(message, call_names, position)
        elif role in ("tool", "function"):
            gemini_role, parts = "user", [_function_response(message, call_names, position)]
        elif role == "user":
            gemini_role, parts = "user", _user_parts(message.get("content"), position)
        else:
            raise InvalidRequestError(f"messages[{position}].role '{role}' is not a chat role.",
                                      param=f"messages[{position}].role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system_parts, contents


def _user_parts(content: Any, position: int) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequestError(f"messages[{position}].content must be a string or a list of parts.",
                                  param=f"messages[{position}].content")
    parts = []
    for index, part in enumerate(content):
        translated = _content_part(part, f"messages[{position}].content[{index}]")
        if translated is not None:
            parts.append(translated)
    return parts


def _content_part(part: Any, where: str) -> dict | None:
    if not isinstance(part, dict):
        raise InvalidRequestError(f"{where} must be an object.", param=where)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        return {"text": text} if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        mime = image.get("format") if isinstance(image, dict) else None
        return _media_part(url, mime, "image/jpeg", where)
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        if file.get("file_data"):
            return _media_part(file["file_data"], file.get("format"), "application/pdf", where, raw_base64=True)
        if file.get("file_id"):
            uri = str(file["file_id"])
            return {"fileData": {"mimeType": file.get("format") or _guess_mime(uri, "application/pdf"),
                                 "fileUri": uri}}
        raise InvalidRequestError(f"{where}.file needs 'file_data' or 'file_id'.", param=where)
    if kind == "input_audio":
        audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
        if not audio.get("data"):
            raise InvalidRequestError(f"{where}.input_audio needs 'data'.", param=where)
        return {"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio["data"]}}
    raise InvalidRequestError(f"{where}: content part type '{kind}' is not supported by Gemini.", param=where)


def _media_part(url: Any, mime: str | None, default_mime: str, where: str, *, raw_base64: bool = False) -> dict:
    """A data URL inline; a `gs://` or web URL by reference (Gemini fetches it); raw base64 inline when allowed."""
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where} has no URL or data.", param=where)
    if url.startswith("data:"):
        header, separator, data = url.partition(",")
        if not separator or ";base64" not in header:
            raise InvalidRequestError(f"{where}: only base64 data URLs are supported.", param=where)
        return {"inlineData": {"mimeType": mime or header[5:].split(";", 1)[0] or default_mime, "data": data}}
    if url.startswith(("gs://", "https://", "http://")):
        return {"fileData": {"mimeType": mime or _guess_mime(url, default_mime), "fileUri": url}}
    if raw_base64:
        return {"inlineData": {"mimeType": mime or default_mime, "data": url}}
    raise InvalidRequestError(f"{where}: the URL must be a data URL, gs:// or https://.", param=where)


def _guess_mime(uri: str, default: str) -> str:
    guessed, _ = mimetypes.guess_type(uri.split("?", 1)[0])
    return guessed or default


def _assistant_parts(message: dict, call_names: dict[str, str], position: int) -> list[dict]:
    parts = []
    text = message_text(message.get("content"))
    if text:
        parts.append({"text": text})
    for index, call in enumerate(message.get("tool_calls") or []):
        where = f"messages[{position}].tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequestError(f"{where} needs a function name.", param=where)
        call_id = str(call.get("id") or "")
        call_names[call_id] = function["name"]
        part: dict[str, Any] = {"functionCall": {"name": function["name"],
                                                "args": _arguments(function.get("arguments"), where)}}
        _, marker, signature = call_id.partition(THOUGHT_SIGNATURE_MARKER)
        if marker and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and legacy.get("name"):
        parts.append({"functionCall": {"name": legacy["name"],
                                       "args": _arguments(legacy.get("arguments"), f"messages[{position}]")}})
    return parts


def _arguments(arguments: Any, where: str) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if arguments in (None, ""):
        return {}
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(f"{where}: function arguments must be a JSON object.", param=where)
    return parsed


def _function_response(message: dict, call_names: dict[str, str], position: int) -> dict:
    call_id = str(message.get("tool_call_id") or "")
    name = call_names.get(call_id) or message.get("name")
    if not name:
        raise InvalidRequestError(
            f"messages[{position}]: no earlier assistant tool call has the id '{call_id}', so Gemini cannot "
            "be told which function answered.", param=f"messages[{position}].tool_call_id")
    content = message.get("content")
    text = content if isinstance(content, str) else message_text(content)
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = text
    response = parsed if isinstance(parsed, dict) else {"content": parsed}
    return {"functionResponse": {"name": name, "response": response}}


# --- tools and generation settings ------------------------------------------------------------------

def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        return []
    declarations = []
    native = []
    for index, tool in enumerate(tools):
        if isinstance(tool, dict) and NATIVE_TOOL_KEYS & tool.keys():
            native.append(tool)
            continue
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequestError(f"tools[{index}] must be a function with a name.", param=f"tools[{index}]")
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = clean_schema(function.get("parameters"))
        if has_parameters(parameters):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    result = [{"functionDeclarations": declarations}] if declarations else []
    return result + native


def _tool_config(choice: Any) -> dict | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = TOOL_CHOICE_MODES.get(choice)
        if mode is None:
            raise InvalidRequestError(f"tool_choice '{choice}' is not one of auto, none, required.",
                                      param="tool_choice")
        return {"functionCallingConfig": {"mode": mode}}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and function.get("name"):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [function["name"]]}}
    raise InvalidRequestError("tool_choice must be a string or {'type': 'function', 'function': {'name': ...}}.",
                              param="tool_choice")


def _generation_config(body: dict) -> dict[str, Any]:
    config: dict[str, Any] = {}
    simple = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("n", "candidateCount"),
              ("seed", "seed"), ("presence_penalty", "presencePenalty"),
              ("frequency_penalty", "frequencyPenalty"))
    for openai_name, gemini_name in simple:
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    _response_format(body.get("response_format"), config)
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise InvalidRequestError(f"reasoning_effort '{effort}' is not one of {', '.join(THINKING_BUDGETS)}.",
                                      param="reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    return config


def _response_format(response_format: Any, config: dict) -> None:
    if not isinstance(response_format, dict):
        return
    kind = response_format.get("type")
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        config["responseMimeType"] = "application/json"
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            config["responseSchema"] = clean_schema(schema)
    elif kind not in (None, "text"):
        raise InvalidRequestError(f"response_format type '{kind}' is not supported.", param="response_format")


# --- embeddings ---------------------------------------------------------------------------------------

def embedding_inputs(body: dict) -> tuple[list[str], bool]:
    """The texts to embed and whether the client sent a single one (Gemini embeds text, not token ids)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value), False
    raise InvalidRequestError("'input' must be a string or a non-empty list of strings for Gemini embeddings.",
                              param="input")


def embed_content_request(model: str, text: str, body: dict) -> dict[str, Any]:
    """One `embedContent` request (also one entry of `batchEmbedContents`)."""
    request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
    if body.get("dimensions") is not None:
        request["outputDimensionality"] = body["dimensions"]
    task_type = body.get("task_type") or body.get("taskType")
    if task_type:
        request["taskType"] = task_type
    return request
