"""Background work on managed files in each worker: deleting provider copies that failed to delete,
expiring files past their `expires_after`, purging rows of deleted files once nothing is left.

Started by gunicorn's `post_worker_init` (`files_maintenance_start`), like `keys.maintenance`; every
`GATEWAY_FILE_MAINTENANCE_SECONDS` one pass runs. Several workers may run a pass at once: each step is
idempotent (a copy already deleted is a 404 the adapter accepts; purges and updates are conditional).
"""
from __future__ import annotations

import logging

from django.conf import settings

from models_registry.periodic import PeriodicTask

logger = logging.getLogger("gatehouse.files")

DEFAULT_INTERVAL_SECONDS = 60.0


def files_maintenance_start() -> None:
    """Start this process's background pass (gunicorn's `post_worker_init`; again after a fork is fine)."""
    _maintenance.start(float(getattr(settings, "GATEWAY_FILE_MAINTENANCE_SECONDS", DEFAULT_INTERVAL_SECONDS)))


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


_maintenance = PeriodicTask("file-maintenance", files_maintenance_run_once)
