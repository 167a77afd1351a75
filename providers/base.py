"""The interface every provider adapter implements, and the small values that cross it.

The proxy speaks OpenAI's wire format; an adapter turns an OpenAI-format request into its provider's
call and the answer back into OpenAI's format. Adapters are stateless singletons: they receive the
deployment's resolved credentials in a `DeploymentTarget` and never read settings or the database.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

import orjson

from providers.batches import BATCH_INPUT_FILE, ProviderBatch
from providers.errors import UnsupportedOperationError, UpstreamServerError
from providers.files import ProviderFileRef
from providers.http import Deadline

# Operations an adapter may offer; `Provider.operations` declares which ones it does.
CHAT = "chat"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"
FILES = "files"
BATCHES = "batches"

# Fields that steer the gateway itself and must never reach a provider.
GATEWAY_ONLY_FIELDS = frozenset({"metadata", "fallbacks", "num_retries", "timeout", "drop_params", "user_config"})


@dataclass(frozen=True, slots=True)
class DeploymentTarget:
    """Everything an adapter needs to call one deployment, with secrets already resolved."""

    deployment_id: str
    model_group: str
    provider: str
    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    organization: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamResponse:
    """A whole OpenAI-format response body, kept as bytes so it can be relayed without re-encoding."""

    body: bytes
    _parsed: dict | None = None

    @classmethod
    def from_object(cls, payload: dict) -> UpstreamResponse:
        return cls(body=orjson.dumps(payload), _parsed=payload)

    @classmethod
    def from_upstream(cls, body: bytes) -> UpstreamResponse:
        """A provider's body, refused unless it is a JSON object (a broken proxy, a truncated answer).

        Parsing here is cheap with orjson and needed anyway for usage; relaying stays byte for byte.
        """
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UpstreamServerError("The upstream provider returned a body that is not a JSON object.")
        return cls(body=body, _parsed=parsed)

    @property
    def parsed(self) -> dict:
        if self._parsed is None:
            self._parsed = orjson.loads(self.body)
        return self._parsed


class UpstreamStream:
    """An opened upstream stream: its status is already known to be good, its events not yet read.

    `chunks` yields the JSON payload (bytes) of each OpenAI-format chunk, without SSE framing and
    without the final `[DONE]`. `close()` releases the upstream connection; calling it early (a
    client that hung up) cancels the upstream call.
    """

    def __init__(self, chunks: Iterator[bytes], close=None) -> None:
        self.chunks = chunks
        self._close = close

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None
        close_generator = getattr(self.chunks, "close", None)
        if close_generator is not None:
            close_generator()


class Provider:
    """Base adapter. Subclasses set `name`, `operations` and implement the matching methods.

    Every method receives the client's OpenAI-format body (already validated for the fields the
    gateway owns), the target and a deadline. Streaming methods open the upstream call before
    returning, so every error that can happen before the first byte is raised from the call itself;
    their `first_chunk_timeout` (the deployment's `stream_timeout`) bounds the wait for the first
    chunk and every silence between chunks after it.
    """

    name: ClassVar[str] = ""
    operations: ClassVar[frozenset[str]] = frozenset()
    # OpenAI request parameters this provider cannot honour (its API has no equivalent). The gateway
    # answers 400 naming one of them, or removes them when `drop_params` is on (proxy_api/drop_params.py);
    # an adapter never sees them silently ignored.
    unsupported_params: ClassVar[frozenset[str]] = frozenset()

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def chat(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        raise self._unsupported(CHAT)

    def chat_stream(
        self, target: DeploymentTarget, body: dict, deadline: Deadline, first_chunk_timeout: float | None
    ) -> UpstreamStream:
        raise self._unsupported(CHAT)

    def completion(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        raise self._unsupported(COMPLETIONS)

    def completion_stream(
        self, target: DeploymentTarget, body: dict, deadline: Deadline, first_chunk_timeout: float | None
    ) -> UpstreamStream:
        raise self._unsupported(COMPLETIONS)

    def embedding(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        raise self._unsupported(EMBEDDINGS)

    def moderation(self, target: DeploymentTarget, body: dict, deadline: Deadline) -> UpstreamResponse:
        raise self._unsupported(MODERATIONS)

    # --- files (managed files: one Gatehouse file id, a copy on every deployment that needs it) ---
    # Adapters that can hold a copy of a file set this and implement `file_upload` / `file_delete`.
    supports_files: ClassVar[bool] = False

    def file_upload(self, target: DeploymentTarget, *, content: BinaryIO, size: int, filename: str, purpose: str,
                    mime_type: str, deadline: Deadline) -> ProviderFileRef:
        """Give `target` its own copy of a file and return how later requests must refer to it.

        `content` is a readable binary file positioned at 0 and holding exactly `size` bytes; it is
        streamed to the provider (files go up to 512 MB: never read it whole into memory).
        `purpose` is OpenAI's (`user_data`, `batch`, ...); each adapter maps it onto what its API
        accepts. Failures raise `ProviderError`s, so the registry can record them and try elsewhere.
        """
        raise self._unsupported(FILES)

    def file_delete(self, target: DeploymentTarget, ref: ProviderFileRef, deadline: Deadline) -> None:
        """Delete `target`'s copy. Idempotent: a copy the provider no longer knows (its 404) is deleted."""
        raise self._unsupported(FILES)

    def file_part(self, ref: ProviderFileRef, part: dict) -> dict:
        """The OpenAI-format user content part that makes this adapter's translation use the copy `ref`.

        `part` is the client's original `{"type": "file", "file": {"file_id": "<gatehouse id>", ...}}`;
        the answer replaces it before the adapter is called. OpenAI's own shape by default.
        """
        return {"type": "file", "file": {"file_id": ref.file_id}}

    # --- batches (native: the provider's own batch API runs a Gatehouse batch part) ------------------
    # Adapters with a batch API set `supports_batches` and say how it takes its input (`batch_input`):
    # BATCH_INPUT_FILE reads a file the provider holds; BATCH_INPUT_INLINE takes the requests themselves.
    supports_batches: ClassVar[bool] = False
    batch_input: ClassVar[str] = BATCH_INPUT_FILE

    def batch_create(self, target: DeploymentTarget, *, endpoint: str, input_file: ProviderFileRef | None,
                     requests: list[dict] | None, metadata: dict[str, str], deadline: Deadline) -> ProviderBatch:
        """Start a provider batch for `endpoint` (`/v1/chat/completions`, ...).

        File-input adapters get `input_file` (this deployment's copy of the JSONL, `body.model` already
        the deployment's own); inline adapters get `requests`, the same lines as dicts (`custom_id`,
        `method`, `url`, `body`). `metadata` is the gateway's own small string map (batch and part ids),
        sent where the provider keeps metadata. Failures raise `ProviderError`s.
        """
        raise self._unsupported(BATCHES)

    def batch_retrieve(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """The provider batch as it stands now."""
        raise self._unsupported(BATCHES)

    def batch_cancel(self, target: DeploymentTarget, batch_id: str, deadline: Deadline) -> ProviderBatch:
        """Ask the provider to cancel; the answer is usually `cancelling`, later polls show `cancelled`."""
        raise self._unsupported(BATCHES)

    def batch_results(self, target: DeploymentTarget, batch: ProviderBatch, deadline: Deadline) -> Iterator[dict]:
        """Every result line of a finished provider batch, as OpenAI's batch output lines:
        `{"id", "custom_id", "response": {"status_code", "request_id", "body"} | None, "error": {...} | None}`,
        successes and failures alike (from both the output and the error file where the provider
        splits them), read as they arrive rather than all at once. `body` is OpenAI's response format.
        """
        raise self._unsupported(BATCHES)

    def batch_file_delete(self, target: DeploymentTarget, file_id: str, deadline: Deadline) -> None:
        """Delete a file the provider made or was given for a batch (a shard input, an output file).
        Idempotent; adapters without such files do nothing."""

    def _unsupported(self, operation: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"Provider '{self.name}' does not support {operation}.")


def unsupported_in(provider: Provider, body: dict) -> list[str]:
    """The parameters of `body` that `provider` cannot honour, in the body's order (empty for most calls)."""
    unsupported = provider.unsupported_params
    if not unsupported:
        return []
    return [name for name in body if name in unsupported]


def outbound_body(body: dict, model: str) -> dict:
    """The client's body as a provider should see it: our model name, no gateway-only fields."""
    prepared = {key: value for key, value in body.items() if key not in GATEWAY_ONLY_FIELDS}
    prepared["model"] = model
    return prepared
