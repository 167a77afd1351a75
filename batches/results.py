"""Recording finished lines: the output line, the part's and batch's counts, and the spend, at once.

Both engines end every line here. `line_results_write` runs under the part's lease lock
(`leases.lease_locked`) and writes, in one transaction: the lines' `BatchLineResult` rows (a line
already recorded is skipped, so a line resumed after a crash is never counted twice), the counts of
the part and of the batch, and the spend, as `RequestLog` rows with key, team and daily totals
(`keys.spend.usage_records_write`). A crash before the commit loses nothing but the lines of that
write, which the next worker runs again; a crash after it leaves nothing to redo.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from django.db.models import F

from batches.leases import lease_locked
from batches.metrics import batch_lines_count
from batches.models import Batch, BatchLineResult, BatchPart
from keys.choices import RequestStatus
from keys.selectors import virtual_key_find
from keys.spend import usage_records_write
from keys.usage import UsageRecord


def batch_request_id() -> str:
    """An id for one output line (`batch_req_…`), as OpenAI gives each."""
    return "batch_req_" + secrets.token_hex(16)


def success_line(*, custom_id: str, status_code: int, request_id: str, body: dict) -> dict:
    """An output file line for a request the upstream answered with 2xx."""
    return {"id": batch_request_id(), "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": request_id, "body": body}, "error": None}


def failure_line(*, custom_id: str, status_code: int | None = None, request_id: str = "", body: dict | None = None,
                 code: str | None = None, message: str | None = None) -> dict:
    """An error file line: an upstream error answer (`status_code` and its `body`), or a line that
    never got one (`code` and `message`, e.g. `batch_expired`)."""
    response = None
    if status_code is not None:
        response = {"status_code": status_code, "request_id": request_id, "body": body or {}}
    error = {"code": code, "message": message} if code is not None else None
    return {"id": batch_request_id(), "custom_id": custom_id, "response": response, "error": error}


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """One finished line, ready to record."""

    line: int
    custom_id: str
    succeeded: bool
    output: dict
    operation: str = "chat"
    status_code: int = 200
    error_type: str = ""
    deployment_id: str = ""
    provider: str = ""
    provider_model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    started_at: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class BatchOwner:
    """Who a batch's spend is charged to, as its request logs name them."""

    key_id: str = ""
    key_alias: str = ""
    team_id: str = ""
    user_id: str = ""
    extra: dict = field(default_factory=dict)


def batch_owner(batch: Batch) -> BatchOwner:
    """The batch's key as it is now (its alias and user may have changed since the batch was made)."""
    key = virtual_key_find(batch.owner_key_id) if batch.owner_key_id else None
    if key is None:
        return BatchOwner(key_id=batch.owner_key_id, team_id=batch.owner_team_id)
    return BatchOwner(key_id=key.id, key_alias=key.key_alias or "", team_id=batch.owner_team_id,
                      user_id=key.user_id or "")


def line_results_write(*, part: BatchPart, owner: str, outcomes: Sequence[LineOutcome], charge_to: BatchOwner) -> int:
    """Record `outcomes` for `part` while `owner` holds its lease (else `LeaseLostError`, nothing written).
    Returns how many lines were new."""
    if not outcomes:
        return 0
    with lease_locked(part=part, owner=owner):
        lines = [outcome.line for outcome in outcomes]
        done = set(BatchLineResult.objects.filter(batch_id=part.batch_id, line__in=lines)
                   .values_list("line", flat=True))
        fresh: dict[int, LineOutcome] = {}
        for outcome in outcomes:
            if outcome.line not in done:
                fresh.setdefault(outcome.line, outcome)
        if not fresh:
            return 0
        new = list(fresh.values())
        BatchLineResult.objects.bulk_create([
            BatchLineResult(batch_id=part.batch_id, line=o.line, custom_id=o.custom_id, succeeded=o.succeeded,
                            output=orjson.dumps(o.output).decode(), prompt_tokens=o.prompt_tokens,
                            completion_tokens=o.completion_tokens, cost=o.cost)
            for o in new])
        usage_records_write(records=[_usage_record(part, o, charge_to) for o in new])
        succeeded = sum(1 for o in new if o.succeeded)
        failed = len(new) - succeeded
        totals = {"prompt_tokens": sum(o.prompt_tokens for o in new),
                  "completion_tokens": sum(o.completion_tokens for o in new), "cost": sum(o.cost for o in new)}
        BatchPart.objects.filter(id=part.id).update(completed=F("completed") + succeeded,
                                                    failed=F("failed") + failed)
        Batch.objects.filter(id=part.batch_id).update(
            completed=F("completed") + succeeded, failed=F("failed") + failed,
            prompt_tokens=F("prompt_tokens") + totals["prompt_tokens"],
            completion_tokens=F("completion_tokens") + totals["completion_tokens"], cost=F("cost") + totals["cost"])
        batch_lines_count(model_group=part.model_group, completed=succeeded, failed=failed)  # once committed
        return len(new)


def _usage_record(part: BatchPart, outcome: LineOutcome, charge_to: BatchOwner) -> UsageRecord:
    response = outcome.output.get("response") or {}
    return UsageRecord(
        request_id=response.get("request_id") or outcome.output["id"], started_at=outcome.started_at,
        operation=f"batch_{outcome.operation}", key_id=charge_to.key_id, key_alias=charge_to.key_alias,
        team_id=charge_to.team_id, user_id=charge_to.user_id, model_group=part.model_group,
        deployment_id=outcome.deployment_id or part.deployment_id, provider=outcome.provider or part.provider,
        provider_model=outcome.provider_model, status=RequestStatus.OK if outcome.succeeded else RequestStatus.ERROR,
        status_code=outcome.status_code, error_type=outcome.error_type, prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens, total_tokens=outcome.prompt_tokens + outcome.completion_tokens,
        cost=outcome.cost, latency_ms=outcome.latency_ms, attempts=outcome.attempts,
        metadata={"batch_id": part.batch_id, "custom_id": outcome.custom_id, "engine": part.engine})
