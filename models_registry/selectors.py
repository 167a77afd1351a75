"""Reads of the registry."""
from __future__ import annotations

from django.db.models import F, QuerySet

from models_registry.choices import VersionScope
from models_registry.models import Deployment, RegistryState


def registry_version_get() -> int:
    return RegistryState.objects.filter(id=VersionScope.REGISTRY).values_list("version", flat=True).first() or 0


def versions_read() -> dict[int, int]:
    """Every scope's version in one query (a scope never bumped is absent)."""
    return dict(RegistryState.objects.values_list("id", "version"))


def deployment_list_enabled() -> QuerySet[Deployment]:
    # NULL `order` sorts last on every database (SQLite and PostgreSQL disagree by default).
    return Deployment.objects.filter(enabled=True).order_by("model_name", F("order").asc(nulls_last=True),
                                                            "created_at", "id")
