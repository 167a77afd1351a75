"""Durations as LiteLLM writes them (`30s`, `30m`, `24h`, `30d`, `1mo`): key lifetimes and budget periods.

Seconds, minutes, hours, days and weeks are fixed lengths; months are calendar months (`1mo` from
31 January is the last day of February), so a monthly budget resets on the same day each month.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from providers.errors import InvalidRequestError

_PATTERN = re.compile(r"^\s*(\d+)\s*(mo|s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MONTH_SECONDS = 30 * 86400  # only to size counters' lifetimes, never to compute a reset time


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration: `amount` units of `unit` (s, m, h, d, w or mo)."""

    amount: int
    unit: str

    @property
    def approximate_seconds(self) -> int:
        return self.amount * (MONTH_SECONDS if self.unit == "mo" else _SECONDS[self.unit])

    def after(self, moment: datetime) -> datetime:
        """`moment` plus this duration (calendar months for `mo`)."""
        if self.unit == "mo":
            return add_months(moment, self.amount)
        return moment + timedelta(seconds=self.amount * _SECONDS[self.unit])


def parse_duration(value: str) -> Duration:
    """Parse `30s`/`30m`/`24h`/`30d`/`2w`/`1mo`; raises `ValueError` for anything else or a zero length."""
    match = _PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a duration: {value!r}")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"a duration must be positive: {value!r}")
    return Duration(amount, match.group(2))


def duration_or_error(value, *, param: str) -> Duration:
    """The parsed duration, or a 400 envelope naming `param`."""
    try:
        return parse_duration(value)
    except ValueError:
        raise InvalidRequestError(
            f"'{param}' must be a duration such as '30s', '30m', '24h', '30d' or '1mo'; got {value!r}.",
            param=param, code="invalid_value") from None


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_reset_after(reset_at: datetime, duration: Duration, now: datetime) -> datetime:
    """The first period boundary after `now`, stepping from `reset_at` by whole periods.

    Every worker (and the database reset) computes the same boundary from the same inputs, so the
    in-memory rollover and the stored `budget_reset_at` always agree on which period is current.
    """
    if reset_at > now:
        return reset_at
    if duration.unit != "mo":
        step = duration.approximate_seconds
        periods = int((now - reset_at).total_seconds() // step) + 1
        return reset_at + timedelta(seconds=periods * step)
    boundary, months = reset_at, 0
    while boundary <= now:
        months += duration.amount
        boundary = add_months(reset_at, months)
    return boundary
