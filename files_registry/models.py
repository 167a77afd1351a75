"""Managed files: one Gatehouse file id, the bytes Gatehouse keeps, and each deployment's own copy.

A `ManagedFile` is what the client sees (`file-…`): its owner (key and team), purpose, the user's own
filename and the name of its bytes in Django storage. Each deployment that was asked to hold the file
gets a `ProviderFile`: the provider's reference (a file id, or a URI for Gemini and Vertex), its status
and its last error, so a partial failure is visible and can be retried. Deleting a file is soft: the
row keeps `deleted_at` until every provider copy is gone, and the API never shows it again.
"""
from __future__ import annotations

import re
import secrets

from django.db import models
from django.utils import timezone

from files_registry.choices import FilePurpose, FileStatus, ProviderFileStatus

FILE_ID_PREFIX = "file-"
# 18 random bytes: 24 url-safe characters, 144 bits; ids are unguessable, not merely unique.
FILE_ID_RANDOM_BYTES = 18
FILE_ID_PATTERN = re.compile(r"^file-[A-Za-z0-9_-]{24,64}$")


def new_file_id() -> str:
    return FILE_ID_PREFIX + secrets.token_urlsafe(FILE_ID_RANDOM_BYTES)


def is_file_id(value: object) -> bool:
    """True for a string shaped like a Gatehouse file id (checked before any query: no path may get through)."""
    return isinstance(value, str) and FILE_ID_PATTERN.fullmatch(value) is not None


class ManagedFile(models.Model):
    """A file a client uploaded (or Gatehouse wrote, such as batch output), stored by Gatehouse itself."""

    id = models.CharField(primary_key=True, max_length=72, default=new_file_id, editable=False)
    owner_key_id = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                    help_text="The virtual key that uploaded it; empty for the master key.")
    owner_team_id = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                     help_text="That key's team when it uploaded; its team's keys see it too.")
    purpose = models.CharField(max_length=32, choices=FilePurpose.choices)
    filename = models.CharField(max_length=1024, help_text="The client's own filename; never a storage path.")
    bytes = models.PositiveBigIntegerField()
    mime_type = models.CharField(max_length=255)
    target_model_names = models.JSONField(default=list, blank=True,
                                          help_text="Model groups named at upload; each deployment got a copy.")
    stored_name = models.CharField(max_length=1024, help_text="The name of the bytes in the files storage.")
    status = models.CharField(max_length=16, choices=FileStatus.choices, default=FileStatus.PROCESSED)
    status_details = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                      help_text="Set when deleted: gone from the API at once, purged later.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner_key_id", "created_at"], name="managedfile_owner_created")]

    def __str__(self) -> str:
        return f"{self.id} ({self.filename})"


class ProviderFile(models.Model):
    """One deployment's copy of a managed file: the provider's own reference to it, and how it went."""

    managed_file = models.ForeignKey(ManagedFile, on_delete=models.CASCADE, related_name="provider_copies")
    deployment_id = models.CharField(max_length=64, help_text="The deployment (model_info.id) holding the copy.")
    model_group = models.CharField(max_length=255)
    provider = models.CharField(max_length=64)
    provider_file_id = models.CharField(max_length=1024, blank=True, default="",
                                        help_text="The provider's file id (OpenAI, Azure, Anthropic, mock).")
    uri = models.CharField(max_length=2048, blank=True, default="",
                           help_text="The URI the provider reads (Gemini Files API, gs:// for Vertex).")
    mime_type = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When the provider drops it (Gemini: 48 h).")
    status = models.CharField(max_length=16, choices=ProviderFileStatus.choices, default=ProviderFileStatus.PENDING)
    error = models.TextField(blank=True, default="", help_text="The last failure, as the client would see it.")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["managed_file_id", "model_group", "deployment_id"]
        constraints = [
            models.UniqueConstraint(fields=["managed_file", "deployment_id"], name="providerfile_one_per_deployment"),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="providerfile_status_updated")]
        verbose_name = "provider copy"
        verbose_name_plural = "provider copies"

    def __str__(self) -> str:
        return f"{self.managed_file_id} on {self.deployment_id}"
