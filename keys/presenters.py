"""Keys and teams as the management API shows them, with LiteLLM's field names.

A key is named by `token` (its stable public id) and `key_name` (masked); its plaintext appears only
in the answer that created or regenerated it, its digest never. `spend` and `budget_reset_at` are those
of the current budget period, as admission sees them (counters included, period rolled over in memory).
"""
from __future__ import annotations

from django.utils import timezone

from keys.budgets import current_period_end, current_spends, limit_scope
from keys.models import Team, VirtualKey


def _period(row, scope: str, label: str) -> tuple[float, object]:
    limit = limit_scope(row, scope=scope, label=label)
    now = timezone.now()
    [spend] = current_spends([limit], now)
    return spend, current_period_end(limit, now) or row.budget_reset_at


def key_info(key: VirtualKey) -> dict:
    spend, reset_at = _period(key, "key", key.key_alias or key.key_name)
    return {
        "token": key.id,
        "key_name": key.key_name,
        "key_alias": key.key_alias,
        "team_id": key.team_id,
        "user_id": key.user_id or None,
        "role": key.role,
        "models": list(key.allowed_models),
        "aliases": dict(key.aliases),
        "spend": spend,
        "max_budget": key.max_budget,
        "budget_duration": key.budget_duration or None,
        "budget_reset_at": reset_at,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "max_parallel_requests": key.max_parallel_requests,
        "expires": key.expires,
        "metadata": dict(key.metadata),
        "blocked": key.blocked,
        "log_prompts": key.log_prompts,
        "created_at": key.created_at,
        "updated_at": key.updated_at,
        "last_used_at": key.last_used_at,
    }


def key_issued(key: VirtualKey, plaintext: str) -> dict:
    """The answer to `/key/generate` and `/key/regenerate`: the key's info plus its plaintext, this once."""
    return {"key": plaintext, "token_id": key.id, **key_info(key)}


def team_info(team: Team) -> dict:
    spend, reset_at = _period(team, "team", team.team_alias or team.id)
    return {
        "team_id": team.id,
        "team_alias": team.team_alias or None,
        "models": list(team.allowed_models),
        "spend": spend,
        "max_budget": team.max_budget,
        "budget_duration": team.budget_duration or None,
        "budget_reset_at": reset_at,
        "rpm_limit": team.rpm_limit,
        "tpm_limit": team.tpm_limit,
        "max_parallel_requests": team.max_parallel_requests,
        "metadata": dict(team.metadata),
        "blocked": team.blocked,
        "created_at": team.created_at,
        "updated_at": team.updated_at,
    }
