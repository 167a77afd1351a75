"""The management API's request fields for keys and teams, checked one by one (LiteLLM's names).

Each parser gets the value and the field's name and returns the clean value or raises a 400
envelope naming the field. A `null` clears a nullable field; on a field that cannot be empty
(`models`, `metadata`, ...) it means "not given", as LiteLLM's clients send unset fields as null.
Fields Gatehouse does not know are ignored, so scripts written for LiteLLM keep working.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from keys.choices import KeyRole
from keys.durations import duration_or_error
from keys.tokens import KEY_PREFIX
from providers.errors import InvalidRequestError

_ABSENT = object()
MAX_TEXT = 255


class KeyFields(TypedDict, total=False):
    key_alias: str | None
    models: list[str]
    aliases: dict[str, str]
    max_budget: float | None
    budget_duration: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    duration: str | None
    expires: datetime | None
    metadata: dict[str, Any]
    team_id: str | None
    user_id: str | None
    blocked: bool
    role: str
    spend: float


class TeamFields(TypedDict, total=False):
    team_id: str
    team_alias: str | None
    models: list[str]
    max_budget: float | None
    budget_duration: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    metadata: dict[str, Any]
    blocked: bool


def _invalid(param: str, message: str, code: str = "invalid_type") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def text(value, param: str):
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(param, f"'{param}' must be a string.")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise _invalid(param, f"'{param}' must be at most {MAX_TEXT} characters.", "invalid_value")
    return value or None


def required_text(value, param: str):
    value = text(value, param)
    if value is None:
        raise _invalid(param, f"'{param}' must be a non-empty string.", "invalid_value")
    return value


def model_list(value, param: str):
    if value is None:
        return _ABSENT
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _invalid(param, f"'{param}' must be a list of model group names.")
    return list(dict.fromkeys(item.strip() for item in value))


def alias_map(value, param: str):
    if value is None:
        return _ABSENT
    if not isinstance(value, dict) or not all(
            isinstance(name, str) and name and isinstance(target, str) and target for name, target in value.items()):
        raise _invalid(param, f"'{param}' must map model names to model group names, e.g. {{\"gpt-4\": \"my-group\"}}.")
    return dict(value)


def money(value, param: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
        raise _invalid(param, f"'{param}' must be a number of US dollars, 0 or more.")
    return float(value)


def required_money(value, param: str):
    value = money(value, param)
    return _ABSENT if value is None else value


def count(value, param: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(param, f"'{param}' must be a whole number, 0 or more.")
    return value


def duration_text(value, param: str):
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(param, f"'{param}' must be a duration such as '30s', '30m', '24h', '30d' or '1mo'.")
    duration_or_error(value, param=param)
    return value.strip()


def moment(value, param: str):
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise _invalid(param, f"'{param}' must be an ISO 8601 date and time, e.g. 2030-01-31T00:00:00Z.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def json_object(value, param: str):
    if value is None:
        return _ABSENT
    if not isinstance(value, dict):
        raise _invalid(param, f"'{param}' must be an object.")
    return value


def flag(value, param: str):
    if value is None:
        return _ABSENT
    if not isinstance(value, bool):
        raise _invalid(param, f"'{param}' must be true or false.")
    return value


def role(value, param: str):
    if value is None:
        return _ABSENT
    if value not in KeyRole.values:
        raise _invalid(param, f"'{param}' must be one of {', '.join(KeyRole.values)}.", "invalid_value")
    return value


COMMON = {
    "models": model_list,
    "max_budget": money,
    "budget_duration": duration_text,
    "rpm_limit": count,
    "tpm_limit": count,
    "max_parallel_requests": count,
    "metadata": json_object,
    "blocked": flag,
}
KEY_FIELDS: dict[str, Callable] = {
    **COMMON,
    "key_alias": text,
    "aliases": alias_map,
    "duration": duration_text,
    "expires": moment,
    "team_id": text,
    "user_id": text,
    "role": role,
}
KEY_UPDATE_FIELDS: dict[str, Callable] = {**KEY_FIELDS, "spend": required_money}
TEAM_FIELDS: dict[str, Callable] = {**COMMON, "team_alias": text}


def parse_fields(body: dict, parsers: dict[str, Callable]) -> dict:
    """The known fields present in `body`, each checked; unknown fields are ignored."""
    fields = {}
    for name, parser in parsers.items():
        if name in body:
            value = parser(body[name], name)
            if value is not _ABSENT:
                fields[name] = value
    if fields.get("duration") is not None and fields.get("expires") is not None:
        raise _invalid("expires", "Give either 'duration' or 'expires', not both.", "invalid_value")
    return fields


def key_fields(body: dict, *, update: bool = False) -> KeyFields:
    return parse_fields(body, KEY_UPDATE_FIELDS if update else KEY_FIELDS)  # type: ignore[return-value]


def team_fields(body: dict) -> TeamFields:
    return parse_fields(body, TEAM_FIELDS)  # type: ignore[return-value]


def custom_plaintext(value, param: str = "key") -> str:
    """A key value chosen by the caller (LiteLLM lets `/key/generate` take one): `sk-` and at least 20 characters."""
    if not isinstance(value, str) or not value.startswith(KEY_PREFIX) or len(value) < 20 or len(value) > 200 \
            or any(character.isspace() for character in value):
        raise _invalid(param, f"'{param}' must start with '{KEY_PREFIX}', be 20 to 200 characters long and hold "
                              "no spaces.", "invalid_value")
    return value


def identifier_list(body: dict, name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise _invalid(name, f"'{name}' must be a non-empty list of strings.")
    return list(dict.fromkeys(value))
