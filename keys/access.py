"""Admission: may this caller make this call now? Everything here runs before anything goes upstream.

`admit` resolves the caller's model aliases, checks model access (key, then team), budgets, and rate
limits (requests and tokens per minute, requests in parallel; key and team alike), and takes a
parallel-request slot; the returned `Admission` is released when the call ends, with the tokens it
used (they count against tokens-per-minute limits). All counting goes through the shared counters, so
limits hold across workers and instances when Redis is configured. The master key is never limited.
"""
from __future__ import annotations

import time
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from keys.budgets import MICRO_DOLLARS, current_period_end, rolled_over, spend_counter
from keys.maintenance import budget_rollover_noticed
from keys.principal import Caller, KeyView, LimitScope
from models_registry.counters import counter_add, counter_get_many, window_key
from providers.errors import GatewayError, PermissionDeniedError, RateLimitError

WINDOW_SECONDS = 60
# A parallel-request counter outlives any single call; releases clamp it at zero if it ever drifts.
PARALLEL_TTL_SECONDS = 6 * 3600


class BudgetExceededError(GatewayError):
    """A 400 (not 429): SDKs do not retry it, and waiting a few seconds would not help."""

    status_code = 400
    type = "budget_exceeded"
    code = "budget_exceeded"


def _rpm_scope(limit: LimitScope) -> str:
    return f"rpm:{limit.scope}:{limit.id}"


def _tpm_scope(limit: LimitScope) -> str:
    return f"tpm:{limit.scope}:{limit.id}"


def parallel_counter(limit: LimitScope) -> str:
    return f"parallel:{limit.scope}:{limit.id}"


@dataclass(slots=True)
class Admission:
    """A call let in: the model group it resolved to, and what must be given back when it ends.

    `headers` are the `x-ratelimit-*` headers of the tightest limit (empty when the key has none), for
    the response; `disable_fallbacks` comes from the key's metadata, for the router.
    """

    caller: Caller
    model_group: str
    headers: dict[str, str] = field(default_factory=dict)
    disable_fallbacks: bool = False
    parallel_counters: tuple[str, ...] = ()
    token_scopes: tuple[str, ...] = ()
    released: bool = False

    def release(self, *, total_tokens: int = 0) -> None:
        """The call ended (answered, failed or abandoned); `total_tokens` counts against tpm limits."""
        if self.released:
            return
        self.released = True
        for counter in self.parallel_counters:
            value = counter_add(counter, -1, ttl=PARALLEL_TTL_SECONDS)
            if value < 0:  # the counter expired while calls were in flight: never let it go negative
                counter_add(counter, -value, ttl=PARALLEL_TTL_SECONDS)
        if total_tokens > 0:
            for scope in self.token_scopes:
                counter, seconds_left = window_key(scope, WINDOW_SECONDS)
                counter_add(counter, total_tokens, ttl=seconds_left + 1)


def admit(*, caller: Caller, model: str, operation: str) -> Admission:
    """Let the call in or raise the `GatewayError` that says why not (403 model, 400 budget, 429 limits)."""
    key = caller.key
    if key is None:
        return Admission(caller=caller, model_group=model)
    group = key.aliases.get(model, model)
    check_model_access(key, model, group)
    if not key.limited:
        return Admission(caller=caller, model_group=group, disable_fallbacks=key.disable_fallbacks)
    return _admit_limited(caller, key, group)


def budget_check(caller: Caller) -> None:
    """Refuse (400 `budget_exceeded`) a caller whose key or team has spent its budget: work that will
    cost money later, such as a batch, is refused at the door like a call would be."""
    key = caller.key
    if key is None:
        return
    budgeted = [limit for limit in key.scopes if limit.max_budget is not None]
    if not budgeted:
        return
    now = timezone.now()
    counters = [spend_counter(limit, now)[0] for limit in budgeted]
    counted = counter_get_many(counters)
    for limit, counter in zip(budgeted, counters, strict=True):
        _check_budget(limit, counted.get(counter, 0), now)


def check_model_access(key: KeyView, requested: str, group: str) -> None:
    """The key must allow the model (by the name asked for or the group it resolves to); the team must allow
    the group itself, whatever the key's aliases say."""
    if not _key_allows(key, requested, group):
        raise PermissionDeniedError(
            f"This key may not use model '{requested}'. Models it may use: {', '.join(sorted(key.key_models))}.",
            param="model", type="key_model_access_denied", code="key_model_access_denied")
    if not _team_allows(key, group):
        raise PermissionDeniedError(
            f"Team '{key.team_alias or key.team_id}' may not use model '{group}'. Models it may use: "
            f"{', '.join(sorted(key.team_models))}.",
            param="model", type="team_model_access_denied", code="team_model_access_denied")


def _key_allows(key: KeyView, requested: str, group: str) -> bool:
    return key.key_models is None or requested in key.key_models or group in key.key_models


def _team_allows(key: KeyView, group: str) -> bool:
    return key.team_models is None or group in key.team_models


class _ModelsOfKey:
    """`name in allowed` answers "may this key call `name`?" exactly as admission would."""

    __slots__ = ("key",)

    def __init__(self, key: KeyView) -> None:
        self.key = key

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        group = self.key.aliases.get(name, name)
        return _key_allows(self.key, name, group) and _team_allows(self.key, group)


def allowed_groups(caller: Caller) -> Container[str] | None:
    """What `GET /models` may list for this caller (`None`: every group)."""
    key = caller.key
    if key is None or (key.key_models is None and key.team_models is None):
        return None
    return _ModelsOfKey(key)


def _admit_limited(caller: Caller, key: KeyView, group: str) -> Admission:
    now = timezone.now()
    clock = time.time()
    scopes = key.scopes
    budgeted = [limit for limit in scopes if limit.max_budget is not None]
    token_limited = [limit for limit in scopes if limit.tpm_limit is not None]
    spend_keys = [spend_counter(limit, now)[0] for limit in budgeted]
    token_keys = [window_key(_tpm_scope(limit), WINDOW_SECONDS, clock)[0] for limit in token_limited]
    counted = counter_get_many(spend_keys + token_keys) if spend_keys or token_keys else {}

    for limit, counter in zip(budgeted, spend_keys, strict=True):
        _check_budget(limit, counted.get(counter, 0), now)

    seconds_left = window_key("", WINDOW_SECONDS, clock)[1]
    report = _Report(seconds_left)
    for limit, counter in zip(token_limited, token_keys, strict=True):
        used = counted.get(counter, 0)
        if used >= limit.tpm_limit:
            _note_requests_so_far(report, scopes, clock)
            raise _rate_limited(limit, f"{limit.tpm_limit} tokens per minute", seconds_left,
                                report.tokens(limit.tpm_limit, 0))
        report.note_tokens(limit.tpm_limit, limit.tpm_limit - used)

    taken: list[str] = []
    try:
        for limit in scopes:
            if limit.rpm_limit is None:
                continue
            counter, _ = window_key(_rpm_scope(limit), WINDOW_SECONDS, clock)
            value = counter_add(counter, 1, ttl=seconds_left + 1)
            taken.append(counter)
            if value > limit.rpm_limit:
                raise _rate_limited(limit, f"{limit.rpm_limit} requests per minute", seconds_left,
                                    report.requests(limit.rpm_limit, 0))
            report.note_requests(limit.rpm_limit, limit.rpm_limit - value)
        parallel: list[str] = []
        try:
            for limit in scopes:
                if limit.max_parallel_requests is None:
                    continue
                counter = parallel_counter(limit)
                value = counter_add(counter, 1, ttl=PARALLEL_TTL_SECONDS)
                parallel.append(counter)
                if value > limit.max_parallel_requests:
                    raise _rate_limited(limit, f"{limit.max_parallel_requests} requests at a time", 1, report.headers)
        except GatewayError:
            for counter in parallel:
                counter_add(counter, -1, ttl=PARALLEL_TTL_SECONDS)
            raise
    except GatewayError:
        for counter in taken:  # a refused request does not use up the minute's allowance
            counter_add(counter, -1, ttl=seconds_left + 1)
        raise
    return Admission(caller=caller, model_group=group, headers=report.headers,
                     disable_fallbacks=key.disable_fallbacks, parallel_counters=tuple(parallel),
                     token_scopes=tuple(_tpm_scope(limit) for limit in token_limited))


def _note_requests_so_far(report: _Report, scopes: tuple[LimitScope, ...], clock: float) -> None:
    """On a refusal for tokens, still tell the client where it stands on requests (one more read)."""
    limited = [limit for limit in scopes if limit.rpm_limit is not None]
    counters = [window_key(_rpm_scope(limit), WINDOW_SECONDS, clock)[0] for limit in limited]
    values = counter_get_many(counters) if counters else {}
    for limit, counter in zip(limited, counters, strict=True):
        report.note_requests(limit.rpm_limit, limit.rpm_limit - values.get(counter, 0))


def _check_budget(limit: LimitScope, counted_micros: int, now: datetime) -> None:
    stale = rolled_over(limit, now)
    if stale:
        budget_rollover_noticed()
    spent = max(0.0 if stale else limit.spend, counted_micros / MICRO_DOLLARS)
    if spent < limit.max_budget:
        return
    end = current_period_end(limit, now)
    resets = f"; it resets at {end.isoformat()}" if end is not None else ""
    raise BudgetExceededError(
        f"Budget has been exceeded for {limit.scope} '{limit.label}': spent ${spent:.6f} of "
        f"${limit.max_budget:.6f}{resets}.")


class _Report:
    """The `x-ratelimit-*` headers: for requests and for tokens, the limit with the least room left."""

    def __init__(self, seconds_left: int) -> None:
        self.reset = f"{seconds_left}s"
        self.headers: dict[str, str] = {}
        self._requests_left: int | None = None
        self._tokens_left: int | None = None

    def note_requests(self, limit: int, remaining: int) -> None:
        if self._requests_left is None or remaining < self._requests_left:
            self._requests_left = remaining
            self.requests(limit, remaining)

    def note_tokens(self, limit: int, remaining: int) -> None:
        if self._tokens_left is None or remaining < self._tokens_left:
            self._tokens_left = remaining
            self.tokens(limit, remaining)

    def requests(self, limit: int, remaining: int) -> dict[str, str]:
        self.headers.update({"x-ratelimit-limit-requests": str(limit),
                             "x-ratelimit-remaining-requests": str(max(0, remaining)),
                             "x-ratelimit-reset-requests": self.reset})
        return self.headers

    def tokens(self, limit: int, remaining: int) -> dict[str, str]:
        self.headers.update({"x-ratelimit-limit-tokens": str(limit),
                             "x-ratelimit-remaining-tokens": str(max(0, remaining)),
                             "x-ratelimit-reset-tokens": self.reset})
        return self.headers


def _rate_limited(limit: LimitScope, what: str, retry_after: int, headers: dict[str, str]) -> RateLimitError:
    return RateLimitError(
        f"Rate limit exceeded for {limit.scope} '{limit.label}': {what}. Try again in {retry_after} s.",
        headers={"Retry-After": str(retry_after), **headers})
