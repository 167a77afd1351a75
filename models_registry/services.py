"""Writes to the registry. Each service owns its transaction and bumps the registry version.

Every worker watches that version (`versions.py`) and rebuilds its in-memory snapshot when it moves,
so a deployment added, changed or removed here serves (or stops serving) everywhere within a second.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from models_registry.choices import DeploymentSource, VersionScope
from models_registry.config import DeploymentSpec
from models_registry.deployment_params import (
    deployment_spec_build,
    merge_params,
    new_deployment_id,
    stored_params,
)
from models_registry.models import Deployment, RegistryState
from models_registry.secrets import (
    SECRET_PARAM_NAMES,
    SecretUnavailableError,
    decrypt_secrets,
    encrypt_secrets,
    split_secrets,
)
from providers.errors import GatewayError, InvalidRequestError, NotFoundError

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


# --- live model management (API and admin) ----------------------------------------------------
READ_ONLY_MESSAGE = ("Deployment '{id}' is declared in config.yaml and is read-only here; change it in "
                     "config.yaml and restart the gateway.")


def deployment_create(
    *,
    model_name: Any,
    litellm_params: Any,
    model_info: dict[str, Any] | None = None,
    source: str = DeploymentSource.API,
    enabled: bool = True,
) -> Deployment:
    """Add a deployment (LiteLLM's `/model/new`); it serves on every worker within a second.

    `model_info.id` is the public id when given (409 if taken), else a new UUID. Literal secrets are
    encrypted; `os.environ/NAME` references are stored as written.
    """
    deployment_id = (model_info or {}).get("id") if isinstance(model_info, dict) else None
    spec = deployment_spec_build(deployment_id=deployment_id or new_deployment_id(), model_name=model_name,
                                 litellm_params=litellm_params, model_info=model_info)
    try:
        with transaction.atomic():
            if Deployment.objects.filter(id=spec.id).exists():
                raise _already_exists(spec.id)
            row = Deployment.objects.create(id=spec.id, enabled=enabled, **_deployment_fields(spec, source))
            registry_version_bump()
    except IntegrityError:
        raise _already_exists(spec.id) from None
    logger.info("deployment %s added to %s (%s/%s) by %s", row.id, row.model_name, row.provider,
                row.provider_model, source)
    return row


def deployment_update(
    *,
    deployment_id: str,
    model_name: Any = None,
    litellm_params: dict[str, Any] | None = None,
    model_info: dict[str, Any] | None = None,
    enabled: bool | None = None,
    replace: bool = False,
) -> Deployment:
    """Change a deployment made through the API or the admin (LiteLLM's `/model/update`).

    By default keys merge: each key sent replaces the stored one and `null` leaves it untouched
    (an empty string clears a secret). With `replace` (the admin's full form) the sent params and
    model_info are the whole new value, except that secrets not sent keep their stored value.
    Config-sourced deployments are refused: config.yaml is their only source of truth.
    """
    with transaction.atomic():
        row = _writable_row(deployment_id)
        current = stored_params(row)
        if replace:
            kept_secrets = {key: value for key, value in current.items() if key in SECRET_PARAM_NAMES}
            params = merge_params(kept_secrets, litellm_params or {})
            info = {key: value for key, value in (model_info or {}).items() if key != "id"}
        else:
            params = merge_params(current, litellm_params or {})
            info = {**row.model_info,
                    **{key: value for key, value in (model_info or {}).items() if value is not None and key != "id"}}
        spec = deployment_spec_build(deployment_id=row.id, model_name=row.model_name if model_name is None
                                     else model_name, litellm_params=params, model_info=info)
        for name, value in _deployment_fields(spec, row.source).items():
            setattr(row, name, value)
        if enabled is not None:
            row.enabled = enabled
        row.save()
        registry_version_bump()
    logger.info("deployment %s of %s updated", row.id, row.model_name)
    return row


def deployment_patch(*, deployment_id: str, changes: dict[str, Any]) -> Deployment:
    """A partial update from a raw body (`PATCH /model/{id}/update`, `POST /model/update`).

    Only `model_name`, `litellm_params` and `model_info` may be sent, each merged as `deployment_update` does.
    """
    unknown = sorted(set(changes) - {"model_name", "litellm_params", "model_info"})
    if unknown:
        raise InvalidRequestError(f"Unknown field '{unknown[0]}': send model_name, litellm_params or model_info.",
                                  param=unknown[0], code="unknown_parameter")
    for name in ("litellm_params", "model_info"):
        if changes.get(name) is not None and not isinstance(changes[name], dict):
            raise InvalidRequestError(f"{name} must be an object.", param=name, code="invalid_type")
    model_info = changes.get("model_info") or {}
    sent_id = model_info.get("id")
    if sent_id is not None and sent_id != deployment_id:
        raise InvalidRequestError("model_info.id cannot be changed.", param="model_info.id", code="invalid_value")
    return deployment_update(deployment_id=deployment_id, model_name=changes.get("model_name"),
                             litellm_params=changes.get("litellm_params"), model_info=model_info)


def deployment_delete(*, deployment_id: str) -> None:
    """Remove a deployment made through the API or the admin; it stops serving within a second."""
    with transaction.atomic():
        row = _writable_row(deployment_id)
        row.delete()
        registry_version_bump()
    logger.info("deployment %s of %s deleted", deployment_id, row.model_name)


def _writable_row(deployment_id: Any) -> Deployment:
    """The row, locked for this transaction; 404 when absent, 400 when config.yaml owns it."""
    if not isinstance(deployment_id, str) or not deployment_id:
        raise InvalidRequestError("Send the deployment's id (model_info.id).", param="id",
                                  code="missing_required_parameter")
    row = Deployment.objects.select_for_update().filter(id=deployment_id).first()
    if row is None:
        raise NotFoundError(f"No deployment has id '{deployment_id}'.", param="id", code="deployment_not_found")
    if row.source == DeploymentSource.CONFIG:
        raise InvalidRequestError(READ_ONLY_MESSAGE.format(id=deployment_id), param="id",
                                  code="config_deployment_read_only")
    return row


def _already_exists(deployment_id: str) -> GatewayError:
    return GatewayError(f"A deployment with id '{deployment_id}' already exists.", status_code=409,
                        type="invalid_request_error", param="model_info.id", code="deployment_exists")
