"""What the registry offers to clients: the model groups, as OpenAI's `/models` lists them."""
from __future__ import annotations

from models_registry.choices import DeploymentMode
from models_registry.router import model_not_found
from models_registry.snapshot import current_snapshot
from providers.errors import InvalidRequestError

OWNED_BY = "gatehouse"


def model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}


def model_group_list() -> list[dict]:
    """Every model group with at least one enabled deployment, in registry order."""
    snapshot = current_snapshot()
    return [model_object(name, min(d.created for d in deployments)) for name, deployments in snapshot.groups.items()]


def model_group_get(name: str) -> dict:
    deployments = current_snapshot().group(name)
    if not deployments:
        raise model_not_found(name)
    return model_object(name, min(d.created for d in deployments))


def default_moderation_group() -> str:
    """The group that answers `/moderations` when the client names no model (OpenAI's default behaviour)."""
    for name, deployments in current_snapshot().groups.items():
        if any(d.mode == DeploymentMode.MODERATION for d in deployments):
            return name
    raise InvalidRequestError("No moderation model is configured; pass 'model'.", param="model",
                              code="missing_required_parameter")
