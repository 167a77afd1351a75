"""What crosses the adapter interface for native batches: a provider's batch, and its result lines.

Providers with a batch API (OpenAI and Azure read a JSONL file they hold; Anthropic's message batches
take the requests in the create call) run a Gatehouse batch part themselves. The gateway creates the
provider batch, polls it, and reads its results back; adapters translate their provider's batch
object into `ProviderBatch` and its results into OpenAI's batch output lines, so the batch engine
never sees a provider's own format.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# How an adapter's batch API takes its input.
BATCH_INPUT_FILE = "file"  # a file the provider holds (the deployment's rewritten copy of the input)
BATCH_INPUT_INLINE = "inline"  # the requests themselves, in the create call

# OpenAI's batch statuses: `ProviderBatch.status` is always one of these, whatever the provider says.
PROVIDER_BATCH_STATUSES = frozenset({"validating", "failed", "in_progress", "finalizing", "completed", "expired",
                                     "cancelling", "cancelled"})
# The provider will not change the batch any more: its results (possibly partial) can be read.
PROVIDER_BATCH_TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class ProviderBatch:
    """A provider's batch as the gateway needs it.

    `status` is mapped onto OpenAI's vocabulary; `raw_status` is the provider's own word (for the
    admin). Counts are the provider's, live. `output_file_id` / `error_file_id` are the provider's
    files (OpenAI, Azure); `results_url` is where Anthropic serves results. `errors` is the
    provider's reason for a failed batch, as OpenAI's `errors.data[]` entries.
    """

    id: str
    status: str
    raw_status: str = ""
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    errors: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in PROVIDER_BATCH_TERMINAL
