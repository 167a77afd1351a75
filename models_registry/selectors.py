"""Reads of the registry."""
from __future__ import annotations

from django.db.models import QuerySet

from models_registry.models import Deployment, RegistryState


def registry_version_get() -> int:
    return RegistryState.objects.filter(id=1).values_list("version", flat=True).first() or 0


def deployment_list_enabled() -> QuerySet[Deployment]:
    return Deployment.objects.filter(enabled=True).order_by("model_name", "order", "created_at", "id")
