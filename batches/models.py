"""Managed batches: one Gatehouse batch id, its parts on deployments, and every line's result.

A `Batch` is what the client sees (`batch_…`), with OpenAI's status, counts and timestamps. Its work is
split into `BatchPart`s, one per deployment it runs on: a native part holds the provider's own batch
id; a gateway part is a range of input lines that Gatehouse's workers send through the router. A part
is worked on by one worker at a time, the holder of its lease; a worker that dies stops renewing it
and another takes over.

Each finished line is one `BatchLineResult`, unique per (batch, line) and written in the same
transaction as its spend, by the lease holder only: that is what makes a batch's output hold every
`custom_id` exactly once, however many workers died on the way. The output and error files are
written from these rows, in input order, when every part is over.
"""
from __future__ import annotations

import re
import secrets

from django.db import models
from django.utils import timezone

from batches.choices import BatchStatus, Engine, PartStatus
from files_registry.models import ManagedFile

BATCH_ID_PREFIX = "batch_"
BATCH_ID_PATTERN = re.compile(r"^batch_[A-Za-z0-9_-]{24,64}$")


def new_batch_id() -> str:
    return BATCH_ID_PREFIX + secrets.token_urlsafe(18)


def is_batch_id(value: object) -> bool:
    """True for a string shaped like a Gatehouse batch id (checked before any query)."""
    return isinstance(value, str) and BATCH_ID_PATTERN.fullmatch(value) is not None


class Batch(models.Model):
    """A batch as the client created it, and where it stands."""

    id = models.CharField(primary_key=True, max_length=72, default=new_batch_id, editable=False)
    owner_key_id = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                    help_text="The virtual key that created it; empty for the master key.")
    owner_team_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    input_file = models.ForeignKey(ManagedFile, on_delete=models.PROTECT, related_name="+")
    endpoint = models.CharField(max_length=64)
    completion_window = models.CharField(max_length=16)
    requested_model = models.CharField(max_length=255, blank=True, default="",
                                       help_text="The model the lines name (before the key's aliases).")
    model_group = models.CharField(max_length=255, blank=True, default="", db_index=True,
                                   help_text="The model group the lines run on; set once validated.")
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.VALIDATING,
                              db_index=True)
    metadata = models.JSONField(null=True, blank=True)
    errors = models.JSONField(null=True, blank=True,
                              help_text="Why the batch failed: [{code, message, param, line}], OpenAI's errors.data.")
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.FloatField(default=0.0)
    output_file = models.ForeignKey(ManagedFile, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    error_file = models.ForeignKey(ManagedFile, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(help_text="The end of the completion window.")
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner_key_id", "created_at"], name="batch_owner_created")]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.id


class BatchPart(models.Model):
    """One deployment's share of a batch: lines `[first_line, first_line + line_count)` of the input."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField(help_text="The part's place in the batch; parts cover the lines in order.")
    deployment_id = models.CharField(max_length=64)
    model_group = models.CharField(max_length=255)
    provider = models.CharField(max_length=64)
    engine = models.CharField(max_length=16, choices=Engine.choices)
    first_line = models.PositiveIntegerField(help_text="0-based index of the part's first request in the input.")
    line_count = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=PartStatus.choices, default=PartStatus.PENDING)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Native parts: the provider's batch and the files it was given and produced.
    provider_batch_id = models.CharField(max_length=255, blank=True, default="")
    provider_status = models.CharField(max_length=32, blank=True, default="")
    provider_completed = models.PositiveIntegerField(default=0, help_text="The provider's live count, while it runs.")
    provider_failed = models.PositiveIntegerField(default=0, help_text="The provider's live count, while it runs.")
    provider_input_file_id = models.CharField(max_length=1024, blank=True, default="",
                                              help_text="A shard's own input file on the provider (deleted after).")
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_interval = models.FloatField(default=0.0)
    # Who works on it: a worker's lease, renewed while it works.
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When a task to run it was last queued.")
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch_id", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batchpart_unique_index")]
        indexes = [models.Index(fields=["status", "lease_expires_at"], name="batchpart_status_lease")]

    def __str__(self) -> str:
        return f"{self.batch_id} part {self.index} on {self.deployment_id}"


class BatchLineResult(models.Model):
    """One input line's outcome, exactly as its output (or error) file line will read."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="line_results")
    line = models.PositiveIntegerField(help_text="0-based index of the request in the input.")
    custom_id = models.CharField(max_length=512)
    succeeded = models.BooleanField()
    output = models.TextField(help_text="The JSON line written to the output file (succeeded) or error file.")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["batch_id", "line"]
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="batchline_once_per_line")]

    def __str__(self) -> str:
        return f"{self.batch_id} line {self.line}"
