"""Enumerations of keys and usage, shared by the admin and the API."""
from django.db import models


class KeyRole(models.TextChoices):
    """What a virtual key may do besides calling models (LiteLLM's role names)."""

    INTERNAL_USER = "internal_user", "Calls models"
    PROXY_ADMIN = "proxy_admin", "Administers the gateway"


class RequestStatus(models.TextChoices):
    OK = "ok", "Succeeded"
    ERROR = "error", "Failed"
    CLIENT_DISCONNECTED = "client_disconnected", "Client hung up"


class RollupSpan(models.TextChoices):
    """How long one row of a usage or deployment rollup covers (a day is `DailySpend`)."""

    MINUTE = "minute", "One minute"
    HOUR = "hour", "One hour"
