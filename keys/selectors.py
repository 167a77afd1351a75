"""Reads of keys and teams for the management API, the admin and the key cache."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from keys.models import Team, VirtualKey
from keys.tokens import key_digest, looks_like_plaintext
from providers.errors import NotFoundError


def virtual_key_find_by_digest(digest: str, *, now: datetime) -> tuple[VirtualKey | None, bool]:
    """The key whose current secret has `digest`, else whose previous secret does and is still in its grace
    period. Returns (row, found by the previous secret)."""
    rows = list(VirtualKey.objects.select_related("team")
                .filter(Q(digest=digest) | Q(previous_digest=digest, previous_valid_until__gt=now))[:2])
    for row in rows:
        if row.digest == digest:
            return row, False
    return (rows[0], True) if rows else (None, False)


def virtual_key_find(identifier: str) -> VirtualKey | None:
    """A key named by its plaintext (`sk-...`) or by its public id (`token`)."""
    if not isinstance(identifier, str) or not identifier:
        return None
    queryset = VirtualKey.objects.select_related("team")
    if looks_like_plaintext(identifier):
        return queryset.filter(digest=key_digest(identifier)).first()
    return queryset.filter(id=identifier).first()


def virtual_key_get(identifier: str, *, param: str = "key") -> VirtualKey:
    """Like `virtual_key_find`, or a 404 envelope naming `param`."""
    row = virtual_key_find(identifier)
    if row is None:
        raise NotFoundError("No key matches the one given.", param=param, code="key_not_found")
    return row


def virtual_key_list(*, team_id: str | None = None, key_alias: str | None = None,
                     user_id: str | None = None) -> QuerySet[VirtualKey]:
    queryset = VirtualKey.objects.select_related("team").order_by("-created_at", "id")
    if team_id is not None:
        queryset = queryset.filter(team_id=team_id)
    if key_alias is not None:
        queryset = queryset.filter(key_alias=key_alias)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id)
    return queryset


def virtual_key_list_by_alias(aliases: list[str]) -> list[VirtualKey]:
    return list(VirtualKey.objects.filter(key_alias__in=aliases))


def team_find(team_id: str) -> Team | None:
    if not isinstance(team_id, str) or not team_id:
        return None
    return Team.objects.filter(id=team_id).first()


def team_get(team_id: str, *, param: str = "team_id") -> Team:
    team = team_find(team_id)
    if team is None:
        raise NotFoundError(f"Team '{team_id}' does not exist.", param=param, code="team_not_found")
    return team


def team_list(*, team_alias: str | None = None) -> QuerySet[Team]:
    queryset = Team.objects.order_by("-created_at", "id")
    if team_alias is not None:
        queryset = queryset.filter(team_alias=team_alias)
    return queryset


def team_keys(team: Team) -> QuerySet[VirtualKey]:
    return VirtualKey.objects.select_related("team").filter(team=team).order_by("-created_at", "id")
