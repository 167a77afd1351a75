"""The team management API: create, read (with its keys), change, list, delete (with its keys, as LiteLLM
does); a blocked team's keys are refused."""
from __future__ import annotations

import pytest

from keys.models import Team, VirtualKey
from tests.keys import support
from tests.keys.support import (
    MASTER,
    body,
    chat,
    generate,
    new_team,
)
from tests.proxy_api.helpers import envelope, error_body, post_json

fresh_key_state = support.fresh_key_state  # a fixture shared with tests/keys

pytestmark = pytest.mark.usefixtures("fresh_key_state")

TEAM_FIELDS = {"team_alias": "Platform", "models": ["gpt-fake"], "max_budget": 12.5, "budget_duration": "1mo",
               "rpm_limit": 100, "tpm_limit": 5000, "max_parallel_requests": 4, "metadata": {"cost_center": "42"},
               "blocked": False}


def test_new_team_echoes_its_fields(client, fake_gateway):
    team = new_team(client, team_id="platform", members_with_roles=[], **TEAM_FIELDS)
    assert team["budget_reset_at"] is not None
    assert {name: value for name, value in team.items() if name not in {"created_at", "updated_at",
                                                                        "budget_reset_at"}} == {
        "team_id": "platform", "spend": 0.0, **TEAM_FIELDS}


def test_a_team_id_is_generated_when_absent_and_must_be_unique(client, fake_gateway):
    generated = new_team(client)["team_id"]
    assert len(generated) == 36 and Team.objects.filter(id=generated).exists()
    new_team(client, team_id="dup")
    response = post_json(client, "/team/new", {"team_id": "dup"}, MASTER)
    assert (response.status_code, error_body(response)) == (400, envelope(
        "Team 'dup' already exists.", "invalid_request_error", "team_id", "team_exists"))


@pytest.mark.parametrize(("fields", "param"), [({"models": "x"}, "models"), ({"max_budget": -1}, "max_budget"),
                                               ({"budget_duration": "monthly"}, "budget_duration"),
                                               ({"rpm_limit": "5"}, "rpm_limit"), ({"team_id": 7}, "team_id"),
                                               ({"team_alias": ["a"]}, "team_alias"), ({"blocked": 1}, "blocked")])
def test_bad_team_fields_are_400_naming_the_field(client, fake_gateway, fields, param):
    response = post_json(client, "/team/new", fields, MASTER)
    assert (response.status_code, error_body(response)["error"]["param"]) == (400, param)
    assert Team.objects.count() == 0


def test_team_info_lists_the_teams_keys(client, fake_gateway):
    new_team(client, team_id="t-info", team_alias="Info")
    first = generate(client, team_id="t-info", key_alias="one")
    generate(client, key_alias="elsewhere")
    response = client.get("/team/info", {"team_id": "t-info"}, **MASTER)
    assert response.status_code == 200
    shown = body(response)
    assert (shown["team_id"], shown["team_info"]["team_alias"]) == ("t-info", "Info")
    assert [(key["token"], key["key_alias"]) for key in shown["keys"]] == [(first["token"], "one")]
    assert first["key"] not in response.content.decode()
    missing = client.get("/team/info", {"team_id": "nope"}, **MASTER)
    assert (missing.status_code, error_body(missing)) == (404, envelope(
        "Team 'nope' does not exist.", "invalid_request_error", "team_id", "team_not_found"))
    bare = client.get("/team/info", **MASTER)
    assert (bare.status_code, error_body(bare)["error"]["param"]) == (400, "team_id")


def test_team_update_changes_what_it_names(client, fake_gateway):
    new_team(client, team_id="t-upd", **TEAM_FIELDS)
    response = post_json(client, "/team/update", {"team_id": "t-upd", "rpm_limit": None, "team_alias": "Renamed"},
                         MASTER)
    assert response.status_code == 200
    updated = body(response)
    assert updated["team_id"] == "t-upd"
    assert (updated["data"]["rpm_limit"], updated["data"]["team_alias"], updated["data"]["tpm_limit"]) == (
        None, "Renamed", 5000)
    missing = post_json(client, "/team/update", {"team_id": "ghost", "rpm_limit": 1}, MASTER)
    assert missing.status_code == 404


def test_team_list_shows_every_team_and_filters_by_alias(client, fake_gateway):
    new_team(client, team_id="a", team_alias="Alpha")
    new_team(client, team_id="b", team_alias="Beta")
    assert [team["team_id"] for team in body(client.get("/team/list", **MASTER))] == ["b", "a"]
    assert [team["team_id"] for team in body(client.get("/team/list", {"team_alias": "Alpha"}, **MASTER))] == ["a"]


def test_deleting_a_team_deletes_its_keys(client, fake_gateway):
    new_team(client, team_id="gone")
    new_team(client, team_id="stays")
    doomed = generate(client, team_id="gone")
    kept = generate(client, team_id="stays")
    assert chat(client, doomed["key"]).status_code == 200
    response = post_json(client, "/team/delete", {"team_ids": ["gone"]}, MASTER)
    assert (response.status_code, body(response)) == (200, {"deleted_teams": ["gone"]})
    assert list(Team.objects.values_list("id", flat=True)) == ["stays"]
    assert list(VirtualKey.objects.values_list("id", flat=True)) == [kept["token"]]
    fake_gateway.reset()
    assert chat(client, doomed["key"]).status_code == 401
    assert fake_gateway.requests == []
    assert chat(client, kept["key"]).status_code == 200


def test_team_delete_is_all_or_nothing(client, fake_gateway):
    new_team(client, team_id="real")
    response = post_json(client, "/team/delete", {"team_ids": ["real", "imaginary"]}, MASTER)
    assert (response.status_code, error_body(response)) == (404, envelope(
        "No such team: imaginary. Nothing was deleted.", "invalid_request_error", "team_ids", "team_not_found"))
    assert Team.objects.filter(id="real").exists()
    bare = post_json(client, "/team/delete", {}, MASTER)
    assert (bare.status_code, error_body(bare)["error"]["param"]) == (400, "team_ids")


def test_a_blocked_team_blocks_its_keys(client, fake_gateway):
    new_team(client, team_id="t-blk", team_alias="Frozen")
    key = generate(client, team_id="t-blk")["key"]
    assert chat(client, key).status_code == 200
    post_json(client, "/team/update", {"team_id": "t-blk", "blocked": True}, MASTER)
    fake_gateway.reset()
    response = chat(client, key)
    assert (response.status_code, error_body(response)) == (401, envelope(
        "The team of this API key ('Frozen') is blocked.", "authentication_error", None, "team_blocked"))
    assert fake_gateway.requests == []
