"""Prometheus metrics of batch work: lines finished, counted once they are durably recorded.

The embedded batch worker is a child of gunicorn's master and inherits its `PROMETHEUS_MULTIPROC_DIR`,
so its counts land in the files every gateway worker's `GET /metrics` adds up. A standalone
`manage.py batch_worker` elsewhere cannot share those files: `--metrics-port` serves its own page
(`metrics_server_start`). See docs/metrics.md.
"""
from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from prometheus_client import REGISTRY, Counter, start_http_server

logger = logging.getLogger("gatehouse.batches")

DEFAULT_METRICS_HOST = "127.0.0.1"

BATCH_LINES = Counter(
    "gatehouse_batch_lines", "Batch lines finished and recorded, by model group and outcome (completed or failed).",
    ["model_group", "outcome"])


def batch_lines_count(*, model_group: str, completed: int, failed: int) -> None:
    """Count lines recorded in the current transaction, once it commits (a rolled-back write, whose lines
    run again, is not counted; nor is a line already recorded by an earlier worker)."""
    if completed or failed:
        transaction.on_commit(partial(_lines_add, model_group, completed, failed))


def _lines_add(model_group: str, completed: int, failed: int) -> None:
    if completed:
        BATCH_LINES.labels(model_group, "completed").inc(completed)
    if failed:
        BATCH_LINES.labels(model_group, "failed").inc(failed)


def metrics_address(value: str) -> tuple[str, int]:
    """`PORT` or `HOST:PORT` (`--metrics-port`) as (host, port); loopback unless a host is named.

    Raises ValueError for anything else.
    """
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or DEFAULT_METRICS_HOST
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host, number


def metrics_server_start(value: str) -> tuple[str, int]:
    """Serve this process's metrics (`GET /metrics`, no authentication) on `value` ([HOST:]PORT), from a
    daemon thread; returns the address bound."""
    host, port = metrics_address(value)
    start_http_server(port, addr=host, registry=REGISTRY)
    logger.info("batch worker metrics on http://%s:%d/metrics", host, port)
    return host, port
