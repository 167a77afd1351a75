"""The key and team admin: every page renders; a key issued or rotated here is shown once, on the page that
answers the POST, and never again; block, unblock, rotate and revoke go through the services (the next API
request sees them); digests never appear."""
from __future__ import annotations

import re

import pytest

from keys.key_cache import key_lookup
from keys.models import Team, VirtualKey
from keys.services import team_create, virtual_key_generate
from keys.tokens import key_digest
from models_registry.choices import VersionScope
from models_registry.selectors import versions_read
from tests.keys.support import chat

KEYS = "/admin/keys/virtualkey/"
TEAMS = "/admin/keys/team/"


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def issued_plaintext(response) -> str:
    [plaintext] = re.findall(r'value="(sk-[^"]+)"', response.content.decode())
    return plaintext


def key_form(**fields) -> dict:
    form = {"key_alias": "", "team": "", "user_id": "", "role": "internal_user", "allowed_models": "[]",
            "aliases": "{}", "max_budget": "", "budget_duration": "", "rpm_limit": "", "tpm_limit": "",
            "max_parallel_requests": "", "expires_0": "", "expires_1": "", "metadata": "{}"}
    form.update(fields)
    return form


def test_the_changelists_render_with_spend_budget_and_last_use(operator):
    team_create(fields={"team_alias": "Ops", "max_budget": 10.0}, team_id="ops")
    issued = virtual_key_generate(fields={"key_alias": "listed", "team_id": "ops", "max_budget": 4.0})
    VirtualKey.objects.filter(id=issued.key.id).update(spend=1.5)
    keys = operator.get(KEYS)
    assert keys.status_code == 200
    html = keys.content.decode()
    for column in ("Spend (period)", "Budget left", "Last used at", "listed", "$1.5000", "$2.5000", "Ops"):
        assert column in html, column
    assert issued.key.digest not in html and issued.plaintext not in html
    teams = operator.get(TEAMS)
    assert teams.status_code == 200
    assert "$10.0000" in teams.content.decode()
    assert operator.get(KEYS, {"q": "listed"}).context["cl"].result_count == 1
    assert operator.get(KEYS, {"blocked__exact": "1"}).context["cl"].result_count == 0


def test_a_key_added_in_the_admin_is_shown_once_and_works(operator, fake_gateway):
    team_create(fields={"models": ["gpt-fake"]}, team_id="t")
    version = versions_read()[VersionScope.KEYS]
    response = operator.post(f"{KEYS}add/", key_form(key_alias="from-admin", team="t",
                                                      allowed_models='["gpt-fake"]', rpm_limit="5"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = issued_plaintext(response)
    row = VirtualKey.objects.get(key_alias="from-admin")
    assert (row.digest, row.team_id, row.allowed_models, row.rpm_limit) == (key_digest(plaintext), "t", ["gpt-fake"], 5)
    assert versions_read()[VersionScope.KEYS] == version + 1
    assert "This is the only time the key is shown" in response.content.decode()
    assert chat(operator, plaintext).status_code == 200

    change = operator.get(f"{KEYS}{row.id}/change/")
    assert change.status_code == 200
    html = change.content.decode()
    assert plaintext not in html and row.digest not in html
    assert row.key_name in html
    assert plaintext not in str(operator.cookies) and plaintext not in str(dict(operator.session))


def test_the_admin_refuses_models_beyond_the_team_and_bad_durations(operator):
    team_create(fields={"models": ["gpt-fake"]}, team_id="narrow")
    response = operator.post(f"{KEYS}add/", key_form(team="narrow", allowed_models='["embed-fake"]',
                                                      budget_duration="monthly"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["budget_duration"] == ["A duration such as 30s, 30m, 24h, 30d or 1mo."]
    assert errors["allowed_models"] == [
        "Team 'narrow' does not allow embed-fake; a key's models must be among its team's: gpt-fake."]
    assert VirtualKey.objects.count() == 0


def test_editing_a_key_in_the_admin_goes_through_the_service(operator, fake_gateway):
    issued = virtual_key_generate(fields={"key_alias": "edit-me", "budget_duration": "1h"})
    reset_at = issued.key.budget_reset_at
    assert chat(operator, issued.plaintext).status_code == 200
    response = operator.post(f"{KEYS}{issued.key.id}/change/", key_form(
        key_alias="edited", allowed_models='["embed-fake"]', budget_duration="1d"))
    assert response.status_code == 302
    row = VirtualKey.objects.get(id=issued.key.id)
    assert (row.key_alias, row.allowed_models, row.budget_duration) == ("edited", ["embed-fake"], "1d")
    assert row.budget_reset_at > reset_at
    assert chat(operator, issued.plaintext).status_code == 403  # enforced on the next request


def test_rotate_shows_the_new_secret_once_and_retires_the_old_one(operator, fake_gateway):
    issued = virtual_key_generate(fields={"key_alias": "rotating"})
    assert operator.get(f"{KEYS}{issued.key.id}/rotate/").status_code == 405
    response = operator.post(f"{KEYS}{issued.key.id}/rotate/")
    assert response.status_code == 200
    fresh = issued_plaintext(response)
    assert fresh != issued.plaintext
    assert (chat(operator, issued.plaintext).status_code, chat(operator, fresh).status_code) == (401, 200)
    assert VirtualKey.objects.get(id=issued.key.id).digest == key_digest(fresh)


def test_block_unblock_buttons_and_actions(operator, fake_gateway):
    first = virtual_key_generate(fields={"key_alias": "first"})
    second = virtual_key_generate(fields={"key_alias": "second"})
    page = operator.get(f"{KEYS}{first.key.id}/change/").content.decode()
    for button in (f"{KEYS}{first.key.id}/rotate/", f"{KEYS}{first.key.id}/block/", f"{KEYS}{first.key.id}/delete/"):
        assert button in page
    assert operator.post(f"{KEYS}{first.key.id}/block/").status_code == 302
    assert chat(operator, first.plaintext).status_code == 401
    assert f"{KEYS}{first.key.id}/unblock/" in operator.get(f"{KEYS}{first.key.id}/change/").content.decode()
    operator.post(f"{KEYS}{first.key.id}/unblock/")
    assert chat(operator, first.plaintext).status_code == 200
    operator.post(KEYS, {"action": "block_selected", "_selected_action": [first.key.id, second.key.id]})
    assert set(VirtualKey.objects.filter(blocked=True).values_list("key_alias", flat=True)) == {"first", "second"}
    assert chat(operator, second.plaintext).status_code == 401
    operator.post(KEYS, {"action": "unblock_selected", "_selected_action": [second.key.id]})
    assert chat(operator, second.plaintext).status_code == 200


def test_revoke_deletes_through_the_service(operator, fake_gateway):
    issued = virtual_key_generate(fields={"key_alias": "revoked"})
    assert key_lookup(issued.plaintext) is not None
    confirm = operator.get(f"{KEYS}{issued.key.id}/delete/")
    assert confirm.status_code == 200
    assert operator.post(f"{KEYS}{issued.key.id}/delete/", {"post": "yes"}).status_code == 302
    assert not VirtualKey.objects.exists()
    assert chat(operator, issued.plaintext).status_code == 401


def test_teams_are_added_edited_and_deleted_through_the_services(operator, fake_gateway):
    form = {"id": "", "team_alias": "Made here", "allowed_models": '["gpt-fake"]', "max_budget": "", "rpm_limit": "",
            "budget_duration": "", "tpm_limit": "", "max_parallel_requests": "", "metadata": "{}"}
    assert operator.get(f"{TEAMS}add/").status_code == 200
    assert operator.post(f"{TEAMS}add/", form).status_code == 302
    team = Team.objects.get(team_alias="Made here")
    assert len(team.id) == 36
    key = virtual_key_generate(fields={"team_id": team.id})
    assert chat(operator, key.plaintext, "embed-fake").status_code == 403
    change = operator.post(f"{TEAMS}{team.id}/change/", {**form, "allowed_models": '["gpt-fake", "embed-fake"]'})
    assert change.status_code == 302
    assert chat(operator, key.plaintext, "embed-fake").status_code == 200
    confirm = operator.get(f"{TEAMS}{team.id}/delete/").content.decode()
    assert "Virtual key: " in confirm and "Cannot delete" not in confirm
    assert operator.post(f"{TEAMS}{team.id}/delete/", {"post": "yes"}).status_code == 302
    assert not Team.objects.exists() and not VirtualKey.objects.exists()
    assert chat(operator, key.plaintext).status_code == 401


@pytest.mark.parametrize("path", [KEYS, f"{KEYS}add/", TEAMS, f"{TEAMS}add/"])
def test_the_pages_are_closed_to_anonymous_users(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
