"""What the registry offers to clients: the model groups, as OpenAI's `/models` lists them, and the
deployments and groups as LiteLLM's `/model/info` and `/model_group/info` describe them."""
from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from django.db.models import F

from models_registry.choices import DeploymentMode, DeploymentSource
from models_registry.costs import cost_entry_with_key
from models_registry.deployment_params import public_params
from models_registry.models import Deployment
from models_registry.router import model_not_found
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.errors import InvalidRequestError, NotFoundError

OWNED_BY = "gatehouse"


def model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}


def model_group_list(*, allowed_groups: Container[str] | None = None) -> list[dict]:
    """Every model group with at least one enabled deployment, in registry order; with `allowed_groups`,
    only those a caller may use (None: all)."""
    snapshot = current_snapshot()
    return [model_object(name, min(d.created for d in deployments)) for name, deployments in snapshot.groups.items()
            if allowed_groups is None or name in allowed_groups]


def model_group_get(name: str, *, allowed_groups: Container[str] | None = None) -> dict:
    """One group; a group the caller may not use is reported exactly like one that does not exist."""
    deployments = current_snapshot().group(name)
    if not deployments or (allowed_groups is not None and name not in allowed_groups):
        raise model_not_found(name)
    return model_object(name, min(d.created for d in deployments))


def default_moderation_group() -> str:
    """The group that answers `/moderations` when the client names no model (OpenAI's default behaviour)."""
    for name, deployments in current_snapshot().groups.items():
        if any(d.mode == DeploymentMode.MODERATION for d in deployments):
            return name
    raise InvalidRequestError("No moderation model is configured; pass 'model'.", param="model",
                              code="missing_required_parameter")


# --- model info for the management API (`/model/info`, `/model_group/info`) -------------------
# Capability flags `/model_group/info` reports per group: true when any deployment of it has them.
CAPABILITY_FLAGS = (
    "supports_function_calling", "supports_parallel_function_calling", "supports_tool_choice", "supports_vision",
    "supports_response_schema", "supports_system_messages", "supports_prompt_caching", "supports_reasoning",
    "supports_pdf_input", "supports_audio_input", "supports_web_search",
)


def deployment_model_info(*, deployment_id: str, provider: str, provider_model: str, mode: str, source: str,
                          model_info: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's returned `model_info`: the cost map's entry, the operator's keys over it, then what the gateway knows.

    `key` names the cost map entry used (None when the map does not know the model); `db_model` is
    true for deployments made through the API or the admin, false for config.yaml ones.
    """
    key, entry = cost_entry_with_key(provider, provider_model, model_info)
    info = {**(entry or {}), **model_info}
    info.setdefault("litellm_provider", provider)
    info.update({"id": deployment_id, "mode": mode, "key": key, "db_model": source != DeploymentSource.CONFIG,
                 "source": source})
    return info


def deployment_info(row: Deployment) -> dict[str, Any]:
    """One `/model/info` item: `{model_name, litellm_params, model_info}` with every secret left out."""
    return {
        "model_name": row.model_name,
        "litellm_params": public_params(row.litellm_params),
        "model_info": {**deployment_model_info(deployment_id=row.id, provider=row.provider,
                                               provider_model=row.provider_model, mode=row.mode, source=row.source,
                                               model_info=row.model_info), "enabled": row.enabled},
    }


def deployment_info_list(*, allowed_groups: Container[str] | None = None,
                         deployment_id: str | None = None) -> list[dict[str, Any]]:
    """Every deployment (disabled ones too, marked so), as `/model/info` lists them.

    `allowed_groups` limits the list to groups a caller may use (None: all); `deployment_id` to one
    deployment (404 when no visible deployment has it).
    """
    rows = Deployment.objects.order_by("model_name", F("order").asc(nulls_last=True), "created_at", "id")
    if deployment_id is not None:
        rows = rows.filter(id=deployment_id)
    # `allowed_groups` may only answer `in` (a key's rules, aliases included), so it filters here, not in SQL.
    items = [deployment_info(row) for row in rows if allowed_groups is None or row.model_name in allowed_groups]
    if deployment_id is not None and not items:
        raise NotFoundError(f"No deployment has id '{deployment_id}'.", param="litellm_model_id",
                            code="deployment_not_found")
    return items


def model_group_info_list(*, allowed_groups: Container[str] | None = None,
                          model_group: str | None = None) -> list[dict[str, Any]]:
    """LiteLLM's `/model_group/info`: one summary per group that is serving now (this worker's snapshot).

    Token limits and prices are the largest among the group's deployments (the worst case a client
    should plan for); rpm and tpm add up; a capability is there when any deployment has it.
    """
    groups = current_snapshot().groups
    names = [name for name in groups if (allowed_groups is None or name in allowed_groups)
             and (model_group is None or name == model_group)]
    return [_group_info(name, groups[name]) for name in names]


def _group_info(name: str, deployments: tuple[RoutableDeployment, ...]) -> dict[str, Any]:
    infos = [deployment_model_info(deployment_id=d.id, provider=d.provider, provider_model=d.provider_model,
                                   mode=d.mode, source="", model_info=d.model_info) for d in deployments]
    summary: dict[str, Any] = {
        "model_group": name,
        "providers": sorted({d.provider for d in deployments}),
        "mode": deployments[0].mode,
        "max_input_tokens": _largest(info.get("max_input_tokens") for info in infos),
        "max_output_tokens": _largest(info.get("max_output_tokens") for info in infos),
        "input_cost_per_token": _largest(info.get("input_cost_per_token") for info in infos),
        "output_cost_per_token": _largest(info.get("output_cost_per_token") for info in infos),
        "rpm": _total(d.rpm for d in deployments),
        "tpm": _total(d.tpm for d in deployments),
        "deployments": len(deployments),
    }
    for flag in CAPABILITY_FLAGS:
        summary[flag] = any(info.get(flag) is True for info in infos)
    return summary


def _largest(values: Iterable[Any]) -> float | None:
    numbers = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    return max(numbers) if numbers else None


def _total(values: Iterable[int | None]) -> int | None:
    numbers = [value for value in values if value is not None]
    return sum(numbers) if numbers else None
