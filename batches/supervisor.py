"""Keeping the embedded batch worker alive: `serve`'s worker is restarted when it dies.

A standalone `batch_worker` is the operator's to supervise (systemd, Kubernetes, compose restart
policies). The one `serve` starts has nobody else: gunicorn's master only looks after its web workers.
So `serve` starts `batch_worker --restart`, which runs the real worker as a child process and starts
a new one when it dies (a crash, an out-of-memory kill, a SIGKILL), waiting longer after each quick
death so a worker that cannot start does not spin. Its lease-based recovery does the rest: the new
worker takes over the dead one's parts once their leases run out. SIGTERM is passed on to the worker
(which records its lines and stops) and ends the supervision; so does the death of `serve` itself.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

logger = logging.getLogger("gatehouse.batches")

FIRST_RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
# A worker that ran this long before dying had started fine: the next restart waits the first delay again.
HEALTHY_AFTER_SECONDS = 60.0
CHECK_EVERY_SECONDS = 0.5


class WorkerSupervisor:
    """Runs `command` as a child process, again and again, until stopped or its own parent is gone."""

    def __init__(self, command: Sequence[str], *, environment: dict[str, str], grace_seconds: float,
                 parent_pid: int | None = None) -> None:
        self.command = list(command)
        self.environment = environment
        self.grace_seconds = grace_seconds
        self.parent_pid = parent_pid
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.restarts = 0

    def install_signals(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda signum, frame: self.stopping.set())

    def run(self) -> int:
        delay = FIRST_RESTART_DELAY_SECONDS
        while not self.stopping.is_set():
            started = time.monotonic()
            # The child watches this process: if the supervisor itself is killed, the worker stops too.
            environment = {**self.environment, "GATEWAY_BATCH_WORKER_PARENT_PID": str(os.getpid())}
            self.child = subprocess.Popen(self.command, env=environment)
            code = self._wait_child()
            if self.stopping.is_set():
                return code
            if time.monotonic() - started >= HEALTHY_AFTER_SECONDS:
                delay = FIRST_RESTART_DELAY_SECONDS
            self.restarts += 1
            logger.warning("embedded batch worker (pid %s) exited with %s; restarting in %.0f s",
                           self.child.pid, code, delay)
            if self.stopping.wait(delay):
                break
            delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)
        return 0

    def _wait_child(self) -> int:
        child = self.child
        while True:
            code = child.poll()
            if code is not None:
                return code
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                logger.warning("embedded batch worker: serve is gone; stopping")
                self.stopping.set()
            if self.stopping.is_set():
                return self._stop_child(child)
            time.sleep(CHECK_EVERY_SECONDS)

    def _stop_child(self, child: subprocess.Popen) -> int:
        return process_stop(child, grace_seconds=self.grace_seconds + 5)


def process_stop(process: subprocess.Popen, *, grace_seconds: float) -> int:
    """SIGTERM (a worker records its lines and stops), SIGKILL after `grace_seconds`; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The `batch_worker` command line to supervise: this one, without `--restart`."""
    return [sys.executable, *[argument for argument in arguments if argument != "--restart"]]
