"""What the operator dashboard shows about the registry right now: each deployment, and which ones are cooling down.

Read from the worker's in-memory snapshot and the shared cooldown counters, so the dashboard costs the
registry nothing beyond the version check every request makes anyway (`current_snapshot`).
"""
from __future__ import annotations

from dataclasses import dataclass

from models_registry.cooldowns import cooldowns_active
from models_registry.snapshot import current_snapshot


@dataclass(frozen=True, slots=True)
class RegistryDeployment:
    """One routable deployment as the dashboard names it, with the seconds left of its cooldown (None: serving)."""

    id: str
    model_group: str
    provider: str
    cooldown_seconds: float | None


def registry_deployments() -> list[RegistryDeployment]:
    """Every enabled deployment of this worker's snapshot, by group then id, with its cooldown if one runs."""
    snapshot = current_snapshot()
    cooling = cooldowns_active(snapshot.by_id)
    deployments = [
        RegistryDeployment(id=deployment.id, model_group=deployment.model_name, provider=deployment.provider,
                           cooldown_seconds=cooling.get(deployment.id))
        for deployment in snapshot.by_id.values()
    ]
    return sorted(deployments, key=lambda deployment: (deployment.model_group, deployment.id))


def deployments_cooling_down() -> list[RegistryDeployment]:
    """The deployments out of rotation now, the longest remaining cooldown first."""
    cooling = [deployment for deployment in registry_deployments() if deployment.cooldown_seconds is not None]
    return sorted(cooling, key=lambda deployment: (-(deployment.cooldown_seconds or 0.0), deployment.id))
