"""OpenAI batches <-> Anthropic Message Batches: requests, the batch object, and result lines.

A Gatehouse batch part on an Anthropic deployment becomes one message batch: every OpenAI chat line is
translated by the same code as a live chat call (`translate/anthropic.py`), and every result comes
back as an OpenAI batch output line whose body is a `chat.completion`.

Custom ids. Anthropic accepts only `^[a-zA-Z0-9_-]{1,64}$`; OpenAI accepts any string. Nothing is
kept between the create call and the results download (the adapter is stateless and Anthropic's
results name nothing but the custom id), so the id sent is a reversible encoding of the client's:
letters, digits and `-` stay as they are, `_` is sent as `__`, and every other character as `_XX`
per UTF-8 byte (upper-case hex). An id made only of letters, digits and `-` (the common case,
`request-1`) is therefore sent unchanged, and `decode_custom_id` restores any id exactly. An id whose
encoding is longer than 64 characters cannot be sent at all: such a batch is refused before anything
reaches Anthropic (its operator may run the group's batches with `batch_engine: gateway` instead).

Structured output. A request with `response_format` is answered through a forced tool
(`ANSWER_TOOL`); its results are recognised by that tool's name, since the request is not at hand when
they are read.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence

from providers.batches import ProviderBatch
from providers.errors import GatewayError, UpstreamBadRequestError, UpstreamServerError
from providers.translate.anthropic import ANSWER_TOOL, chat_completion, messages_request
from providers.translate.anthropic_errors import CONTEXT_PHRASES

CHAT_ENDPOINT = "/v1/chat/completions"
# Anthropic's limits for one message batch.
MAX_BATCH_REQUESTS = 100_000
CUSTOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ESCAPE = re.compile(r"_(_|[0-9A-F]{2})")
# A result line longer than this is a broken download, not an answer (a message is at most a few MB).

# Anthropic's `processing_status` before it ends, in OpenAI's words.
RUNNING_STATUSES = {"in_progress": "in_progress", "canceling": "cancelling"}

# Anthropic's per-request error types as the OpenAI status, error type and code of the line's response.
ERROR_RESPONSES: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "billing_error": (402, "billing_error", "billing_error"),
    "permission_error": (403, "permission_denied", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (500, "api_error", None),
    "overloaded_error": (503, "api_error", "overloaded"),
    "timeout_error": (504, "timeout_error", "upstream_timeout"),
}
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was cancelled before it ran."


# --- custom ids ------------------------------------------------------------------------------------

def encode_custom_id(custom_id: str) -> str:
    """The id Anthropic is sent for `custom_id` (may be longer than Anthropic allows: the caller checks)."""
    pieces: list[str] = []
    for character in custom_id:
        if character in _KEPT:
            pieces.append(character)
        elif character == "_":
            pieces.append("__")
        else:
            pieces.extend(f"_{byte:02X}" for byte in character.encode())
    return "".join(pieces)


def decode_custom_id(sent: str) -> str:
    """The client's custom id back from the one Anthropic was sent; an id not of our making is kept as is."""
    if "_" not in sent:
        return sent
    try:
        decoded = bytes(_unescape(sent)).decode()
    except (ValueError, UnicodeDecodeError):
        return sent
    return decoded if encode_custom_id(decoded) == sent else sent


def _unescape(sent: str) -> bytearray:
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(sent):
        out += sent[position:match.start()].encode()
        escaped = match.group(1)
        out += b"_" if escaped == "_" else bytes([int(escaped, 16)])
        position = match.end()
    out += sent[position:].encode()
    return out


# --- the create call -------------------------------------------------------------------------------

def message_batch_requests(requests: Sequence[Mapping], *, model: str, default_max_tokens: int) -> list[dict]:
    """The `requests` of `POST /v1/messages/batches`: each line's custom id (encoded) and its chat body
    translated to Messages params for `model`.

    A line that cannot be sent (its id cannot be encoded within 64 characters, its body cannot be
    translated) refuses the whole batch with `UpstreamBadRequestError` naming it, as Anthropic would
    refuse the batch: nothing is sent, and the batch engine records the reason on every line.
    """
    if not requests:
        raise UpstreamBadRequestError("A message batch needs at least one request.", code="empty_batch")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise UpstreamBadRequestError(
            f"An Anthropic message batch takes at most {MAX_BATCH_REQUESTS} requests; this part has "
            f"{len(requests)}.", code="batch_too_large")
    translated = []
    for index, request in enumerate(requests):
        custom_id = _field(request, "custom_id")
        body = _field(request, "body")
        if not isinstance(custom_id, str) or not isinstance(body, dict):
            raise UpstreamBadRequestError(f"Batch request {index} has no custom_id or no body.",
                                          code="invalid_batch_request")
        sent_id = encode_custom_id(custom_id)
        if not CUSTOM_ID_PATTERN.fullmatch(sent_id):
            raise UpstreamBadRequestError(
                f"Batch request {index}: custom_id {custom_id!r} is too long for Anthropic message batches "
                "(at most 64 characters from A-Z, a-z, 0-9, '-' and '_', after encoding any other character).",
                param="custom_id", code="invalid_custom_id")
        try:
            params = messages_request(body, model, default_max_tokens=default_max_tokens)
        except GatewayError as error:
            raise UpstreamBadRequestError(f"Batch request {index} (custom_id {custom_id!r}): {error.message}",
                                          param=error.param, code=error.code) from error
        translated.append({"custom_id": sent_id, "params": params})
    return translated


def _field(request, name: str):
    """A request's field, whether it is a JSON line (a dict) or a parsed line object."""
    return request.get(name) if isinstance(request, Mapping) else getattr(request, name, None)


# --- the batch object ------------------------------------------------------------------------------

def provider_batch(parsed: dict) -> ProviderBatch:
    """Anthropic's message batch as a `ProviderBatch`.

    Status: `in_progress` stays `in_progress` (or `cancelling` once a cancel was asked for);
    `canceling` is `cancelling`; `ended` is `cancelled` when a cancel was asked for (what finished
    before it is still in the results), `expired` when some requests ran out of Anthropic's 24 hours
    (the rest is in the results, as OpenAI keeps an expired batch's partial output), `completed`
    otherwise, even if every request errored (those are per-line failures, as on OpenAI). An unknown
    status reads as `in_progress`, so the batch is polled again rather than taken as finished.
    Counts: completed = succeeded, failed = errored + expired + canceled, total = all five.
    """
    batch_id = parsed.get("id")
    if not isinstance(batch_id, str) or not batch_id:
        raise UpstreamServerError("The upstream provider answered a batch call without a batch id.")
    raw_status = str(parsed.get("processing_status") or "")
    counts = parsed.get("request_counts") if isinstance(parsed.get("request_counts"), dict) else {}
    processing, succeeded, errored, canceled, expired = (
        _count(counts.get(name)) for name in ("processing", "succeeded", "errored", "canceled", "expired"))
    cancel_asked = bool(parsed.get("cancel_initiated_at"))
    if raw_status == "ended":
        status = "cancelled" if cancel_asked else "expired" if expired else "completed"
    elif raw_status == "in_progress" and cancel_asked:
        status = "cancelling"
    else:
        status = RUNNING_STATUSES.get(raw_status, "in_progress")
    results_url = parsed.get("results_url")
    return ProviderBatch(id=batch_id, status=status, raw_status=raw_status,
                         total=processing + succeeded + errored + canceled + expired, completed=succeeded,
                         failed=errored + expired + canceled,
                         results_url=results_url if isinstance(results_url, str) and results_url else None)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# --- results -------------------------------------------------------------------------------------

def output_line(result: dict) -> dict:
    """One line of Anthropic's results as OpenAI's batch output line (custom id restored).

    `succeeded` answers 200 with the message as a `chat.completion`; `errored` answers the error's
    status with OpenAI's error envelope; `expired` and `canceled` never got an answer, so they carry
    OpenAI's line-level `error` (`batch_expired`, `batch_cancelled`) and no response.
    """
    sent_id = result.get("custom_id")
    if not isinstance(sent_id, str) or not sent_id:
        raise UpstreamServerError("The provider's batch results hold a line without a custom_id.",
                                  code="malformed_batch_results")
    outcome = result.get("result") if isinstance(result.get("result"), dict) else {}
    kind = outcome.get("type")
    response = error = None
    if kind == "succeeded" and isinstance(outcome.get("message"), dict):
        message = outcome["message"]
        answer_tool = any(isinstance(block, dict) and block.get("type") == "tool_use"
                          and block.get("name") == ANSWER_TOOL for block in message.get("content") or [])
        response = {"status_code": 200, "request_id": message.get("id") or _request_id(),
                    "body": chat_completion(message, answer_tool=answer_tool)}
    elif kind == "errored":
        response = _error_response(outcome.get("error"))
    elif kind == "expired":
        error = {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    elif kind == "canceled":
        error = {"code": "batch_cancelled", "message": CANCELLED_MESSAGE}
    else:
        raise UpstreamServerError(f"The provider's batch results hold a line of unknown type {kind!r}.",
                                  code="malformed_batch_results")
    return {"id": _request_id(), "custom_id": decode_custom_id(sent_id), "response": response, "error": error}


def _error_response(wrapper) -> dict:
    """An `errored` result's error (`{"type": "error", "error": {...}}`, or the inner object alone)."""
    wrapper = wrapper if isinstance(wrapper, dict) else {}
    inner = wrapper.get("error") if isinstance(wrapper.get("error"), dict) else wrapper
    kind = str(inner.get("type") or "api_error")
    message = str(inner.get("message") or f"The upstream provider failed this request ({kind}).")
    status, error_type, code = ERROR_RESPONSES.get(kind, (500, "api_error", None))
    if kind == "invalid_request_error" and any(phrase in message.lower() for phrase in CONTEXT_PHRASES):
        code = "context_length_exceeded"
    request_id = wrapper.get("request_id") or inner.get("request_id") or ""
    return {"status_code": status, "request_id": str(request_id),
            "body": {"error": {"message": message, "type": error_type, "param": None, "code": code}}}


def _request_id() -> str:
    """An id for an output line (or an answer that carries none), shaped like OpenAI's."""
    return "batch_req_" + secrets.token_hex(16)
