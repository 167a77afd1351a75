"""`GET /spend/logs`: what requests cost, one entry per request or summarised per day (LiteLLM's route).

An admin caller (the master key or a `proxy_admin` key) sees every key's logs; any other key sees only
its own, and naming another key or team is refused (403). As in LiteLLM, giving both `start_date` and
`end_date` summarises per day unless `summarize=false`; `summarize=true` summarises any query.
"""
from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from django.http import HttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema

from keys.principal import Caller
from keys.spend_selectors import (
    SpendFilter,
    day_start,
    key_id_for_api_key,
    spend_daily_summary,
    spend_log_page,
)
from providers.errors import InvalidRequestError, PermissionDeniedError
from proxy_api import openapi, openapi_spend
from proxy_api.auth import authenticate
from proxy_api.rendering import json_response
from proxy_api.views.base import GatewayView

TAG = "Spend"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_SUMMARY_DAYS = 3660


class SpendLogsView(GatewayView):
    @extend_schema(
        operation_id="list_spend_logs",
        tags=[TAG],
        summary="Spend logs, per request or per day",
        description=(
            "Every proxied request, newest first, with its key, model group, deployment, tokens and cost "
            "(`spend`, USD). With both `start_date` and `end_date` (or `summarize=true`) the answer is one "
            "entry per day instead: totals and spend per model group, key, team and user, days without "
            "traffic at zero. An admin key sees every key's logs; any other key only its own. Logs are "
            "written in the background about once a second, so the last second may not be listed yet."
        ),
        parameters=openapi_spend.SPEND_LOG_PARAMETERS,
        responses={200: openapi.ref("SpendLogsResponse"),
                   400: openapi.error_response("A filter is malformed (a date, `summarize`, `limit`)."),
                   403: openapi.error_response("A non-admin key asked for another key's or team's logs."),
                   **openapi.ERRORS_AUTH_ONLY},
    )
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        query = request.GET
        spend_filter = _allowed_filter(caller, _filter_from_query(query))
        start_day, end_day = _day(query, "start_date"), _day(query, "end_date")
        summarize = _flag(query, "summarize")
        if spend_filter.request_id is None and (summarize or (summarize is None and start_day and end_day)):
            if start_day and end_day and (end_day - start_day).days > MAX_SUMMARY_DAYS:
                raise InvalidRequestError(f"A summary covers at most {MAX_SUMMARY_DAYS} days.", param="end_date",
                                          code="invalid_value")
            return json_response(spend_daily_summary(spend_filter=spend_filter, first_day=start_day,
                                                     last_day=end_day))
        limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _integer(query, "offset", 0, 0, None)
        return json_response(spend_log_page(spend_filter=spend_filter, offset=offset, limit=limit))


def _filter_from_query(query) -> SpendFilter:
    key_id = _text(query, "key_id") or _text(query, "token")
    api_key = _text(query, "api_key")
    unknown_key = False
    if api_key is not None:
        key_id = key_id_for_api_key(api_key)
        unknown_key = key_id is None  # an unknown key matches no log (rather than every log)
    return SpendFilter(
        key_id=key_id,
        team_id=_text(query, "team_id"),
        user_id=_text(query, "user_id"),
        model_group=_text(query, "model") or _text(query, "model_group"),
        request_id=_text(query, "request_id"),
        start=_moment(query, "start_date", end=False),
        end=_moment(query, "end_date", end=True),
        unknown_key=unknown_key,
    )


def _allowed_filter(caller: Caller, spend_filter: SpendFilter) -> SpendFilter:
    """An admin's filter as asked; anyone else's pinned to their own key (naming another is a 403)."""
    if caller.is_admin:
        return spend_filter
    own = caller.key
    if spend_filter.unknown_key or spend_filter.key_id not in (None, own.id):
        raise PermissionDeniedError("This key may only read its own spend logs.", param="api_key",
                                    code="spend_logs_access_denied")
    if spend_filter.team_id not in (None, own.team_id):
        raise PermissionDeniedError("This key may only read its own team's spend logs.", param="team_id",
                                    code="spend_logs_access_denied")
    return dataclasses.replace(spend_filter, key_id=own.id)


def _text(query, name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _parsed(query, name: str) -> date | datetime | None:
    """`YYYY-MM-DD` (a whole day) or an ISO 8601 moment; naive moments are UTC."""
    value = _text(query, name)
    if value is None:
        return None
    try:
        moment = parse_datetime(value.replace("Z", "+00:00")) if "T" in value or " " in value else None
        day = None if moment is not None else parse_date(value)
    except ValueError:
        moment = day = None
    if moment is None and day is None:
        raise InvalidRequestError(f"'{name}' must be a date (YYYY-MM-DD) or an ISO 8601 date and time.",
                                  param=name, code="invalid_value")
    if moment is not None:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return day


def _moment(query, name: str, *, end: bool) -> datetime | None:
    value = _parsed(query, name)
    if value is None or isinstance(value, datetime):
        return value
    # A date-only end date includes that whole day.
    return day_start(value + timedelta(days=1)) if end else day_start(value)


def _day(query, name: str) -> date | None:
    value = _parsed(query, name)
    if isinstance(value, datetime):
        return value.date()
    return value


def _flag(query, name: str) -> bool | None:
    value = _text(query, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidRequestError(f"'{name}' must be true or false.", param=name, code="invalid_value")


def _integer(query, name: str, default: int, minimum: int, maximum: int | None) -> int:
    value = _text(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise InvalidRequestError(f"'{name}' must be a whole number {bounds}.", param=name, code="invalid_value")
    return number
