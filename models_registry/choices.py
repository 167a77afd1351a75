"""Enumerations of the registry, as TextChoices so the admin and the API share one vocabulary."""
from django.db import models


class DeploymentSource(models.TextChoices):
    """Where a deployment was declared; config-sourced rows follow config.yaml and nothing else."""

    CONFIG = "config", "config.yaml"
    API = "api", "Management API"
    ADMIN = "admin", "Admin"


class DeploymentMode(models.TextChoices):
    """What kind of calls a deployment serves (LiteLLM's `model_info.mode`)."""

    CHAT = "chat", "Chat"
    COMPLETION = "completion", "Text completion"
    EMBEDDING = "embedding", "Embedding"
    MODERATION = "moderation", "Moderation"
    BATCH = "batch", "Batch"


class RoutingStrategy(models.TextChoices):
    SIMPLE_SHUFFLE = "simple-shuffle", "Weighted random"
    LEAST_BUSY = "least-busy", "Fewest in flight"
    LATENCY_BASED = "latency-based-routing", "Lowest latency"
    USAGE_BASED = "usage-based-routing", "Lowest usage"


class VersionScope(models.IntegerChoices):
    """Rows of `RegistryState`: each scope has its own version, all read together in one query."""

    REGISTRY = 1, "Deployments"
    KEYS = 2, "Keys and teams"
