"""Reads behind the operator dashboard: traffic, spend and tokens over time, top keys, deployment health.

Everything here reads the aggregates the log flush maintains, never `RequestLog`: a chart must cost the
same with a thousand logged requests or a billion. Each range picks the coarsest table that still gives
it enough points, and each read is one grouped query over an indexed time range:

| range  | points          | usage from                 | deployments from             |
|--------|-----------------|----------------------------|------------------------------|
| `hour` | 60 minutes      | `UsageRollup` minute rows  | `DeploymentRollup` minutes   |
| `day`  | 24 hours        | `UsageRollup` hour rows    | `DeploymentRollup` hours     |
| `30d`  | 30 days (UTC)   | `DailySpend`               | `DeploymentRollup` hours     |

The last point of every range is the current (unfinished) minute, hour or day; points without traffic
are zeros, so a chart's x axis never has gaps. The result is shaped for JSON as the dashboard draws it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.admin.utils import quote
from django.db.models import F, QuerySet, Sum
from django.urls import reverse

from keys.choices import RollupSpan
from keys.latency import LATENCY_COLUMNS, latency_percentile
from keys.models import DailySpend, DeploymentRollup, UsageRollup, VirtualKey
from models_registry.dashboard import registry_deployments

DAY = "day"
# range name -> (points, one point's length, the rollup span it reads; DAY is `DailySpend`)
RANGES: dict[str, tuple[int, timedelta, str]] = {
    "hour": (60, timedelta(minutes=1), RollupSpan.MINUTE),
    "day": (24, timedelta(hours=1), RollupSpan.HOUR),
    "30d": (30, timedelta(days=1), DAY),
}
# Groups beyond this many (the busiest are kept) are summed into one series, so a chart stays readable.
MAX_SERIES_GROUPS = 10
OTHER_GROUPS = "(other groups)"
TOP_KEYS = 10
USAGE_SUMS = {"sum_requests": Sum("requests"), "sum_errors": Sum("errors"), "sum_prompt": Sum("prompt_tokens"),
              "sum_completion": Sum("completion_tokens"), "sum_cost": Sum("cost")}


@dataclass(frozen=True, slots=True)
class DashboardWindow:
    """The points a range covers: `points` steps of `step` from `start` (UTC) up to `end` (exclusive)."""

    range_name: str
    span: str
    start: datetime
    end: datetime
    step: timedelta
    points: int

    def labels(self) -> list[str]:
        """Each point's first instant: an ISO date for days, an ISO UTC timestamp otherwise."""
        moments = [self.start + self.step * index for index in range(self.points)]
        if self.span == DAY:
            return [moment.date().isoformat() for moment in moments]
        return [_iso(moment) for moment in moments]

    def index_of(self, moment: datetime | date) -> int | None:
        """The point a row's `start` (or `date`) falls on; None outside the window."""
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        index = int((moment - self.start) // self.step)
        return index if 0 <= index < self.points else None


def dashboard_window(range_name: str, *, now: datetime) -> DashboardWindow:
    """The window of `range_name` (one of RANGES) whose last point holds `now`."""
    points, step, span = RANGES[range_name]
    now = now.astimezone(UTC)
    if span == RollupSpan.MINUTE:
        last = now.replace(second=0, microsecond=0)
    elif span == RollupSpan.HOUR:
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return DashboardWindow(range_name=range_name, span=span, start=last - step * (points - 1), end=last + step,
                           step=step, points=points)


def _usage_rows(window: DashboardWindow, *, key_id: str | None, team_id: str | None) -> QuerySet:
    """The aggregate rows inside the window (the filters narrow them), unordered for grouping."""
    if window.span == DAY:
        rows = DailySpend.objects.filter(date__gte=window.start.date(), date__lt=window.end.date())
    else:
        rows = UsageRollup.objects.filter(span=window.span, start__gte=window.start, start__lt=window.end)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    return rows.order_by()


def usage_traffic(*, window: DashboardWindow, key_id: str | None = None, team_id: str | None = None,
                  top_keys: int = TOP_KEYS) -> dict[str, Any]:
    """Requests, errors, cost and tokens per point and model group, their totals, and the top keys by spend.

    Three queries at most: the grouped series, the ranked keys, and the ranked keys' aliases.
    """
    rows = _usage_rows(window, key_id=key_id, team_id=team_id)
    moment_field = "date" if window.span == DAY else "start"
    per_group: dict[str, dict[str, list]] = defaultdict(lambda: _empty_series(window.points))
    for row in rows.values(moment_field, "model_group").annotate(**USAGE_SUMS):
        index = window.index_of(row[moment_field])
        if index is None:
            continue
        series = per_group[row["model_group"]]
        series["requests"][index] += row["sum_requests"] or 0
        series["errors"][index] += row["sum_errors"] or 0
        series["cost"][index] += row["sum_cost"] or 0.0
        series["prompt_tokens"][index] += row["sum_prompt"] or 0
        series["completion_tokens"][index] += row["sum_completion"] or 0
    groups = _busiest_first(per_group)
    totals = {name: sum(sum(series[name]) for series in per_group.values())
              for name in ("requests", "errors", "cost", "prompt_tokens", "completion_tokens")}
    totals["cost"] = _usd(totals["cost"])
    totals["tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    totals["error_rate"] = _ratio(totals["errors"], totals["requests"])
    return {
        "range": window.range_name,
        "span": window.span,
        "start": _iso(window.start),
        "end": _iso(window.end),
        "labels": window.labels(),
        "filters": {"key_id": key_id, "team_id": team_id},
        "series": [_series_out(name, series) for name, series in groups],
        "totals": totals,
        "top_keys": _top_keys(rows, limit=top_keys),
    }


def _empty_series(points: int) -> dict[str, list]:
    return {"requests": [0] * points, "errors": [0] * points, "cost": [0.0] * points,
            "prompt_tokens": [0] * points, "completion_tokens": [0] * points}


def _busiest_first(per_group: dict[str, dict[str, list]]) -> list[tuple[str, dict[str, list]]]:
    """Groups by requests (then name); past MAX_SERIES_GROUPS the quieter ones are summed into OTHER_GROUPS."""
    ranked = sorted(per_group.items(), key=lambda item: (-sum(item[1]["requests"]), item[0]))
    if len(ranked) <= MAX_SERIES_GROUPS:
        return ranked
    kept, rest = ranked[:MAX_SERIES_GROUPS - 1], ranked[MAX_SERIES_GROUPS - 1:]
    other = {name: [sum(values) for values in zip(*(series[name] for _, series in rest), strict=True)]
             for name in rest[0][1]}
    return [*kept, (OTHER_GROUPS, other)]


def _series_out(model_group: str, series: dict[str, list]) -> dict[str, Any]:
    tokens = [prompt + completion for prompt, completion in zip(series["prompt_tokens"],
                                                                 series["completion_tokens"], strict=True)]
    return {"model_group": model_group, "requests": series["requests"], "errors": series["errors"],
            "cost": [_usd(cost) for cost in series["cost"]], "tokens": tokens}


def _top_keys(rows: QuerySet, *, limit: int) -> list[dict[str, Any]]:
    """The keys that spent most in the window (then most requests), with their alias and team: one query to
    rank them in SQL, one to name the few ranked (a key deleted since keeps its id and has no alias)."""
    ranked = list(rows.values("key_id").annotate(
        sum_requests=Sum("requests"), sum_errors=Sum("errors"), sum_cost=Sum("cost"),
        sum_tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
    ).order_by("-sum_cost", "-sum_requests", "key_id")[:limit])
    ids = [row["key_id"] for row in ranked if row["key_id"]]
    named = {key["id"]: key for key in VirtualKey.objects.filter(id__in=ids).values("id", "key_alias", "team_id")}
    keys = []
    for row in ranked:
        found = named.get(row["key_id"], {})
        keys.append({
            "key_id": row["key_id"],
            "key_alias": found.get("key_alias"),
            "team_id": found.get("team_id"),
            "master_key": not row["key_id"],
            "requests": row["sum_requests"] or 0,
            "errors": row["sum_errors"] or 0,
            "tokens": row["sum_tokens"] or 0,
            "cost": _usd(row["sum_cost"] or 0.0),
            "admin_url": reverse("admin:keys_virtualkey_change", args=[quote(row["key_id"])]) if found else None,
        })
    return keys


def deployment_health(*, window: DashboardWindow) -> dict[str, Any]:
    """Per deployment (and group) in the window: requests, error rate, mean and p50/p95 latency, cooldown.

    One grouped query sums the rollup rows' counts and latency histograms in SQL; percentiles are read back
    from the summed buckets. Deployments of the registry with no traffic in the window are listed too
    (zero requests, no latency), and so are deployments since removed that still have traffic in it.
    """
    span = RollupSpan.MINUTE if window.span == RollupSpan.MINUTE else RollupSpan.HOUR
    sums = {"sum_requests": Sum("requests"), "sum_errors": Sum("errors"), "sum_latency": Sum("latency_ms_total"),
            **{f"sum_{column}": Sum(column) for column in LATENCY_COLUMNS}}
    rows = (DeploymentRollup.objects.filter(span=span, start__gte=window.start, start__lt=window.end)
            .order_by().values("deployment_id", "model_group").annotate(**sums))
    registry = {deployment.id: deployment for deployment in registry_deployments()}
    health, seen = [], set()
    for row in rows:
        deployment_id = row["deployment_id"]
        seen.add(deployment_id)
        requests = row["sum_requests"] or 0
        counts = [row[f"sum_{column}"] or 0 for column in LATENCY_COLUMNS]
        health.append(_health_row(deployment_id, row["model_group"], registry.get(deployment_id),
                                  requests=requests, errors=row["sum_errors"] or 0,
                                  latency_total=row["sum_latency"] or 0.0, counts=counts))
    for deployment_id, deployment in registry.items():
        if deployment_id not in seen:
            health.append(_health_row(deployment_id, deployment.model_group, deployment, requests=0, errors=0,
                                      latency_total=0.0, counts=[]))
    health.sort(key=lambda item: (item["model_group"], item["deployment_id"]))
    return {"range": window.range_name, "span": span, "start": _iso(window.start), "end": _iso(window.end),
            "deployments": health}


def _health_row(deployment_id: str, model_group: str, deployment, *, requests: int, errors: int,
                latency_total: float, counts: list[int]) -> dict[str, Any]:
    p50, p95 = latency_percentile(counts, 0.5), latency_percentile(counts, 0.95)
    cooldown = deployment.cooldown_seconds if deployment is not None else None
    return {
        "deployment_id": deployment_id,
        "model_group": model_group,
        "provider": deployment.provider if deployment is not None else None,
        "in_registry": deployment is not None,
        "requests": requests,
        "errors": errors,
        "error_rate": _ratio(errors, requests),
        "latency_mean_ms": round(latency_total / requests, 1) if requests else None,
        "latency_p50_ms": round(p50, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95, 1) if p95 is not None else None,
        "cooldown_seconds": round(cooldown, 1) if cooldown is not None else None,
        "admin_url": reverse("admin:models_registry_deployment_change", args=[quote(deployment_id)])
        if deployment is not None else None,
    }


def _usd(amount: float) -> float:
    """A sum of float costs without its binary noise (0.1 + 0.2 shows as 0.3), still exact to 1e-10 USD."""
    return round(amount, 10)


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
