"""Work each gateway worker repeats in the background: one daemon loop per task and process.

Keys' last-use times and budget resets, managed files' leftover copies and deployment health checks
all run this way. Under gunicorn's gevent workers `threading` is monkey-patched, so each loop is a
greenlet. Loops are started from gunicorn's `post_worker_init`, never on import: management commands
and test processes do no background work unless they start it themselves. After a fork the parent's
loop does not exist in the child, so `start` there starts the child's own.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger("gatehouse.periodic")


class PeriodicTask:
    """`work` every `interval` seconds in a daemon loop of this process; its failures are logged, never raised."""

    def __init__(self, name: str, work: Callable[[], object], *, run_at_start: bool = False) -> None:
        self.name = name
        self.work = work
        self.run_at_start = run_at_start
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def start(self, interval: float) -> bool:
        """Start the loop unless `interval` is not positive; returns whether it runs in this process."""
        if interval <= 0:
            return False
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return True
            self.pid = os.getpid()
            self.stopping.clear()
            self.thread = threading.Thread(target=self._loop, args=(interval,), name=f"gatehouse-{self.name}",
                                           daemon=True)
            self.thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
        self.thread = None

    def _loop(self, interval: float) -> None:
        if self.run_at_start:
            self._run()
        while not self.stopping.wait(interval):
            self._run()

    def _run(self) -> None:
        try:
            self.work()
        except Exception:
            logger.exception("background task %s failed; it runs again on schedule", self.name)
        finally:
            connections.close_all()  # this loop's own connections: never held between runs
