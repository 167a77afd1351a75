"""Writes about keys that must never happen inside a request: last use, and budget periods' resets.

Requests only note things in memory (`key_used`, `budget_rollover_noticed`); a per-worker background
thread (a greenlet under gevent), started by gunicorn's `post_worker_init` hook with `maintenance_start`,
writes them in batches every `GATEWAY_KEY_MAINTENANCE_SECONDS`: one UPDATE per batch of keys used, at
most once a minute per key, and the reset of budget periods that ended. Processes that never start it
(tests, management commands) keep a bounded amount of notes and write them only when asked.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from models_registry.periodic import PeriodicTask

logger = logging.getLogger("gatehouse.keys")

LAST_USED_EVERY_SECONDS = 60.0
DEFAULT_INTERVAL_SECONDS = 5.0
# Budgets are also swept on this schedule when no rollover was noticed (a key nobody calls still resets).
SWEEP_EVERY_SECONDS = 600.0
MAX_NOTES = 100_000  # keys noted between writes; past this the oldest notes are dropped


class _Maintenance:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, datetime] = {}
        self.noted_at: dict[str, float] = {}
        self.rollover_noticed = False
        self.last_sweep = 0.0
        self.exit_hook_registered = False
        self.task = PeriodicTask("key-maintenance", self.run_once)

    def key_used(self, key_id: str) -> None:
        now = time.monotonic()
        noted = self.noted_at.get(key_id)
        if noted is not None and now - noted < LAST_USED_EVERY_SECONDS:
            return
        with self.lock:
            if len(self.noted_at) >= MAX_NOTES:
                self.noted_at.clear()
            if len(self.pending) >= MAX_NOTES:
                self.pending.pop(next(iter(self.pending)))
            self.noted_at[key_id] = now
            self.pending[key_id] = timezone.now()

    def rollover(self) -> None:
        self.rollover_noticed = True

    def start(self) -> None:
        interval = float(getattr(settings, "GATEWAY_KEY_MAINTENANCE_SECONDS", DEFAULT_INTERVAL_SECONDS))
        if self.task.start(interval) and not self.exit_hook_registered:
            atexit.register(self.run_once)  # last-use times noted since the last run are written on exit
            self.exit_hook_registered = True

    def run_once(self) -> dict[str, int]:
        """Write what is pending now. Never raises: a failed batch is logged and retried next time."""
        from keys.services import budget_periods_reset, virtual_key_last_used_record

        with self.lock:
            pending, self.pending = self.pending, {}
            sweep = self.rollover_noticed or time.monotonic() - self.last_sweep >= SWEEP_EVERY_SECONDS
            self.rollover_noticed = False
        done = {"last_used": 0, "budgets_reset": 0}
        try:
            if pending:
                done["last_used"] = virtual_key_last_used_record(used=pending)
            if sweep:
                self.last_sweep = time.monotonic()
                done["budgets_reset"] = budget_periods_reset()
        except Exception:
            logger.exception("key maintenance failed; retrying on the next run")
            with self.lock:
                for key_id, used_at in pending.items():
                    self.pending.setdefault(key_id, used_at)
                self.rollover_noticed = self.rollover_noticed or sweep
        return done


_maintenance = _Maintenance()


def maintenance_start() -> None:
    """Start this process's background writer (gunicorn's `post_worker_init`; again after a fork is fine)."""
    _maintenance.start()


def key_used(key_id: str) -> None:
    """Note that a key was just used (at most one write per key per minute follows, in the background)."""
    _maintenance.key_used(key_id)


def budget_rollover_noticed() -> None:
    """A request saw a budget period end in memory: reset the stored period on the next run."""
    _maintenance.rollover()


def maintenance_run_once() -> dict[str, int]:
    """Write pending last-use times and reset ended budget periods now (tests; a graceful stop)."""
    return _maintenance.run_once()


def maintenance_forget() -> None:
    """Drop pending notes and the per-key throttle (tests)."""
    with _maintenance.lock:
        _maintenance.pending.clear()
        _maintenance.noted_at.clear()
        _maintenance.rollover_noticed = False
        _maintenance.last_sweep = 0.0
