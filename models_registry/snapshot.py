"""The in-memory registry each worker routes from, rebuilt only when the registry version moves.

Requests never query the database for deployments: they read the current snapshot. At most every
`GATEWAY_REGISTRY_CHECK_SECONDS` one request per worker reads the single-row version stamp; if it
moved, the snapshot is rebuilt from the enabled deployments.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError

from models_registry.choices import VersionScope
from models_registry.costs import FREE, ModelPrices, batch_prices_for, forget_cost_map, prices_for
from models_registry.models import Deployment
from models_registry.secrets import SecretUnavailableError, decrypt_secrets, is_env_reference, resolve_value
from models_registry.selectors import deployment_list_enabled
from models_registry.versions import current_version, forget_versions
from providers.base import DeploymentTarget, Provider
from providers.errors import GatewayError, ProviderError
from providers.registry import adapter_for

logger = logging.getLogger("gatehouse.registry")

TARGET_FIELDS = ("api_base", "api_key", "api_version", "organization")
# Deployments without an `order` form the last tier: an operator who orders some deployments prefers them.
UNORDERED_TIER = 2**31


class DeploymentMisconfiguredError(ProviderError):
    """A deployment's credentials cannot be resolved; another deployment of the group may still work."""

    failover = True
    status_code = 503
    type = "api_error"
    code = "deployment_misconfigured"


class RegistryUnavailableError(GatewayError):
    status_code = 503
    type = "api_error"
    code = "registry_unavailable"


@dataclass(frozen=True, slots=True)
class RoutableDeployment:
    """A deployment as the router sees it: adapter resolved, secrets decrypted, limits at hand."""

    id: str
    model_name: str
    provider: str
    provider_model: str
    adapter: Provider
    params: dict[str, Any]
    secrets: dict[str, str]
    mode: str
    weight: float
    rpm: int | None
    tpm: int | None
    order: int
    timeout: float | None
    stream_timeout: float | None
    created: int
    static_target: DeploymentTarget | None
    model_info: dict[str, Any] = field(default_factory=dict)
    prices: ModelPrices = FREE
    # What the provider's own batch API charges (native batch parts).
    batch_prices: ModelPrices = FREE
    # Calls this deployment may have open at once, across every worker (None: unlimited).
    max_parallel_requests: int | None = None

    def target(self) -> DeploymentTarget:
        """Credentials for one call. `os.environ/` references are read now, so rotation needs no restart."""
        if self.static_target is not None:
            return self.static_target
        try:
            values = {name: resolve_value(self.secrets.get(name, self.params.get(name))) for name in TARGET_FIELDS}
            extra = resolve_nested(_extra_params(self.params, self.secrets))
        except SecretUnavailableError as error:
            raise DeploymentMisconfiguredError(
                f"Deployment '{self.id}' of '{self.model_name}' cannot be called: {error}."
            ) from error
        return _build_target(self, values, extra)


def _build_target(deployment: RoutableDeployment | None, values: dict, extra: dict, **identity) -> DeploymentTarget:
    identity = identity or {"deployment_id": deployment.id, "model_group": deployment.model_name,
                            "provider": deployment.provider, "model": deployment.provider_model}
    return DeploymentTarget(**identity, api_base=values.get("api_base"), api_key=values.get("api_key"),
                            api_version=values.get("api_version"), organization=values.get("organization"),
                            params=extra)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: int
    groups: dict[str, tuple[RoutableDeployment, ...]]
    by_id: dict[str, RoutableDeployment]

    def group(self, name: str) -> tuple[RoutableDeployment, ...]:
        return self.groups.get(name, ())


def routable_from_row(row: Deployment) -> RoutableDeployment | None:
    try:
        adapter = adapter_for(row.provider)
    except LookupError:
        logger.error("deployment %s names unknown provider %s; skipped", row.id, row.provider)
        return None
    try:
        secrets = decrypt_secrets(row.encrypted_secrets)
    except SecretUnavailableError:
        logger.error("deployment %s: stored secrets cannot be decrypted with the current key; skipped", row.id)
        return None
    params = dict(row.litellm_params)
    params.pop("model", None)
    has_references = _has_references(params)
    # LiteLLM reads limits from litellm_params (the columns) and, failing that, from model_info.
    rpm = row.rpm if row.rpm is not None else _limit({}, row.model_info, "rpm", row.id)
    tpm = row.tpm if row.tpm is not None else _limit({}, row.model_info, "tpm", row.id)
    static_target = None
    if not has_references:
        values = {name: secrets.get(name, params.get(name)) for name in TARGET_FIELDS}
        extra = _extra_params(params, secrets)
        static_target = _build_target(None, values, extra, deployment_id=row.id, model_group=row.model_name,
                                      provider=row.provider, model=row.provider_model)
    return RoutableDeployment(
        id=row.id, model_name=row.model_name, provider=row.provider, provider_model=row.provider_model,
        adapter=adapter, params=params, secrets=secrets, mode=row.mode,
        weight=row.weight if row.weight is not None else float(rpm or tpm or 1),
        rpm=rpm, tpm=tpm, order=row.order if row.order is not None else UNORDERED_TIER,
        timeout=_seconds(params.get("timeout"), row.id), stream_timeout=_seconds(params.get("stream_timeout"), row.id),
        created=int(row.created_at.timestamp()), static_target=static_target,
        model_info=dict(row.model_info), prices=prices_for(row.provider, row.provider_model, row.model_info),
        batch_prices=batch_prices_for(row.provider, row.provider_model, row.model_info),
        max_parallel_requests=_limit(params, row.model_info, "max_parallel_requests", row.id),
    )


def build_snapshot(version: int) -> RegistrySnapshot:
    # A new version may come from `cost_map_load`: re-read the map so prices follow it.
    forget_cost_map()
    groups: dict[str, list[RoutableDeployment]] = {}
    by_id: dict[str, RoutableDeployment] = {}
    for row in deployment_list_enabled():
        routable = routable_from_row(row)
        if routable is None:
            continue
        groups.setdefault(routable.model_name, []).append(routable)
        by_id[routable.id] = routable
    return RegistrySnapshot(version=version, groups={name: tuple(items) for name, items in groups.items()},
                            by_id=by_id)


class _SnapshotHolder:
    snapshot: RegistrySnapshot | None = None


_holder = _SnapshotHolder()


def current_snapshot() -> RegistrySnapshot:
    """This worker's snapshot, refreshed if the registry version moved since the last check."""
    snapshot = _holder.snapshot
    try:
        version = current_version(VersionScope.REGISTRY)
        if snapshot is None or version != snapshot.version:
            snapshot = build_snapshot(version)
            _holder.snapshot = snapshot
            logger.info("registry snapshot v%d: %d deployments in %d groups", version, len(snapshot.by_id),
                        len(snapshot.groups))
    except DatabaseError:
        if snapshot is None:
            raise RegistryUnavailableError("The model registry cannot be read: the database is unavailable.") from None
        logger.warning("registry version check failed; serving snapshot v%d", snapshot.version, exc_info=True)
    return snapshot


def forget_snapshot() -> None:
    """Drop the cached snapshot so the next request rebuilds it (tests, after direct writes)."""
    _holder.snapshot = None
    forget_versions()


def _extra_params(params: dict, secrets: dict) -> dict:
    """Everything an adapter may need beyond the four common fields, secrets such as `azure_ad_token` included."""
    extra = {key: value for key, value in params.items() if key not in TARGET_FIELDS}
    extra.update({key: value for key, value in secrets.items() if key not in TARGET_FIELDS})
    return extra


def resolve_nested(value):
    """`os.environ/` references resolved wherever they sit, inside mappings and lists too (`extra_headers`)."""
    if isinstance(value, dict):
        return {key: resolve_nested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_nested(item) for item in value]
    return resolve_value(value)


def _has_references(value) -> bool:
    if isinstance(value, dict):
        return any(_has_references(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_references(item) for item in value)
    return is_env_reference(value)


def _seconds(value, deployment_id: str) -> float | None:
    """A timeout in seconds; an `os.environ/` reference is read when the snapshot is built."""
    try:
        value = resolve_value(value)
        return float(value) if value is not None else None
    except (SecretUnavailableError, TypeError, ValueError):
        logger.error("deployment %s: timeout %r is not a number of seconds; ignored", deployment_id, value)
        return None


def _limit(params: dict, model_info: dict, name: str, deployment_id: str) -> int | None:
    """A positive whole-number limit from litellm_params, else model_info; anything else means no limit."""
    value = params.get(name, model_info.get(name))
    try:
        value = resolve_value(value)
        number = int(value) if value is not None and not isinstance(value, bool) else None
    except (SecretUnavailableError, TypeError, ValueError):
        number = None
    if value is not None and (number is None or number < 0):
        logger.error("deployment %s: %s %r is not a whole number; ignored", deployment_id, name, value)
        return None
    return number
