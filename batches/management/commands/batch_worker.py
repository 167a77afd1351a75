"""`python manage.py batch_worker [--threads N] [--sweep-seconds S] [--metrics-port [HOST:]PORT]`: run batch
work on this machine.

`serve` starts one of these by default, under `--restart` (a new one whenever it dies); run more
(on any machine sharing the PostgreSQL database) to run more batch parts at once. See `batches/worker.py`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches.metrics import metrics_address, metrics_server_start
from batches.supervisor import WorkerSupervisor, worker_command
from batches.worker import DEFAULT_GRACE_SECONDS, DEFAULT_THREADS, SQLITE_THREADS, BatchWorker
from models_registry.config import ConfigError, load_config
from models_registry.runtime import use_gateway_config

PARENT_ENV = "GATEWAY_BATCH_WORKER_PARENT_PID"


class Command(BaseCommand):
    help = "Run a Gatehouse batch worker (task loops in threads plus the recovery sweep)."

    def add_arguments(self, parser: CommandParser) -> None:
        threads = os.environ.get("GATEWAY_BATCH_WORKER_THREADS")
        parser.add_argument("--threads", type=int, default=int(threads) if threads else None,
                            help=f"Task loops in this process, each running one batch part at a time (default: "
                                 f"{DEFAULT_THREADS} on PostgreSQL, {SQLITE_THREADS} on SQLite).")
        parser.add_argument("--sweep-seconds", type=float, default=None,
                            help="How often to look for work left behind (default: GATEWAY_BATCH_SWEEP_SECONDS).")
        parser.add_argument("--grace-seconds", type=float, default=DEFAULT_GRACE_SECONDS,
                            help="On SIGTERM, how long running parts get to record their lines and stop.")
        parser.add_argument("--restart", action="store_true",
                            help="Supervise: run the worker as a child process and start a new one whenever it "
                                 "dies (how `serve` runs its embedded worker).")
        parser.add_argument("--config", default=None,
                            help="The gateway's config.yaml (default: the GATEWAY_CONFIG environment variable).")
        parser.add_argument("--metrics-port", default=None, metavar="[HOST:]PORT",
                            help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics, without "
                                 "authentication (HOST defaults to 127.0.0.1; 0.0.0.0 for every interface). For a "
                                 "worker that does not share the gateway's metrics directory (docs/metrics.md).")

    def handle(self, *args, **options) -> None:
        if options["threads"] is not None and options["threads"] < 1:
            raise CommandError("--threads must be at least 1")
        if options["metrics_port"] is not None:
            try:
                metrics_address(options["metrics_port"])
            except ValueError as error:
                raise CommandError(f"--metrics-port must be PORT or HOST:PORT: {error}") from error
        if options["config"]:
            path = Path(options["config"]).resolve()
            try:
                use_gateway_config(load_config(path))
            except ConfigError as error:
                raise CommandError(f"invalid config {path}: {error}") from error
        parent = os.environ.get(PARENT_ENV)
        parent_pid = int(parent) if parent and parent.isdigit() else None
        if options["restart"]:
            supervisor = WorkerSupervisor(worker_command(sys.argv), environment=dict(os.environ),
                                          grace_seconds=options["grace_seconds"], parent_pid=parent_pid)
            supervisor.install_signals()
            supervisor.run()
            return
        if options["metrics_port"] is not None:  # the supervised child serves them, not its supervisor
            try:
                metrics_server_start(options["metrics_port"])
            except OSError as error:
                raise CommandError(f"--metrics-port {options['metrics_port']}: {error}") from error
        worker = BatchWorker(threads=options["threads"], sweep_seconds=options["sweep_seconds"],
                             grace_seconds=options["grace_seconds"],
                             parent_pid=parent_pid)
        worker.install_signals()
        try:
            worker.run()
        except ConfigError as error:
            raise CommandError(f"invalid config: {error}") from error
