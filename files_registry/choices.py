"""Enumerations of managed files and their provider copies, shared by the admin and the API."""
from django.db import models


class FilePurpose(models.TextChoices):
    """OpenAI's file purposes. Clients may upload the first six; the rest are written by Gatehouse itself."""

    ASSISTANTS = "assistants", "assistants"
    BATCH = "batch", "batch"
    FINE_TUNE = "fine-tune", "fine-tune"
    VISION = "vision", "vision"
    USER_DATA = "user_data", "user_data"
    EVALS = "evals", "evals"
    BATCH_OUTPUT = "batch_output", "batch_output"


UPLOADABLE_PURPOSES = (
    FilePurpose.ASSISTANTS, FilePurpose.BATCH, FilePurpose.FINE_TUNE, FilePurpose.VISION,
    FilePurpose.USER_DATA, FilePurpose.EVALS,
)


class FileStatus(models.TextChoices):
    """OpenAI's (deprecated but still sent) file status: Gatehouse files are `processed` once stored."""

    UPLOADED = "uploaded", "uploaded"
    PROCESSED = "processed", "processed"
    ERROR = "error", "error"


class ProviderFileStatus(models.TextChoices):
    """The life of one deployment's copy of a managed file."""

    PENDING = "pending", "Uploading"
    UPLOADED = "uploaded", "Uploaded"
    FAILED = "failed", "Upload failed"
    DELETED = "deleted", "Deleted"
    DELETE_FAILED = "delete_failed", "Delete failed (retried)"


# Copies that may exist on the provider and must be deleted with the file.
PROVIDER_FILE_LIVE = (ProviderFileStatus.PENDING, ProviderFileStatus.UPLOADED, ProviderFileStatus.DELETE_FAILED)
