"""Writes to keys and teams. Each service owns its transaction and bumps VersionScope.KEYS inside it,
so every worker's key cache drops what it holds within a second.

A key can never exceed its team: its models must be among the team's (checked here, at creation and
on every change); its budget and limits are capped by the team's when requests are admitted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from keys.budgets import limit_scope, spend_counter_set
from keys.durations import next_reset_after, parse_duration
from keys.fields import KeyFields, TeamFields
from keys.key_cache import allowed_set
from keys.models import Team, VirtualKey
from keys.principal import ALL_PROXY_MODELS, ALL_TEAM_MODELS
from keys.tokens import key_digest, masked, new_key_id, new_plaintext, new_team_id
from models_registry.choices import VersionScope
from models_registry.services import version_bump
from models_registry.versions import forget_versions
from providers.errors import InvalidRequestError, PermissionDeniedError

logger = logging.getLogger("gatehouse.keys")

# Fields copied as they are from the validated request onto the row (API name -> column).
KEY_COLUMNS = {"key_alias": "key_alias", "models": "allowed_models", "aliases": "aliases",
               "max_budget": "max_budget", "rpm_limit": "rpm_limit", "tpm_limit": "tpm_limit",
               "max_parallel_requests": "max_parallel_requests", "metadata": "metadata", "blocked": "blocked",
               "role": "role", "log_prompts": "log_prompts"}
TEAM_COLUMNS = {"team_alias": "team_alias", "models": "allowed_models", "max_budget": "max_budget",
                "rpm_limit": "rpm_limit", "tpm_limit": "tpm_limit",
                "max_parallel_requests": "max_parallel_requests", "metadata": "metadata", "blocked": "blocked"}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created or regenerated, with the only copy of its plaintext there will ever be."""

    key: VirtualKey
    plaintext: str


def _published() -> None:
    """This worker sees its own change at once; the others within one version check."""
    forget_versions()
    transaction.on_commit(forget_versions)


def _bump() -> None:
    version_bump(scope=VersionScope.KEYS)


def _team_for_key(team_id: str | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(id=team_id).first()
    if team is None:
        raise InvalidRequestError(f"Team '{team_id}' does not exist.", param="team_id", code="team_not_found")
    return team


def key_models_check(models: list[str], team: Team | None, aliases: dict[str, str] | None = None) -> None:
    """403 when a key names models its team does not allow (the key would exceed its team). A name the key
    aliases is judged by the group it resolves to."""
    if team is None:
        return
    allowed = allowed_set(team.allowed_models, defers_to_team=False)
    if allowed is None:
        return
    aliases = aliases or {}
    outside = [model for model in models if model != ALL_TEAM_MODELS and (
        model == ALL_PROXY_MODELS or aliases.get(model, model) not in allowed)]
    if outside:
        raise PermissionDeniedError(
            f"Team '{team.team_alias or team.id}' does not allow {', '.join(outside)}; a key's models must be "
            f"among its team's: {', '.join(sorted(allowed))}.",
            param="models", type="team_model_access_denied", code="team_model_access_denied")


def _check_alias_free(alias: str | None, key_id: str) -> None:
    if alias is not None and VirtualKey.objects.filter(key_alias=alias).exclude(id=key_id).exists():
        raise InvalidRequestError(f"A key with key_alias '{alias}' already exists.", param="key_alias",
                                  code="key_alias_taken")


def _check_secret_free(digest: str) -> None:
    if VirtualKey.objects.filter(Q(digest=digest) | Q(previous_digest=digest)).exists():
        raise InvalidRequestError("This key value is already in use; choose another.", param="key",
                                  code="key_taken")


def _apply_budget_duration(row, value: str | None, now: datetime) -> None:
    """A new budget period starts now whenever the duration is set or changed (LiteLLM's behaviour)."""
    row.budget_duration = value or ""
    row.budget_reset_at = parse_duration(value).after(now) if value else None


def _apply_key_fields(key: VirtualKey, fields: KeyFields, now: datetime) -> None:
    for name, column in KEY_COLUMNS.items():
        if name in fields:
            setattr(key, column, fields[name])
    if "user_id" in fields:
        key.user_id = fields["user_id"] or ""
    if "budget_duration" in fields:
        _apply_budget_duration(key, fields["budget_duration"], now)
    if "duration" in fields:
        key.expires = parse_duration(fields["duration"]).after(now) if fields["duration"] else None
    if "expires" in fields:
        key.expires = fields["expires"]
    if "spend" in fields:
        key.spend = fields["spend"]


def _save_key(key: VirtualKey) -> None:
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError:
        raise InvalidRequestError(f"A key with key_alias '{key.key_alias}' already exists.", param="key_alias",
                                  code="key_alias_taken") from None


def virtual_key_generate(*, fields: KeyFields, plaintext: str | None = None) -> IssuedKey:
    """Issue a key. The plaintext (random `sk-...`, or the caller's own) is returned once and never stored."""
    plaintext = plaintext or new_plaintext()
    digest = key_digest(plaintext)
    now = timezone.now()
    with transaction.atomic():
        team = _team_for_key(fields.get("team_id"))
        key_models_check(fields.get("models", []), team, fields.get("aliases"))
        key = VirtualKey(id=new_key_id(), digest=digest, key_name=masked(plaintext), team=team)
        _check_alias_free(fields.get("key_alias"), key.id)
        _check_secret_free(digest)
        _apply_key_fields(key, fields, now)
        _save_key(key)
        _bump()
    _published()
    logger.info("key %s issued (alias %s, team %s)", key.id, key.key_alias, key.team_id)
    return IssuedKey(key=key, plaintext=plaintext)


def virtual_key_update(*, key: VirtualKey, fields: KeyFields) -> VirtualKey:
    """Change what the request names; anything not named stays as it is."""
    now = timezone.now()
    with transaction.atomic():
        key = VirtualKey.objects.select_for_update(of=("self",)).select_related("team").get(id=key.id)
        if "team_id" in fields:
            key.team = _team_for_key(fields["team_id"])
        if "team_id" in fields or "models" in fields or "aliases" in fields:
            key_models_check(fields.get("models", key.allowed_models), key.team, fields.get("aliases", key.aliases))
        _check_alias_free(fields.get("key_alias"), key.id)
        _apply_key_fields(key, fields, now)
        _save_key(key)
        _bump()
    if "spend" in fields:
        spend_counter_set(limit=limit_scope(key, scope="key", label=key.key_alias or key.key_name),
                          spend=fields["spend"])
    _published()
    return key


def virtual_key_regenerate(*, key: VirtualKey, fields: KeyFields | None = None, plaintext: str | None = None,
                           grace_seconds: float = 0.0) -> IssuedKey:
    """A new secret for the same key (id, spend and settings kept). With a grace period the previous secret
    keeps working until it ends, so clients can be moved over without an outage."""
    plaintext = plaintext or new_plaintext()
    digest = key_digest(plaintext)
    now = timezone.now()
    with transaction.atomic():
        key = VirtualKey.objects.select_for_update(of=("self",)).select_related("team").get(id=key.id)
        _check_secret_free(digest)
        fields = fields or {}
        if "team_id" in fields:
            key.team = _team_for_key(fields["team_id"])
        if "team_id" in fields or "models" in fields or "aliases" in fields:
            key_models_check(fields.get("models", key.allowed_models), key.team, fields.get("aliases", key.aliases))
        _check_alias_free(fields.get("key_alias"), key.id)
        if grace_seconds > 0:
            key.previous_digest = key.digest
            key.previous_valid_until = now + timedelta(seconds=grace_seconds)
        else:
            key.previous_digest, key.previous_valid_until = "", None
        key.digest, key.key_name = digest, masked(plaintext)
        _apply_key_fields(key, fields, now)
        _save_key(key)
        _bump()
    _published()
    logger.info("key %s regenerated (grace %.0f s)", key.id, grace_seconds)
    return IssuedKey(key=key, plaintext=plaintext)


def virtual_key_block(*, key: VirtualKey, blocked: bool = True) -> VirtualKey:
    """Block (or unblock) a key: every request with it is refused with 401 within a second."""
    with transaction.atomic():
        VirtualKey.objects.filter(id=key.id).update(blocked=blocked, updated_at=timezone.now())
        _bump()
    _published()
    key.refresh_from_db()
    return key


def virtual_key_delete(*, keys: list[VirtualKey]) -> list[str]:
    """Revoke keys for good: their secrets stop working within a second. Returns the deleted ids."""
    ids = [key.id for key in keys]
    with transaction.atomic():
        VirtualKey.objects.filter(id__in=ids).delete()
        _bump()
    _published()
    logger.info("keys deleted: %s", ", ".join(ids))
    return ids


def virtual_key_last_used_record(*, used: dict[str, datetime]) -> int:
    """Write when keys were last used, in one statement (called in the background, at most once a minute
    per key). `update()` leaves `updated_at` alone and bumps no version: nothing admission reads changed."""
    if not used:
        return 0
    return VirtualKey.objects.filter(id__in=list(used)).update(last_used_at=max(used.values()))


def team_create(*, fields: TeamFields, team_id: str | None = None) -> Team:
    now = timezone.now()
    with transaction.atomic():
        team_id = team_id or new_team_id()
        if Team.objects.filter(id=team_id).exists():
            raise InvalidRequestError(f"Team '{team_id}' already exists.", param="team_id", code="team_exists")
        team = Team(id=team_id)
        _apply_team_fields(team, fields, now)
        team.save(force_insert=True)
        _bump()
    _published()
    return team


def team_update(*, team: Team, fields: TeamFields) -> Team:
    """Change a team. Narrowing its models or limits applies to every key of the team at once."""
    now = timezone.now()
    with transaction.atomic():
        team = Team.objects.select_for_update().get(id=team.id)
        _apply_team_fields(team, fields, now)
        team.save()
        _bump()
    _published()
    return team


def _apply_team_fields(team: Team, fields: TeamFields, now: datetime) -> None:
    for name, column in TEAM_COLUMNS.items():
        if name in fields:
            value = fields[name]
            setattr(team, column, "" if column == "team_alias" and value is None else value)
    if "budget_duration" in fields:
        _apply_budget_duration(team, fields["budget_duration"], now)


def team_delete(*, teams: list[Team]) -> list[str]:
    """Delete teams and, as LiteLLM does, every key of theirs (a key without its team would escape its caps)."""
    ids = [team.id for team in teams]
    with transaction.atomic():
        VirtualKey.objects.filter(team_id__in=ids).delete()
        Team.objects.filter(id__in=ids).delete()
        _bump()
    _published()
    logger.info("teams deleted with their keys: %s", ", ".join(ids))
    return ids


def budget_periods_reset(*, now: datetime | None = None) -> int:
    """Start the next budget period of every key and team whose period ended: spend to 0, the next reset
    time stepped by whole periods (the same boundary admission computes in memory, so the two agree).

    Each row is reset with a conditional UPDATE on its old reset time: several workers may run this at
    once and only one wins. No version bump: admission already rolled the period over in memory.
    """
    now = now or timezone.now()
    reset = 0
    for model in (VirtualKey, Team):
        due = model.objects.filter(budget_reset_at__lte=now).exclude(budget_duration="")
        for row_id, reset_at, duration_text in due.values_list("id", "budget_reset_at", "budget_duration"):
            try:
                duration = parse_duration(duration_text)
            except ValueError:
                continue
            reset += model.objects.filter(id=row_id, budget_reset_at=reset_at).update(
                spend=0.0, budget_reset_at=next_reset_after(reset_at, duration, now))
    if reset:
        logger.info("budget periods reset: %d", reset)
    return reset
