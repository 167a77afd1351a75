"""Enumerations of managed batches and their parts, shared by the engines, the API and the admin."""
from django.db import models

from models_registry.batch_engines import GATEWAY, NATIVE


class BatchStatus(models.TextChoices):
    """OpenAI's batch statuses, exactly: the API shows these and nothing else."""

    VALIDATING = "validating", "Validating"
    FAILED = "failed", "Failed"
    IN_PROGRESS = "in_progress", "In progress"
    FINALIZING = "finalizing", "Finalizing"
    COMPLETED = "completed", "Completed"
    EXPIRED = "expired", "Expired"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"


# A batch in one of these is over: no worker touches it again.
BATCH_TERMINAL = frozenset({BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED})
# A batch in one of these still has work (or a cancellation) under way.
BATCH_ACTIVE = frozenset({BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING,
                          BatchStatus.CANCELLING})


class Engine(models.TextChoices):
    """Who runs a part's lines: the provider's own batch API, or Gatehouse's workers through the router
    (the values of `models_registry.batch_engines`)."""

    NATIVE = NATIVE, "Provider batch API"
    GATEWAY = GATEWAY, "Gateway-executed"


class PartStatus(models.TextChoices):
    """The life of one part (one deployment's share of a batch)."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


PART_FINISHED = frozenset({PartStatus.DONE, PartStatus.FAILED, PartStatus.CANCELLED, PartStatus.EXPIRED})
PART_UNFINISHED = frozenset({PartStatus.PENDING, PartStatus.RUNNING})
