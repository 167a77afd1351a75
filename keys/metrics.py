"""Prometheus metrics of proxied requests, observed off the request path (served at `GET /metrics`).

A request costs nothing here while it runs: the view finishes its call by queueing a `UsageRecord`
(`keys.log_buffer`), and the buffer's background flusher hands what it queued since its last tick to
`usage_records_observe`, which adds them up per label set (one counter increment per label set and tick,
not per request) before anything touches a metric. Under gunicorn every metric write goes to a small
memory-mapped file (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR` set by
`gunicorn.conf.py`) costing ~15 microseconds, which is why it is done per label set, never per request.

Label values stay few: model groups, deployment ids and operations come from the registry, HTTP status
codes and error types from the gateway; a model name a client made up (a refused request) is never a label.
Cooldowns are not counted but read when Prometheus scrapes (`DeploymentCooldownCollector`).

Outside gunicorn (tests, management commands) the default in-process registry holds the same metrics.
See docs/metrics.md for every metric.
"""
from __future__ import annotations

import bisect
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from keys.choices import RequestStatus
from keys.latency import LATENCY_BOUNDS_MS
from keys.usage import UsageRecord
from models_registry.cooldowns import cooldowns_active
from models_registry.snapshot import current_snapshot

logger = logging.getLogger("gatehouse.metrics")

# The classic text format, which every Prometheus (and anything that scrapes like it) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# The dashboard's latency buckets (keys/latency.py), in seconds, so both tell the same story.
DURATION_BUCKETS_SECONDS: tuple[float, ...] = tuple(bound / 1000 for bound in LATENCY_BOUNDS_MS)
TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS: tuple[float, ...] = (
    0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
# The label a request gets when it names no model group the registry knows (refused before routing).
NO_MODEL_GROUP = ""
# Error types are the gateway's own or an upstream's envelope `type`: cut as the request log's column is.
ERROR_TYPE_LENGTH = 64

REQUESTS = Counter(
    "gatehouse_requests", "Proxied requests, by the HTTP status the client got (499: the client hung up).",
    ["operation", "model_group", "deployment", "status"])
REQUEST_ERRORS = Counter(
    "gatehouse_request_errors", "Proxied requests that did not succeed, by the error type the client got.",
    ["model_group", "deployment", "error_type"])
REQUEST_DURATION = Histogram(
    "gatehouse_request_duration_seconds", "Time from a request's arrival to its last byte (streams included).",
    ["model_group", "deployment"], buckets=DURATION_BUCKETS_SECONDS)
TIME_TO_FIRST_TOKEN = Histogram(
    "gatehouse_time_to_first_token_seconds", "Time from a streamed request's arrival to the upstream's first chunk.",
    ["model_group", "deployment"], buckets=TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS)
TOKENS = Counter(
    "gatehouse_tokens", "Tokens used, as the providers counted them.", ["model_group", "type"])
SPEND = Counter("gatehouse_spend_usd", "What the proxied requests cost, in US dollars.", ["model_group"])
IN_FLIGHT = Gauge(
    "gatehouse_in_flight_requests", "Requests being routed, waiting on their upstream or streaming, all workers.",
    multiprocess_mode="livesum")
LOG_BUFFER_ROWS = Gauge(
    "gatehouse_log_buffer_rows", "Request log rows waiting in the workers' buffers for the database.",
    multiprocess_mode="livesum")
LOG_BUFFER_DROPPED = Counter(
    "gatehouse_log_buffer_dropped_rows", "Request log rows dropped because a buffer was full (a long database "
    "outage).")


# -- in-flight calls: on the request path, so a set add and discard (atomic, idempotent), nothing more --
_in_flight: set[str] = set()


def in_flight_add(request_id: str) -> None:
    """A call is admitted (`proxy_api.calls.prepared_call`); counted until `in_flight_discard`."""
    _in_flight.add(request_id)


def in_flight_discard(request_id: str) -> None:
    """The call finished (`proxy_api.calls.finish_call`: once per call, abandoned streams included)."""
    _in_flight.discard(request_id)


def in_flight_count() -> int:
    return len(_in_flight)


class _Published:
    """The gauges this process last wrote: a tick that changes nothing writes nothing."""

    in_flight: int | None = None
    buffer_rows: int | None = None
    dropped: int = 0


_published = _Published()


def buffer_gauges_publish(*, buffer_rows: int, dropped_total: int) -> None:
    """Write this process's in-flight calls and log-buffer depth (each tick of the flusher, and at a scrape)."""
    in_flight = len(_in_flight)
    if in_flight != _published.in_flight:
        IN_FLIGHT.set(in_flight)
        _published.in_flight = in_flight
    if buffer_rows != _published.buffer_rows:
        LOG_BUFFER_ROWS.set(buffer_rows)
        _published.buffer_rows = buffer_rows
    if dropped_total > _published.dropped:
        LOG_BUFFER_DROPPED.inc(dropped_total - _published.dropped)
        _published.dropped = dropped_total


# -- observing finished requests (the flusher's tick) --

class _Tick:
    """Everything one tick observed, added up per label set."""

    def __init__(self) -> None:
        self.requests: dict[tuple, int] = defaultdict(int)
        self.errors: dict[tuple, int] = defaultdict(int)
        self.durations: dict[tuple, list[float]] = defaultdict(list)
        self.first_tokens: dict[tuple, list[float]] = defaultdict(list)
        self.tokens: dict[tuple, int] = defaultdict(int)
        self.spend: dict[str, float] = defaultdict(float)

    def add(self, record: UsageRecord, group: str) -> None:
        deployment = record.deployment_id
        self.requests[(record.operation, group, deployment, str(record.status_code))] += 1
        if record.status != RequestStatus.OK:
            self.errors[(group, deployment, record.error_type[:ERROR_TYPE_LENGTH] or "unknown")] += 1
        pair = (group, deployment)
        self.durations[pair].append(max(0.0, record.latency_ms) / 1000)
        if record.time_to_first_token_ms is not None:
            self.first_tokens[pair].append(max(0.0, record.time_to_first_token_ms) / 1000)
        if record.prompt_tokens > 0:
            self.tokens[(group, "prompt")] += record.prompt_tokens
        if record.completion_tokens > 0:
            self.tokens[(group, "completion")] += record.completion_tokens
        if record.cost > 0:
            self.spend[group] += record.cost

    def write(self) -> None:
        for labels, count in self.requests.items():
            REQUESTS.labels(*labels).inc(count)
        for labels, count in self.errors.items():
            REQUEST_ERRORS.labels(*labels).inc(count)
        for labels, values in self.durations.items():
            histogram_add(REQUEST_DURATION.labels(*labels), values, DURATION_BUCKETS_SECONDS)
        for labels, values in self.first_tokens.items():
            histogram_add(TIME_TO_FIRST_TOKEN.labels(*labels), values, TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS)
        for labels, count in self.tokens.items():
            TOKENS.labels(*labels).inc(count)
        for group, cost in self.spend.items():
            SPEND.labels(group).inc(cost)


def histogram_add(child: Histogram, values: Sequence[float], bounds: Sequence[float]) -> None:
    """Observe `values` with one write per bucket they fall in, rather than two writes per value.

    prometheus_client observes one value at a time; its histogram child keeps one value per bucket
    (`_buckets`, not cumulative, the last one `+Inf`) and `_sum`, which are added to directly here. Should
    a future version lay them out differently, each value is observed the ordinary way (tests compare both).
    """
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if not isinstance(buckets, list) or len(buckets) != len(bounds) + 1 or total is None:
        for value in values:
            child.observe(value)
        return
    counts = [0] * len(buckets)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))


def usage_records_observe(records: Iterable[UsageRecord]) -> int:
    """Count finished requests in the metrics: requests, errors, durations, first tokens, tokens, spend.

    Returns how many records were observed. A model group the registry does not know (a refused request
    naming anything it likes) is counted under `NO_MODEL_GROUP`, so clients cannot add label values.
    """
    tick = _Tick()
    known: frozenset[str] | None = None
    observed = 0
    for record in records:
        group = record.model_group
        if group and not record.deployment_id:
            if known is None:
                known = _known_groups()
            if group not in known:
                group = NO_MODEL_GROUP
        tick.add(record, group)
        observed += 1
    if observed:
        tick.write()
    return observed


def _known_groups() -> frozenset[str]:
    try:
        return frozenset(current_snapshot().groups)
    except Exception:  # the registry cannot be read now: count the unknown as unknown rather than lose them
        logger.warning("metrics: the model registry cannot be read; refused requests counted without a model group",
                       exc_info=True)
        return frozenset()


# -- scraping --

class DeploymentCooldownCollector:
    """`gatehouse_deployment_cooldown_seconds`: every enabled deployment's cooldown, read at scrape time.

    Seconds left for a deployment out of rotation, 0 for one in it. Cooldowns live in the shared cache
    (Redis when configured), so any worker's scrape sees every worker's; with the local-memory cache each
    worker has its own, and the scrape shows those of the worker that answered.
    """

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            deployments = sorted(current_snapshot().by_id.values(), key=lambda deployment: deployment.id)
            cooling = cooldowns_active(deployment.id for deployment in deployments)
        except Exception:
            logger.warning("metrics: deployment cooldowns cannot be read now; left out of this scrape", exc_info=True)
            return
        family = GaugeMetricFamily(
            "gatehouse_deployment_cooldown_seconds",
            "Seconds until a cooling-down deployment is routed to again (0: in rotation).",
            labels=["model_group", "deployment"])
        for deployment in deployments:
            family.add_metric([deployment.model_name, deployment.id], round(cooling.get(deployment.id, 0.0), 3))
        yield family


class _ThisProcess:
    """The default registry's metrics (this process's own values) as one collector of the scrape registry."""

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        yield from REGISTRY.collect()


class _ScrapeRegistry:
    directory: str | None = None
    registry: CollectorRegistry | None = None


_scrape = _ScrapeRegistry()


def multiprocess_directory() -> str | None:
    """Where every process of this gateway writes its metrics, or None (a single process)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return directory if directory and os.path.isdir(directory) else None


def scrape_registry() -> CollectorRegistry:
    """What `GET /metrics` shows: every process's files merged (under gunicorn) or this process's
    registry, plus the cooldowns read now."""
    directory = multiprocess_directory()
    if _scrape.registry is None or _scrape.directory != directory:
        registry = CollectorRegistry()
        if directory is not None:
            MultiProcessCollector(registry, path=directory)
        else:
            registry.register(_ThisProcess())
        registry.register(DeploymentCooldownCollector())
        _scrape.registry, _scrape.directory = registry, directory
    return _scrape.registry


def metrics_exposition() -> bytes:
    """The metrics page in Prometheus' text format (`CONTENT_TYPE`)."""
    return generate_latest(scrape_registry())
