"""Key and team services: every write moves the keys' version (and only theirs), secrets are stored as
digests, regeneration keeps a grace digest, budget periods step by whole periods (calendar months too)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from keys.durations import Duration, add_months, next_reset_after, parse_duration
from keys.key_cache import key_lookup
from keys.models import Team, VirtualKey
from keys.services import (
    budget_periods_reset,
    team_create,
    team_delete,
    team_update,
    virtual_key_block,
    virtual_key_delete,
    virtual_key_generate,
    virtual_key_last_used_record,
    virtual_key_regenerate,
    virtual_key_update,
)
from keys.tokens import key_digest
from models_registry.choices import VersionScope
from models_registry.selectors import versions_read
from providers.errors import PermissionDeniedError

pytestmark = pytest.mark.django_db


def keys_version() -> int:
    return versions_read().get(VersionScope.KEYS, 0)


WRITES = {
    "generate": lambda key, team: virtual_key_generate(fields={}),
    "update": lambda key, team: virtual_key_update(key=key, fields={"rpm_limit": 3}),
    "regenerate": lambda key, team: virtual_key_regenerate(key=key),
    "block": lambda key, team: virtual_key_block(key=key),
    "delete": lambda key, team: virtual_key_delete(keys=[key]),
    "team_create": lambda key, team: team_create(fields={}),
    "team_update": lambda key, team: team_update(team=team, fields={"rpm_limit": 1}),
    "team_delete": lambda key, team: team_delete(teams=[team]),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_moves_the_keys_version_and_not_the_registrys(write):
    team = team_create(fields={}, team_id="t")
    key = virtual_key_generate(fields={"team_id": "t"}).key
    before = versions_read()
    WRITES[write](key, team)
    after = versions_read()
    assert after[VersionScope.KEYS] == before[VersionScope.KEYS] + 1
    assert after.get(VersionScope.REGISTRY) == before.get(VersionScope.REGISTRY)


def test_last_use_moves_no_version_and_no_updated_at():
    key = virtual_key_generate(fields={}).key
    version, updated_at = keys_version(), key.updated_at
    used_at = timezone.now()
    assert virtual_key_last_used_record(used={key.id: used_at}) == 1
    key.refresh_from_db()
    assert (key.last_used_at, key.updated_at, keys_version()) == (used_at, updated_at, version)


def test_only_the_digest_and_a_masked_form_are_stored():
    issued = virtual_key_generate(fields={"key_alias": "stored"})
    row = VirtualKey.objects.get(id=issued.key.id)
    assert row.digest == key_digest(issued.plaintext) != issued.plaintext
    assert row.key_name == "sk-..." + issued.plaintext[-4:]
    assert len(row.digest) == 64


def test_the_digest_depends_on_the_secret_key(settings):
    first = key_digest("sk-same-plaintext")
    settings.SECRET_KEY = "another-secret"
    assert key_digest("sk-same-plaintext") != first


def test_regeneration_with_grace_keeps_the_previous_digest_until_it_ends():
    issued = virtual_key_generate(fields={})
    renewed = virtual_key_regenerate(key=issued.key, grace_seconds=60)
    row = VirtualKey.objects.get(id=issued.key.id)
    assert (row.digest, row.previous_digest) == (key_digest(renewed.plaintext), key_digest(issued.plaintext))
    assert timedelta(seconds=55) < row.previous_valid_until - timezone.now() <= timedelta(seconds=60)
    old_view = key_lookup(issued.plaintext)
    assert (old_view.id, old_view.valid_until) == (row.id, row.previous_valid_until)
    assert key_lookup(renewed.plaintext).valid_until is None
    again = virtual_key_regenerate(key=row)  # no grace: the secret before is forgotten at once
    row.refresh_from_db()
    assert (row.previous_digest, row.previous_valid_until) == ("", None)
    assert key_lookup(renewed.plaintext) is None
    assert key_lookup(again.plaintext).id == row.id


def test_setting_or_clearing_the_budget_duration_restarts_the_period():
    key = virtual_key_generate(fields={"budget_duration": "1h"}).key
    assert timedelta(minutes=59) < key.budget_reset_at - timezone.now() <= timedelta(hours=1)
    key = virtual_key_update(key=key, fields={"budget_duration": "1mo"})
    assert key.budget_reset_at.month != timezone.now().month
    key = virtual_key_update(key=key, fields={"budget_duration": None})
    assert (key.budget_duration, key.budget_reset_at) == ("", None)


def test_budget_periods_reset_steps_whole_periods_and_only_once():
    now = datetime(2030, 3, 31, 12, 0, tzinfo=UTC)
    key = virtual_key_generate(fields={"budget_duration": "1mo"}).key
    team = team_create(fields={"budget_duration": "1d"}, team_id="daily")
    VirtualKey.objects.filter(id=key.id).update(spend=3.0, budget_reset_at=datetime(2030, 1, 31, 0, 0, tzinfo=UTC))
    Team.objects.filter(id=team.id).update(spend=2.0, budget_reset_at=datetime(2030, 3, 29, 6, 0, tzinfo=UTC))
    untouched = virtual_key_generate(fields={"budget_duration": "30d"}).key
    VirtualKey.objects.filter(id=untouched.id).update(spend=1.0, budget_reset_at=datetime(2030, 4, 2, tzinfo=UTC))
    assert budget_periods_reset(now=now) == 2
    key.refresh_from_db()
    team.refresh_from_db()
    untouched.refresh_from_db()
    # 31 Jan + 1 month is 28 Feb (29 in leap years); + 2 months is 31 March 00:00, still not after now: 30 April.
    assert (key.spend, key.budget_reset_at) == (0.0, datetime(2030, 4, 30, 0, 0, tzinfo=UTC))
    assert (team.spend, team.budget_reset_at) == (0.0, datetime(2030, 4, 1, 6, 0, tzinfo=UTC))
    assert (untouched.spend, untouched.budget_reset_at) == (1.0, datetime(2030, 4, 2, tzinfo=UTC))
    assert budget_periods_reset(now=now) == 0


def test_a_key_cannot_name_models_outside_its_team_even_through_an_alias():
    team_create(fields={"models": ["a"]}, team_id="narrow")
    virtual_key_generate(fields={"team_id": "narrow", "models": ["x"], "aliases": {"x": "a"}})
    with pytest.raises(PermissionDeniedError):
        virtual_key_generate(fields={"team_id": "narrow", "models": ["x"], "aliases": {"x": "b"}})


@pytest.mark.parametrize(("text", "expected"), [("30s", Duration(30, "s")), ("30m", Duration(30, "m")),
                                                ("24h", Duration(24, "h")), ("30d", Duration(30, "d")),
                                                ("2w", Duration(2, "w")), ("1mo", Duration(1, "mo")),
                                                (" 3 mo ", Duration(3, "mo"))])
def test_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0s", "-1d", "1y", "1.5h", "30 days"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_months_are_calendar_months():
    assert add_months(datetime(2032, 1, 31, tzinfo=UTC), 1) == datetime(2032, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2031, 11, 30, tzinfo=UTC), 3) == datetime(2032, 2, 29, tzinfo=UTC)
    start = datetime(2030, 1, 15, tzinfo=UTC)
    assert next_reset_after(start, Duration(1, "mo"), datetime(2030, 3, 20, tzinfo=UTC)) == datetime(
        2030, 4, 15, tzinfo=UTC)
    assert next_reset_after(start, Duration(10, "s"), start + timedelta(seconds=25)) == start + timedelta(seconds=30)
    assert next_reset_after(start, Duration(10, "s"), start - timedelta(seconds=1)) == start
