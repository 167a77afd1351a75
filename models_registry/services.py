"""Writes to the registry. Each service owns its transaction and bumps the registry version."""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F

from models_registry.choices import DeploymentSource, VersionScope
from models_registry.config import DeploymentSpec
from models_registry.models import Deployment, RegistryState
from models_registry.secrets import SecretUnavailableError, decrypt_secrets, encrypt_secrets, split_secrets

logger = logging.getLogger("gatehouse.registry")


def version_bump(*, scope: int) -> int:
    """Move the version of `scope` every worker watches; call inside the transaction that made the change."""
    updated = RegistryState.objects.filter(id=scope).update(version=F("version") + 1)
    if not updated:
        _, created = RegistryState.objects.get_or_create(id=scope, defaults={"version": 1})
        if not created:  # another transaction created it between our update and get_or_create
            RegistryState.objects.filter(id=scope).update(version=F("version") + 1)
    return RegistryState.objects.values_list("version", flat=True).get(id=scope)


def registry_version_bump() -> int:
    """Move the deployments' version; call inside the transaction that changed deployments."""
    return version_bump(scope=VersionScope.REGISTRY)


def _deployment_fields(spec: DeploymentSpec, source: str) -> dict:
    public, secret = split_secrets(spec.litellm_params)
    return {
        "model_name": spec.model_name,
        "provider": spec.provider,
        "provider_model": spec.provider_model,
        "litellm_params": public,
        "encrypted_secrets": encrypt_secrets(secret),
        "model_info": {key: value for key, value in spec.model_info.items() if key != "id"},
        "mode": spec.mode,
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "weight": spec.weight,
        "order": spec.order,
        "source": source,
    }


def deployments_sync_from_config(*, specs: list[DeploymentSpec]) -> dict[str, int]:
    """Make the config-sourced rows equal to the file: add, update, remove. Other rows are untouched.

    A config entry whose id collides with an API- or admin-made row takes that row over: the file
    is the operator's declared truth.
    """
    with transaction.atomic():
        config_rows = Deployment.objects.select_for_update().filter(source=DeploymentSource.CONFIG)
        existing = {row.id: row for row in config_rows}
        added = updated = 0
        for spec in specs:
            fields = _deployment_fields(spec, DeploymentSource.CONFIG)
            row = existing.pop(spec.id, None)
            if row is None:
                _, created = Deployment.objects.update_or_create(id=spec.id, defaults={**fields, "enabled": True})
                added += int(created)
                updated += int(not created)
                continue
            if any(getattr(row, name) != value for name, value in fields.items() if name != "encrypted_secrets") or \
                    _secrets_changed(row, spec):
                for name, value in fields.items():
                    setattr(row, name, value)
                row.save()
                updated += 1
        removed = Deployment.objects.filter(id__in=list(existing)).delete()[0] if existing else 0
        registry_version_bump()
    logger.debug("config synced: %d added, %d updated, %d removed", added, updated, removed)
    return {"added": added, "updated": updated, "removed": removed}


def _secrets_changed(row: Deployment, spec: DeploymentSpec) -> bool:
    _, secret = split_secrets(spec.litellm_params)
    try:
        return decrypt_secrets(row.encrypted_secrets) != secret
    except SecretUnavailableError:
        return True
