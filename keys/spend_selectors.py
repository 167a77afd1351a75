"""Reads of request logs and daily spend, shaped the way LiteLLM's `/spend/logs` answers.

Individual logs come from `RequestLog`; per-day summaries from `DailySpend` (one row per day, key,
team and model group), so a month of summaries reads a few hundred rows, not every request.
Field names follow LiteLLM's spend logs (`request_id`, `api_key`, `spend`, `startTime`, ...) so that
scripts written against it keep working; Gatehouse's own extras sit beside them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, QuerySet

from keys.choices import RequestStatus
from keys.models import DailySpend, RequestLog, VirtualKey
from keys.tokens import key_digest, looks_like_plaintext

# LiteLLM's names for the kinds of call, as its spend logs record them.
CALL_TYPES = {"chat": "acompletion", "completions": "atext_completion", "embeddings": "aembedding",
              "moderations": "amoderation", "messages": "anthropic_messages", "count_tokens": "count_tokens"}
LOG_FIELDS = ("request_id", "created_at", "key_id", "key_alias", "team_id", "user_id", "operation", "model_group",
              "deployment_id", "provider", "provider_model", "streamed", "status", "status_code", "error_type",
              "prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms", "time_to_first_token_ms",
              "attempts", "fallbacks", "metadata")


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """What a `/spend/logs` query asks for; `None` leaves a dimension open.

    `start` is inclusive and `end` exclusive (a date-only end already means "through that day").
    """

    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    model_group: str | None = None
    request_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    # The query named a key that does not exist (an unknown plaintext): nothing matches.
    unknown_key: bool = False


def key_id_for_api_key(value: str) -> str | None:
    """The key id an `api_key` filter names: a plaintext key (`sk-...`) is looked up by its digest
    (the current secret, or the previous one during its grace period); anything else is taken as the id."""
    if not looks_like_plaintext(value):
        return value
    digest = key_digest(value)
    return (VirtualKey.objects.filter(Q(digest=digest) | Q(previous_digest=digest))
            .values_list("id", flat=True).first())


def request_log_list(*, spend_filter: SpendFilter) -> QuerySet[RequestLog]:
    """Logs matching the filter, newest first."""
    if spend_filter.unknown_key:
        return RequestLog.objects.none()
    logs = RequestLog.objects.all()
    if spend_filter.key_id is not None:
        logs = logs.filter(key_id=spend_filter.key_id)
    if spend_filter.team_id is not None:
        logs = logs.filter(team_id=spend_filter.team_id)
    if spend_filter.user_id is not None:
        logs = logs.filter(user_id=spend_filter.user_id)
    if spend_filter.model_group is not None:
        logs = logs.filter(model_group=spend_filter.model_group)
    if spend_filter.request_id is not None:
        logs = logs.filter(request_id=spend_filter.request_id)
    if spend_filter.start is not None:
        logs = logs.filter(created_at__gte=spend_filter.start)
    if spend_filter.end is not None:
        logs = logs.filter(created_at__lt=spend_filter.end)
    return logs.order_by("-created_at", "-id")


def spend_log_page(*, spend_filter: SpendFilter, offset: int, limit: int) -> list[dict[str, Any]]:
    """One page of logs in LiteLLM's spend log shape."""
    rows = request_log_list(spend_filter=spend_filter).values(*LOG_FIELDS)[offset:offset + limit]
    return [spend_log_entry(row) for row in rows]


def spend_log_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A `RequestLog` (as a values() row) under LiteLLM's field names, with Gatehouse's extras."""
    started: datetime = row["created_at"]
    ended = started + timedelta(milliseconds=row["latency_ms"])
    first_token = row["time_to_first_token_ms"]
    return {
        "request_id": row["request_id"],
        "call_type": CALL_TYPES.get(row["operation"], row["operation"]),
        "api_key": row["key_id"],
        "key_alias": row["key_alias"] or None,
        "team_id": row["team_id"] or None,
        "user": row["user_id"],
        "model": row["provider_model"],
        "model_id": row["deployment_id"],
        "model_group": row["model_group"],
        "custom_llm_provider": row["provider"],
        "spend": row["cost"],
        "total_tokens": row["total_tokens"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "startTime": _iso(started),
        "endTime": _iso(ended),
        "completionStartTime": _iso(started + timedelta(milliseconds=first_token)) if first_token is not None
        else None,
        "status": "success" if row["status"] == RequestStatus.OK else "failure",
        "request_status": row["status"],
        "status_code": row["status_code"],
        "error_type": row["error_type"] or None,
        "stream": row["streamed"],
        "latency_ms": row["latency_ms"],
        "time_to_first_token_ms": first_token,
        "attempts": row["attempts"],
        "fallbacks": row["fallbacks"],
        "metadata": row["metadata"],
    }


def daily_spend_list(*, spend_filter: SpendFilter, first_day: date | None,
                     last_day: date | None) -> QuerySet[DailySpend]:
    if spend_filter.unknown_key:
        return DailySpend.objects.none()
    rows = DailySpend.objects.all()
    if spend_filter.key_id is not None:
        rows = rows.filter(key_id=spend_filter.key_id)
    if spend_filter.team_id is not None:
        rows = rows.filter(team_id=spend_filter.team_id)
    if spend_filter.model_group is not None:
        rows = rows.filter(model_group=spend_filter.model_group)
    if spend_filter.user_id is not None:
        rows = rows.filter(key_id__in=VirtualKey.objects.filter(user_id=spend_filter.user_id).values("id"))
    if first_day is not None:
        rows = rows.filter(date__gte=first_day)
    if last_day is not None:
        rows = rows.filter(date__lte=last_day)
    return rows.order_by("date", "key_id", "team_id", "model_group")


def spend_daily_summary(*, spend_filter: SpendFilter, first_day: date | None,
                        last_day: date | None) -> list[dict[str, Any]]:
    """Spend per day (LiteLLM's summarised `/spend/logs`): totals, and spend per model group, key, team
    and user. Every day of the range is present, days without traffic at zero."""
    rows = list(daily_spend_list(spend_filter=spend_filter, first_day=first_day, last_day=last_day).values(
        "date", "key_id", "team_id", "model_group", "requests", "errors", "prompt_tokens", "completion_tokens",
        "cost"))
    key_ids = {row["key_id"] for row in rows if row["key_id"]}
    users = dict(VirtualKey.objects.filter(id__in=key_ids).exclude(user_id="").values_list("id", "user_id")) \
        if key_ids else {}
    days: dict[date, dict[str, Any]] = {}
    for row in rows:
        day = days.get(row["date"]) or days.setdefault(row["date"], _empty_day(row["date"]))
        cost = row["cost"]
        day["spend"] += cost
        day["requests"] += row["requests"]
        day["errors"] += row["errors"]
        day["prompt_tokens"] += row["prompt_tokens"]
        day["completion_tokens"] += row["completion_tokens"]
        day["total_tokens"] += row["prompt_tokens"] + row["completion_tokens"]
        for bucket, name in (("models", row["model_group"]), ("api_keys", row["key_id"]), ("teams", row["team_id"]),
                             ("users", users.get(row["key_id"], ""))):
            if name:
                day[bucket][name] += cost
    if days:
        first_day = first_day or min(days)
        last_day = last_day or max(days)
    summary = []
    day = first_day
    while day is not None and last_day is not None and day <= last_day:
        entry = days.get(day) or _empty_day(day)
        for bucket in ("models", "api_keys", "teams", "users"):
            entry[bucket] = dict(entry[bucket])
        entry["startTime"] = day.isoformat()
        summary.append(entry)
        day += timedelta(days=1)
    return summary


def _empty_day(day: date) -> dict[str, Any]:
    return {"startTime": day.isoformat(), "spend": 0.0, "requests": 0, "errors": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "total_tokens": 0, "models": defaultdict(float), "api_keys": defaultdict(float),
            "teams": defaultdict(float), "users": defaultdict(float)}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
