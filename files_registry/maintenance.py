"""Background work on managed files in each worker: deleting provider copies that failed to delete,
expiring files past their `expires_after`, purging rows of deleted files once nothing is left.

Started by gunicorn's `post_worker_init` (`files_maintenance_start`), like `keys.maintenance`; every
`GATEWAY_FILE_MAINTENANCE_SECONDS` one pass runs. Several workers may run a pass at once: each step is
idempotent (a copy already deleted is a 404 the adapter accepts; purges and updates are conditional).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import connections

logger = logging.getLogger("gatehouse.files")

DEFAULT_INTERVAL_SECONDS = 60.0


class _Maintenance:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        interval = float(getattr(settings, "GATEWAY_FILE_MAINTENANCE_SECONDS", DEFAULT_INTERVAL_SECONDS))
        if interval <= 0:
            return
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None:
                return
            self.pid = os.getpid()  # after a fork the parent's thread does not exist here: start our own
            self.thread = threading.Thread(target=self.loop, args=(interval,), name="gatehouse-file-maintenance",
                                           daemon=True)
            self.thread.start()

    def loop(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            files_maintenance_run_once()
            connections.close_all()


_maintenance = _Maintenance()


def files_maintenance_start() -> None:
    """Start this process's background pass (gunicorn's `post_worker_init`; again after a fork is fine)."""
    _maintenance.start()


def files_maintenance_run_once() -> dict[str, int]:
    """One pass: expire, delete leftover copies, purge. Never raises: a failure is logged and retried next time."""
    from files_registry.services import managed_file_purge, managed_files_expire, provider_copies_delete

    done = {"expired": 0, "copies_deleted": 0, "copies_failed": 0, "purged": 0}
    try:
        done["expired"] = managed_files_expire()
        counts = provider_copies_delete()
        done["copies_deleted"], done["copies_failed"] = counts["deleted"], counts["failed"]
        done["purged"] = managed_file_purge()
    except Exception:
        logger.exception("file maintenance failed; retrying on the next run")
    return done
