"""A batch worker process: task loops in plain threads plus the recovery sweep.

`python manage.py batch_worker` (and the worker `serve` embeds) runs `threads` loops of
django-tasks-db's `Worker`, each claiming one task at a time from the `batches` and `default` queues
(SKIP LOCKED on PostgreSQL, so any number of processes on any number of machines share the work;
SQLite's exclusive transactions with one process), and runs `recovery.sweep` every
`GATEWAY_BATCH_SWEEP_SECONDS` in the main thread; the same sweep prunes old request logs and minute
rollups at start and then hourly (`keys.retention.RetentionSchedule`). The process is not
gevent-patched: a gateway part runs its lines in threads of its own (`batches.gateway_engine`).

The gateway config (router settings, drop_params) is read the way the web workers read it, from the
file `GATEWAY_CONFIG` names (`serve` sets it for the worker it starts), once, at start: a broken
config stops the worker before it claims anything.

SIGTERM or SIGINT: no loop claims another task; running parts stop starting lines, record the ones in
flight, give their lease back and are queued again; the process exits once they have, or when the
grace runs out (anything still running is then left to its lease running out: nothing is lost).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid

from django.conf import settings
from django.db import close_old_connections, connections
from django_tasks_db.management.commands.db_worker import Worker

from batches import recovery
from batches.gateway_engine import STOPPING
from batches.tasks import BATCH_QUEUE
from keys.retention import RetentionSchedule
from models_registry.runtime import gateway_config

logger = logging.getLogger("gatehouse.batches")

QUEUES = [BATCH_QUEUE, "default"]
DEFAULT_GRACE_SECONDS = 30.0
# PostgreSQL claims tasks with SKIP LOCKED: several loops per process, looking often, cost little.
DEFAULT_THREADS = 4
POLL_INTERVAL_SECONDS = 0.2
# SQLite claims a task in an EXCLUSIVE transaction, which (without WAL) makes the web workers' reads wait
# and, under gevent, blocks them: one loop looking once a second keeps that negligible. SQLite writes one
# at a time anyway, so more loops would not run more parts.
SQLITE_THREADS = 1
SQLITE_POLL_INTERVAL_SECONDS = 1.0


def _on_sqlite() -> bool:
    return connections["default"].vendor == "sqlite"


class BatchWorker:
    """One worker process: `threads` task loops and the sweep, until `stop()` (or a signal)."""

    def __init__(self, *, threads: int | None = None, sweep_seconds: float | None = None,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS, interval: float | None = None,
                 parent_pid: int | None = None) -> None:
        """`threads` and `interval` default to what suits the database (see `SQLITE_THREADS`)."""
        sqlite = _on_sqlite()
        if threads is None:
            threads = SQLITE_THREADS if sqlite else DEFAULT_THREADS
        if interval is None:
            interval = SQLITE_POLL_INTERVAL_SECONDS if sqlite else POLL_INTERVAL_SECONDS
        self.threads = max(1, threads)
        self.sweep_seconds = settings.GATEWAY_BATCH_SWEEP_SECONDS if sweep_seconds is None else sweep_seconds
        self.grace_seconds = grace_seconds
        self.parent_pid = parent_pid
        self.stopping = threading.Event()
        self.name = f"batch-worker-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.loops = [Worker(queue_names=QUEUES, interval=interval, batch=False, backend_name="default",
                             startup_delay=False, max_tasks=None, worker_id=f"{self.name}-{index}"[:64],
                             excluded_queue_names=[])
                      for index in range(self.threads)]
        self.loop_threads: list[threading.Thread] = []
        # Old request logs and minute rollups, pruned by the sweep at most hourly (keys/retention.py).
        self.retention = RetentionSchedule()

    def install_signals(self) -> None:
        """SIGTERM / SIGINT stop the worker gracefully (the main thread only may install handlers)."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda signum, frame: self.stop())

    def stop(self) -> None:
        """Stop claiming tasks; running parts stop at their next write."""
        STOPPING.set()
        for loop in self.loops:
            loop.running = False
        self.stopping.set()

    def run(self) -> None:
        """Run until stopped; returns once every loop ended or the grace ran out."""
        STOPPING.clear()
        gateway_config()  # the config is read now: a broken one stops the worker before any work
        for loop in self.loops:
            thread = threading.Thread(target=self._loop, args=(loop,), name=loop.worker_id, daemon=True)
            thread.start()
            self.loop_threads.append(thread)
        logger.info("batch worker %s: %d task loops on queues %s, sweep every %ss", self.name, self.threads,
                    ",".join(QUEUES), self.sweep_seconds)
        next_sweep = time.monotonic()
        while not self.stopping.is_set():
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                logger.warning("batch worker %s: the process that started it is gone; stopping", self.name)
                self.stop()
                break
            if self.sweep_seconds > 0 and time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + self.sweep_seconds
            self.stopping.wait(0.5)
        deadline = time.monotonic() + self.grace_seconds
        for thread in self.loop_threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        left = sum(1 for thread in self.loop_threads if thread.is_alive())
        if left:
            logger.warning("batch worker %s: %d task loops still busy after the grace; leaving them to their leases",
                           self.name, left)
        logger.info("batch worker %s stopped", self.name)

    def _loop(self, loop: Worker) -> None:
        try:
            loop.run()
        except Exception:
            logger.exception("batch worker loop %s failed", loop.worker_id)
        finally:
            _close_connections()

    def _sweep(self) -> None:
        try:
            close_old_connections()
            recovery.sweep()
        except Exception:
            logger.exception("batch recovery sweep failed")
        try:
            self.retention.run_if_due()  # logs its own failures and retries a minute later
        finally:
            _close_connections()


def _close_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
