"""What a proxied call used and what is recorded about it.

Tokens come from the provider's own `usage` object: for plain answers from the already parsed body
(no second JSON pass), for streams from the one chunk that carries it. Finding that chunk must not
cost a parse per chunk, so `chunk_usage` first looks for the bytes `"usage"` followed by an object
and parses only a chunk that has them. A provider that reports nothing counts as zero tokens: the
gateway does not guess with a tokenizer, so a price is never invented (the log says 0, not a guess).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from keys.choices import RequestStatus

USAGE_KEY = b'"usage"'
JSON_WHITESPACE = b" \t\r\n"
# Operations whose streams can report usage when asked with `stream_options.include_usage`.
STREAM_USAGE_OPERATIONS = frozenset({"chat", "completions"})
# Azure OpenAI accepts `stream_options` from this API version on; older versions answer 400 to it.
AZURE_STREAM_USAGE_SINCE = "2024-09-01"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call used, as the provider counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


NO_USAGE = Usage()


def usage_from_object(usage: Any) -> Usage:
    """A provider's `usage` object as `Usage`; anything malformed counts as nothing.

    Embeddings report only `prompt_tokens` and `total_tokens`; a missing total is the sum.
    """
    if not isinstance(usage, dict):
        return NO_USAGE
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    total = _count(usage.get("total_tokens")) or prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def usage_from_body(parsed: dict) -> Usage:
    """The usage of a whole (non-streamed) answer: chat, completions, embeddings; moderations have none."""
    return usage_from_object(parsed.get("usage"))


@dataclass(frozen=True, slots=True)
class ChunkUsage:
    """A stream chunk that carried usage, and whether it carried nothing else (`choices: []`)."""

    usage: Usage
    usage_only: bool


def chunk_usage(data: bytes) -> ChunkUsage | None:
    """The usage a stream chunk carries, or None; parses the chunk only when its bytes say it has some.

    OpenAI sends `"usage": null` on every chunk once usage is requested, and the object only on the
    last one: a `"usage"` key followed by anything but `{` is skipped without parsing.
    """
    position = data.find(USAGE_KEY)
    if position < 0:
        return None
    position += len(USAGE_KEY)
    length = len(data)
    while position < length and data[position] in JSON_WHITESPACE:
        position += 1
    if position >= length or data[position] != 58:  # ":"
        return None
    position += 1
    while position < length and data[position] in JSON_WHITESPACE:
        position += 1
    if position >= length or data[position] != 123:  # "{"
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
        return None
    return ChunkUsage(usage=usage_from_object(chunk["usage"]), usage_only=not chunk.get("choices"))


def client_wants_stream_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def body_requesting_stream_usage(body: dict) -> dict:
    """The body with `stream_options.include_usage` set, the client's other stream options kept."""
    options = body.get("stream_options")
    return {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}


def stream_usage_supported(*, provider: str, params: dict, model_info: dict) -> bool:
    """May this deployment be sent `stream_options.include_usage`? Yes, unless the operator said no
    (`model_info.stream_usage: false`) or it is an Azure deployment pinned to an API version older than
    the option (whose 400 would fail the whole stream)."""
    explicit = model_info.get("stream_usage")
    if isinstance(explicit, bool):
        return explicit
    if provider == "azure":
        version = params.get("api_version")
        if isinstance(version, str) and version[:1].isdigit() and version < AZURE_STREAM_USAGE_SINCE:
            return False
    return True


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


@dataclass(slots=True)
class UsageRecord:
    """One proxied request as it will become a `RequestLog` row (and count towards spend).

    Built on the request path from values already in memory; turned into rows by the log buffer's
    flush, off the request path. `started_at` is epoch seconds.
    """

    request_id: str
    started_at: float
    operation: str
    key_id: str = ""
    key_alias: str = ""
    team_id: str = ""
    user_id: str = ""
    model_group: str = ""
    deployment_id: str = ""
    provider: str = ""
    provider_model: str = ""
    streamed: bool = False
    status: str = RequestStatus.OK
    status_code: int = 200
    error_type: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    attempts: int = 0
    fallbacks: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == RequestStatus.OK
