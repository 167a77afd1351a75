"""What a provider hands back for a file it holds: the reference a later request must quote.

Gatehouse stores every managed file itself and gives each deployment its own copy on demand. The
copy is known by whatever that provider reads: OpenAI, Azure and Anthropic answer with a file id of
their own; Gemini's Files API answers with a URI; Vertex AI reads a `gs://bucket/object` URI. The
files registry records one `ProviderFileRef` per deployment copy and hands it back to the adapter's
`file_part` when a chat request quotes the Gatehouse file id.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderFileRef:
    """One deployment's copy of a file.

    `file_id` is the provider's own id (OpenAI, Azure, Anthropic, the mock); `uri` is what the
    provider reads instead (a Gemini Files API URI, or `gs://bucket/object` for Vertex AI).
    `expires_at` (epoch seconds) is set when the provider forgets files by itself (Gemini: 48 hours),
    so the registry knows when a copy must be uploaded again.
    """

    file_id: str | None
    uri: str | None
    mime_type: str
    expires_at: int | None = None
