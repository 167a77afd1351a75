"""The one outbound HTTP client: a tuned `requests.Session` per process.

Why it looks like this (STACK.md, pitfall 4): `trust_env` off so no proxy variable reroutes provider
traffic; a large blocking connection pool so hundreds of concurrent calls reuse sockets instead of
reconnecting; no hidden retries (the router decides); explicit connect/read timeouts plus a total
deadline checked between reads; bodies read by us, chunk by chunk, so a stream is relayed as it
arrives and a client that hangs up closes the upstream socket at once.
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from providers.errors import (
    ContentPolicyViolationError,
    ContextWindowExceededError,
    ProviderError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)

logger = logging.getLogger("gatehouse.upstream")

CONNECT_TIMEOUT_SECONDS = 10.0
READ_CHUNK_BYTES = 65536
POOL_SIZE = int(os.environ.get("GATEWAY_UPSTREAM_POOL_SIZE", "5000"))
# What a `requests.Session` would add to every call (user agent, gzip, keep-alive).
DEFAULT_HEADERS = dict(requests.utils.default_headers())

_session: requests.Session | None = None
_session_pid: int | None = None


def session() -> requests.Session:
    """This process's session, created after fork so gunicorn workers never share sockets."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        built = requests.Session()
        built.trust_env = False
        adapter = HTTPAdapter(pool_connections=64, pool_maxsize=POOL_SIZE, pool_block=True, max_retries=0)
        built.mount("http://", adapter)
        built.mount("https://", adapter)
        _session, _session_pid = built, pid
    return _session


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in monotonic time after which the call is abandoned."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise UpstreamTimeoutError("The upstream provider did not answer within the request timeout.")


class StreamedBody:
    """A request body sent piece by piece as it is read from a file, with its exact length known up front.

    Files go up to 512 MB: they are never joined into one `bytes`. The pieces are byte strings
    (multipart headers and boundaries) and `(file, size)` pairs read `READ_CHUNK_BYTES` at a time.
    `Content-Length` is always sent (some file APIs refuse chunked uploads), so a file that yields
    fewer bytes than announced is an error rather than a request the server would wait on forever.
    """

    def __init__(self, pieces: list[bytes | tuple[BinaryIO, int]], content_type: str) -> None:
        self.pieces = pieces
        self.content_type = content_type
        self.length = sum(len(piece) if isinstance(piece, bytes) else piece[1] for piece in pieces)

    def chunks(self, deadline: Deadline) -> Iterator[bytes]:
        """The body's bytes in order; the total deadline is checked before every piece of the file."""
        for piece in self.pieces:
            if isinstance(piece, bytes):
                if piece:
                    yield piece
                continue
            content, size = piece
            left = size
            while left > 0:
                deadline.check()
                block = content.read(min(READ_CHUNK_BYTES, left))
                if not block:
                    raise UpstreamConnectionError("The file to upload ended before its recorded size.")
                left -= len(block)
                yield block


def file_body(content: BinaryIO, size: int, content_type: str) -> StreamedBody:
    """A file's bytes as a whole request body (resumable and media uploads)."""
    return StreamedBody([(content, size)], content_type)


def multipart_body(fields: list[tuple[str, str]], *, file_field: str, filename: str, content: BinaryIO, size: int,
                   mime_type: str) -> StreamedBody:
    """A `multipart/form-data` body: the text `fields` first, then the file streamed under `file_field`.

    The filename is the user's own; quotes, backslashes and line breaks are percent-encoded (as
    browsers do) so a crafted name cannot forge another header or part.
    """
    boundary = f"gatehouse-{secrets.token_hex(16)}"
    pieces: list[bytes | tuple[BinaryIO, int]] = []
    for name, value in fields:
        pieces.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_form_quote(name)}"\r\n\r\n'
                      .encode() + value.encode() + b"\r\n")
    pieces.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_form_quote(file_field)}"; '
                  f'filename="{_form_quote(filename)}"\r\nContent-Type: {_form_quote(mime_type)}\r\n\r\n'.encode())
    pieces.append((content, size))
    pieces.append(f"\r\n--{boundary}--\r\n".encode())
    return StreamedBody(pieces, f"multipart/form-data; boundary={boundary}")


# What browsers escape in a form-data name or filename (WHATWG), plus the backslash some parsers unescape.
_FORM_ESCAPES = str.maketrans({'"': "%22", "\r": "%0D", "\n": "%0A", "\\": "%5C"})


def _form_quote(value: str) -> str:
    return value.translate(_FORM_ESCAPES)


def send(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    deadline: Deadline,
    body: bytes | StreamedBody | None = None,
    params: dict[str, str] | None = None,
    first_byte_timeout: float | None = None,
    error_mapper: Callable[[int, bytes, Any], ProviderError] | None = None,
) -> requests.Response:
    """Send one request and return the open response once its status is known (body not yet read).

    A non-2xx status is turned into the matching `ProviderError` here (by `error_mapper` when the
    provider's error bodies need their own reading), so callers only ever see successful responses.
    `first_byte_timeout` bounds the wait for the status line; reading the body is bounded by `iter_raw`.
    """
    remaining = deadline.remaining()
    if remaining <= 0:
        deadline.check()
    read_timeout = min(first_byte_timeout or remaining, remaining)
    timeout = (min(CONNECT_TIMEOUT_SECONDS, remaining), read_timeout)
    started = time.monotonic()
    try:
        response = _send_prepared(method, url, headers, body, params, timeout, deadline)
    except requests.exceptions.ConnectTimeout as error:
        raise UpstreamConnectionError(f"Could not connect to the upstream provider in time: {_host(url)}") from error
    except requests.exceptions.ReadTimeout as error:
        raise UpstreamTimeoutError("The upstream provider did not answer within the timeout.") from error
    except requests.exceptions.ConnectionError as error:
        raise UpstreamConnectionError(f"Could not reach the upstream provider at {_host(url)}.") from error
    except requests.exceptions.RequestException as error:
        raise UpstreamConnectionError(f"The upstream request failed: {type(error).__name__}.") from error
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "upstream response",
            extra={"method": method, "host": _host(url), "status": response.status_code,
                   "elapsed_ms": round((time.monotonic() - started) * 1000, 1)},
        )
    if 300 <= response.status_code < 400:
        response.close()
        raise UpstreamServerError(
            f"The upstream provider answered with a redirect (HTTP {response.status_code}); "
            "the deployment's api_base is probably wrong.", code="upstream_redirect")
    if response.status_code >= 400:
        try:
            payload = read_all(response, deadline)
        finally:
            response.close()
        raise (error_mapper or error_for_status)(response.status_code, payload, response.headers)
    return response


def _send_prepared(method: str, url: str, headers: dict[str, str], body: bytes | StreamedBody | None,
                   params: dict[str, str] | None, timeout: tuple[float, float],
                   deadline: Deadline | None = None) -> requests.Response:
    """Hand a request we built ourselves straight to the pooled adapter.

    `Session.request` spends about a quarter of a proxied call's CPU merging settings, cookies and
    hooks we never use and re-parsing a URL we built; the adapter does the real work (pooled
    connection, timeouts, response object) either way. Redirects are never followed on this path.
    """
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = f"{url}?{urlencode(params)}" if params else url
    prepared.headers = CaseInsensitiveDict(DEFAULT_HEADERS)
    prepared.headers.update(headers)
    if isinstance(body, StreamedBody):
        # With a Content-Length, requests and urllib3 send a generator's pieces as they come, unframed.
        prepared.headers["Content-Type"] = body.content_type
        prepared.headers["Content-Length"] = str(body.length)
        prepared.body = body.chunks(deadline or Deadline.after(CONNECT_TIMEOUT_SECONDS))
    else:
        prepared.body = body
        prepared.headers["Content-Length"] = str(len(body)) if body is not None else "0"
    prepared.hooks = {"response": []}
    return _adapter(prepared.url).send(prepared, stream=True, timeout=timeout)


def _adapter(url: str) -> HTTPAdapter:
    return session().get_adapter(url)


def read_all(response: requests.Response, deadline: Deadline, idle_timeout: float | None = None) -> bytes:
    """Read a whole body, checking the total deadline between chunks (a slow drip cannot hang us)."""
    pieces: list[bytes] = []
    try:
        for chunk in iter_raw(response, deadline, idle_timeout):
            pieces.append(chunk)
    finally:
        response.close()
    return b"".join(pieces)


def iter_raw(response: requests.Response, deadline: Deadline, idle_timeout: float | None = None) -> Iterator[bytes]:
    """Yield body bytes as they arrive (`read1`: whatever one socket read gives, never waiting to fill a buffer).

    Each read waits at most `idle_timeout` (a stream's allowed silence between chunks) and never past
    the deadline, so neither a stalled nor a dripping upstream can hold a request beyond its budget.
    """
    raw = response.raw
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    try:
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                deadline.check()
            if sock is not None:
                sock.settimeout(min(idle_timeout, remaining) if idle_timeout else remaining)
            # `requests` advertises gzip/deflate but leaves `raw` undecoded: decode here, as it arrives.
            if hasattr(raw, "read1"):
                chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
            else:
                chunk = raw.read(READ_CHUNK_BYTES, decode_content=True)
            if not chunk:
                return
            yield chunk
    except ProviderError:
        raise
    except requests.exceptions.RequestException as error:
        raise UpstreamConnectionError("The upstream connection broke while reading the response.") from error
    except Exception as error:  # urllib3 ProtocolError, socket timeouts, resets mid-body
        if "timed out" in str(error).lower():
            raise UpstreamTimeoutError("The upstream provider stopped sending within the timeout.") from error
        raise UpstreamConnectionError("The upstream connection broke while reading the response.") from error


# A JSONL line longer than this (a provider's batch results) is refused rather than buffered without end.
MAX_JSONL_LINE_BYTES = 64 * 1024 * 1024


def iter_jsonl_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole non-blank lines of a JSONL body arriving in pieces of any size (the last may lack its newline).

    The pieces of a line still incomplete are kept in a list and joined once, so a long line arriving
    in many socket reads is not copied again at every read.
    """
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        start = 0
        while (cut := chunk.find(b"\n", start)) >= 0:
            line = b"".join([*pending, chunk[start:cut]]).strip()
            pending, pending_size = [], 0
            if line:
                yield line
            start = cut + 1
        if start < len(chunk):
            pending.append(chunk[start:])
            pending_size += len(chunk) - start
            if pending_size > MAX_JSONL_LINE_BYTES:
                raise UpstreamServerError("The provider's batch results hold a line too long to read.",
                                          code="malformed_batch_results")
    tail = b"".join(pending).strip()
    if tail:
        yield tail


def iter_jsonl_objects(response: requests.Response, deadline: Deadline, *, source: str) -> Iterator[dict]:
    """The JSON objects of a JSONL body (a provider's batch results), one line at a time, closing the
    response when done; a line that is not a JSON object is a 502 naming `source`."""
    try:
        for raw in iter_jsonl_lines(iter_raw(response, deadline)):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise UpstreamServerError(f"The provider's {source} holds a line that is not a JSON object.",
                                          code="malformed_batch_results")
            yield parsed
    finally:
        response.close()


def iter_sse_events(
    response: requests.Response, deadline: Deadline, idle_timeout: float | None = None
) -> Iterator[bytes]:
    """Split a server-sent-event body into whole events (the bytes between blank lines).

    `iter_lines` would buffer a close-delimited stream until EOF, so events are framed here.
    Line endings are normalised to `\\n`; the trailing blank line is not included.
    """
    buffer = b""
    for chunk in iter_raw(response, deadline, idle_timeout):
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            cut = buffer.find(b"\n\n")
            if cut < 0:
                break
            event = buffer[:cut]
            buffer = buffer[cut + 2 :]
            if event:
                yield event
    tail = buffer.strip()
    if tail:
        yield tail


def sse_data(event: bytes) -> bytes | None:
    """The `data:` payload of one event (several data lines joined by newlines), or None for comments.

    As the SSE specification says, one space after the colon is dropped, and only one.
    """
    if event.startswith(b"data:") and b"\n" not in event:
        return _field_value(event)
    lines = [_field_value(line) for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _field_value(line: bytes) -> bytes:
    return line[6:] if line[5:6] == b" " else line[5:]


def error_for_status(status: int, payload: bytes, headers) -> ProviderError:
    """Map an upstream HTTP error onto our hierarchy, keeping the provider's message where it is safe."""
    message, code, param = _upstream_message(payload)
    retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None)
    if status == 429:
        out_headers = {"Retry-After": str(int(retry_after + 0.999))} if retry_after is not None else None
        return UpstreamRateLimitError(message or "The upstream provider is rate limiting requests.",
                                      retry_after=retry_after, headers=out_headers)
    if status in (401, 403):
        return UpstreamAuthenticationError(
            "The upstream provider rejected this deployment's credentials; the gateway operator must fix them."
        )
    if status == 404:
        return UpstreamNotFoundError(message or "The upstream provider does not know this model or route.")
    if status in (408, 409) or status >= 500:
        error = UpstreamServerError(message or f"The upstream provider failed with HTTP {status}.",
                                    retry_after=retry_after)
        if status in (503, 504):
            error.status_code = status
        return error
    message = message or f"The upstream provider rejected the request (HTTP {status})."
    if status == 400:
        kind = _bad_request_kind(message, code, payload)
        if kind is not None:
            # The provider's own code is kept when it gave one: clients may already match on it.
            return kind(message, param=param, code=code or kind.code)
    error = UpstreamBadRequestError(message, param=param, code=code)
    if status in (413, 422):
        error.status_code = status
    return error


CONTEXT_WINDOW_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter", "responsibleaipolicyviolation"})
# Servers that speak OpenAI's format without its codes (vLLM, llama.cpp, TGI) still say it in words.
CONTEXT_WINDOW_PHRASES = ("maximum context length", "context length exceeded", "context_length_exceeded",
                          "prompt is too long", "exceeds the context window")


def _bad_request_kind(message: str, code: str | None, payload: bytes) -> type[UpstreamBadRequestError] | None:
    """Which 400s are not the caller's plain mistake but a reason to try another group.

    OpenAI says `context_length_exceeded` / `content_policy_violation` in `error.code`; Azure's content
    filter says `content_filter` there and `ResponsibleAIPolicyViolation` in `error.innererror.code`.
    """
    codes = {code.lower()} if code else set()
    inner = _inner_code(payload)
    if inner:
        codes.add(inner.lower())
    if codes & CONTENT_POLICY_CODES:
        return ContentPolicyViolationError
    if codes & CONTEXT_WINDOW_CODES:
        return ContextWindowExceededError
    lowered = message.lower()
    if any(phrase in lowered for phrase in CONTEXT_WINDOW_PHRASES):
        return ContextWindowExceededError
    return None


def _inner_code(payload: bytes) -> str | None:
    try:
        parsed = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    inner = error.get("innererror") if isinstance(error, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    return str(code) if code else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` (or `retry-after-ms`-style numeric) header; HTTP dates are ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def _upstream_message(payload: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        parsed = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return None, None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (str(message) if message else None, str(code) if code else None, error.get("param"))
    if isinstance(error, str):
        return error, None, None
    if isinstance(parsed, dict) and parsed.get("object") == "error" and isinstance(parsed.get("message"), str):
        return parsed["message"], None, None  # vLLM and other OpenAI-compatible servers: the error at the top
    return None, None, None


def _host(url: str) -> str:
    return url.split("/", 3)[2] if "://" in url else url
