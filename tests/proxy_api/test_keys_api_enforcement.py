"""What a key may do, enforced before anything goes upstream: its models and aliases (and its team's), its
budget and its team's (with periods that reset), its request rate and its team's. Every refusal is an exact
envelope, and the upstream fake received nothing."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from keys.budgets import spend_record
from keys.key_cache import key_lookup
from keys.maintenance import maintenance_run_once
from keys.models import Team, VirtualKey
from keys.principal import Caller
from models_registry.counters import window_start
from tests.keys import support
from tests.keys.support import (
    CHAT_COST,
    CHAT_TOKENS,
    MASTER,
    bearer,
    body,
    chat,
    generate,
    new_team,
)
from tests.proxy_api.helpers import envelope, error_body, post_json

fresh_key_state = support.fresh_key_state  # a fixture shared with tests/keys
priced_gateway = support.priced_gateway  # a fixture shared with tests/keys

pytestmark = pytest.mark.usefixtures("fresh_key_state")

GROUPS = ["embed-fake", "gpt-fake", "instruct-fake", "moderation-fake"]


def listed(client, key: str) -> list[str]:
    response = client.get("/v1/models", **bearer(key))
    assert response.status_code == 200
    return sorted(item["id"] for item in body(response)["data"])


def key_denied(model: str, allowed: str) -> dict:
    return envelope(f"This key may not use model '{model}'. Models it may use: {allowed}.",
                    "key_model_access_denied", "model", "key_model_access_denied")


# -- models ------------------------------------------------------------------------------------------------
def test_a_key_uses_only_its_models_and_lists_only_them(client, fake_gateway):
    key = generate(client, models=["gpt-fake", "embed-fake"])["key"]
    assert chat(client, key).status_code == 200
    embedded = post_json(client, "/v1/embeddings", {"model": "embed-fake", "input": "hi"}, bearer(key))
    assert embedded.status_code == 200
    fake_gateway.reset()
    for path, payload in [("/v1/chat/completions", {"model": "instruct-fake", "messages": [
                              {"role": "user", "content": "hi"}]}),
                          ("/v1/completions", {"model": "instruct-fake", "prompt": "hi"}),
                          ("/v1/moderations", {"model": "moderation-fake", "input": "hi"})]:
        response = post_json(client, path, payload, bearer(key))
        assert (response.status_code, error_body(response)) == (403, key_denied(payload["model"],
                                                                               "embed-fake, gpt-fake"))
    assert fake_gateway.requests == []
    assert listed(client, key) == ["embed-fake", "gpt-fake"]
    assert client.get("/v1/models/gpt-fake", **bearer(key)).status_code == 200
    hidden = client.get("/models/instruct-fake", **bearer(key))
    assert (hidden.status_code, error_body(hidden)["error"]["code"]) == (404, "model_not_found")


def test_a_key_without_models_or_with_all_proxy_models_uses_everything(client, fake_gateway):
    for models in ([], ["all-proxy-models"]):
        key = generate(client, models=models)["key"]
        assert listed(client, key) == GROUPS
        assert chat(client, key, "gpt-fake").status_code == 200


def test_an_unknown_model_the_key_may_not_use_is_403_not_404(client, fake_gateway):
    key = generate(client, models=["gpt-fake"])["key"]
    response = chat(client, key, "no-such-group")
    assert (response.status_code, error_body(response)) == (403, key_denied("no-such-group", "gpt-fake"))


def test_aliases_route_a_name_to_a_group(client, fake_gateway):
    key = generate(client, models=["gpt-4"], aliases={"gpt-4": "gpt-fake"})["key"]
    response = chat(client, key, "gpt-4")
    assert response.status_code == 200
    assert response["x-gatehouse-model-group"] == "gpt-fake"
    [received] = fake_gateway.requests
    assert received.body["model"] == "gpt-4o-mini"  # the group's provider model, not the alias
    assert chat(client, key, "gpt-fake").status_code == 403  # the key was granted the alias, not the group
    assert listed(client, key) == []  # an alias is not a group; the group itself is not the key's


def test_an_alias_onto_an_allowed_group_needs_no_grant_of_its_own(client, fake_gateway):
    key = generate(client, models=["gpt-fake"], aliases={"my-chat": "gpt-fake"})["key"]
    assert chat(client, key, "my-chat").status_code == 200
    assert chat(client, key, "gpt-fake").status_code == 200


def test_a_team_caps_its_keys_models(client, fake_gateway):
    new_team(client, team_id="t1", team_alias="Platform", models=["gpt-fake", "embed-fake"])
    team_models = generate(client, team_id="t1", models=["all-team-models"])["key"]
    unrestricted = generate(client, team_id="t1")["key"]
    aliased = generate(client, team_id="t1", aliases={"gpt-fake": "instruct-fake"})["key"]
    for key in (team_models, unrestricted):
        assert chat(client, key).status_code == 200
        assert listed(client, key) == ["embed-fake", "gpt-fake"]
    fake_gateway.reset()
    team_denied = envelope("Team 'Platform' may not use model 'instruct-fake'. Models it may use: embed-fake, "
                           "gpt-fake.",
                           "team_model_access_denied", "model", "team_model_access_denied")
    for key in (team_models, unrestricted, aliased):  # an alias never escapes the team
        response = chat(client, key, "instruct-fake" if key != aliased else "gpt-fake")
        assert (response.status_code, error_body(response)) == (403, team_denied)
    assert fake_gateway.requests == []


@pytest.mark.parametrize(("models", "outside"), [(["gpt-fake", "instruct-fake"], "instruct-fake"),
                                                 (["all-proxy-models"], "all-proxy-models")])
def test_a_key_cannot_be_given_models_beyond_its_team(client, fake_gateway, models, outside):
    new_team(client, team_id="t2", models=["gpt-fake"])
    response = post_json(client, "/key/generate", {"team_id": "t2", "models": models}, MASTER)
    assert (response.status_code, error_body(response)) == (403, envelope(
        f"Team 't2' does not allow {outside}; a key's models must be among its team's: gpt-fake.",
        "team_model_access_denied", "models", "team_model_access_denied"))
    assert VirtualKey.objects.count() == 0
    key = generate(client, team_id="t2", models=["gpt-fake"])["token"]
    update = post_json(client, "/key/update", {"key": key, "models": models}, MASTER)
    assert update.status_code == 403
    assert VirtualKey.objects.get(id=key).allowed_models == ["gpt-fake"]
    new_team(client, team_id="t3", models=["embed-fake"])
    moved = post_json(client, "/key/update", {"key": key, "team_id": "t3"}, MASTER)
    assert (moved.status_code, error_body(moved)["error"]["type"]) == (403, "team_model_access_denied")


def test_narrowing_a_team_applies_to_its_keys_at_once(client, fake_gateway):
    new_team(client, team_id="t4", models=["gpt-fake", "embed-fake"])
    key = generate(client, team_id="t4")["key"]
    assert chat(client, key).status_code == 200
    post_json(client, "/team/update", {"team_id": "t4", "models": ["embed-fake"]}, MASTER)
    fake_gateway.reset()
    assert chat(client, key).status_code == 403
    assert listed(client, key) == ["embed-fake"]
    assert fake_gateway.requests == []


# -- budgets ---------------------------------------------------------------------------------------------
def test_a_spent_budget_is_400_budget_exceeded_and_nothing_goes_upstream(client, fake_gateway):
    issued = generate(client, key_alias="capped", max_budget=0.5)
    assert chat(client, issued["key"]).status_code == 200
    post_json(client, "/key/update", {"key": issued["token"], "spend": 0.5}, MASTER)
    fake_gateway.reset()
    response = chat(client, issued["key"])
    assert (response.status_code, error_body(response)) == (400, envelope(
        "Budget has been exceeded for key 'capped': spent $0.500000 of $0.500000.", "budget_exceeded", None,
        "budget_exceeded"))
    assert fake_gateway.requests == []
    post_json(client, "/key/update", {"key": issued["token"], "max_budget": 0.75}, MASTER)
    assert chat(client, issued["key"]).status_code == 200


def test_what_calls_cost_counts_against_the_budget(client, priced_gateway):
    issued = generate(client, key_alias="metered", max_budget=2 * CHAT_COST)
    first, second = chat(client, issued["key"]), chat(client, issued["key"])
    assert (first.status_code, second.status_code) == (200, 200)
    priced_gateway.reset()
    response = chat(client, issued["key"])
    assert (response.status_code, error_body(response)["error"]["message"]) == (
        400, "Budget has been exceeded for key 'metered': spent $0.050000 of $0.050000.")
    assert priced_gateway.requests == []
    assert body(client.get("/key/info", {"key": issued["token"]}, **MASTER))["info"]["spend"] == 2 * CHAT_COST


def test_a_tpm_limit_counts_the_tokens_of_finished_calls(client, priced_gateway):
    wait_for_a_fresh_minute()
    key = generate(client, key_alias="tokens", tpm_limit=CHAT_TOKENS + 1)["key"]
    first = chat(client, key)
    assert (first.status_code, first["x-ratelimit-remaining-tokens"]) == (200, str(CHAT_TOKENS + 1))
    second = chat(client, key)
    assert (second.status_code, second["x-ratelimit-remaining-tokens"]) == (200, "1")
    priced_gateway.reset()
    refused = chat(client, key)
    assert refused.status_code == 429
    reset = int(refused["Retry-After"])
    assert error_body(refused)["error"]["message"] == (
        f"Rate limit exceeded for key 'tokens': {CHAT_TOKENS + 1} tokens per minute. Try again in {reset} s.")
    assert (refused["x-ratelimit-limit-tokens"], refused["x-ratelimit-remaining-tokens"]) == (
        str(CHAT_TOKENS + 1), "0")
    assert priced_gateway.requests == []


def test_a_team_budget_caps_every_key_of_the_team(client, fake_gateway):
    new_team(client, team_id="t5", team_alias="Research", max_budget=1.0)
    first = generate(client, team_id="t5", max_budget=10)
    second = generate(client, team_id="t5")
    spend_record(caller=Caller(key=key_lookup(first["key"])), cost=1.0)
    fake_gateway.reset()
    for key in (first["key"], second["key"]):
        response = chat(client, key)
        assert (response.status_code, error_body(response)) == (400, envelope(
            "Budget has been exceeded for team 'Research': spent $1.000000 of $1.000000.", "budget_exceeded", None,
            "budget_exceeded"))
    assert fake_gateway.requests == []
    team = body(client.get("/team/info", {"team_id": "t5"}, **MASTER))
    assert team["team_info"]["spend"] == 1.0
    assert {item["token"]: item["spend"] for item in team["keys"]} == {first["token"]: 1.0, second["token"]: 0.0}


def test_a_budget_resets_when_its_period_ends(client, priced_gateway):
    issued = generate(client, key_alias="periodic", max_budget=0.1, budget_duration="2s")
    reset_at = datetime.fromisoformat(issued["budget_reset_at"])
    post_json(client, "/key/update", {"key": issued["token"], "spend": 0.1}, MASTER)
    refused = chat(client, issued["key"])
    assert refused.status_code == 400
    assert error_body(refused)["error"]["message"] == (
        "Budget has been exceeded for key 'periodic': spent $0.100000 of $0.100000; it resets at "
        f"{reset_at.isoformat()}.")

    time.sleep(max(0.0, (reset_at - datetime.now(reset_at.tzinfo)).total_seconds()) + 0.05)
    assert chat(client, issued["key"]).status_code == 200  # rolled over in memory: no job needed
    shown = body(client.get("/key/info", {"key": issued["token"]}, **MASTER))["info"]
    next_reset = datetime.fromisoformat(shown["budget_reset_at"])
    assert shown["spend"] == CHAT_COST  # the call just made, in the new period
    assert (next_reset - reset_at) % timedelta(seconds=2) == timedelta(0) and next_reset > reset_at

    row = VirtualKey.objects.get(id=issued["token"])
    assert (row.spend, row.budget_reset_at) == (0.1, reset_at)  # the database is reset off the request path
    assert maintenance_run_once()["budgets_reset"] == 1
    row.refresh_from_db()
    assert (row.spend, row.budget_reset_at) == (0.0, next_reset)


def test_a_team_budget_period_resets_in_the_database_too(client, fake_gateway):
    team = new_team(client, team_id="t6", max_budget=1.0, budget_duration="1s")
    Team.objects.filter(id="t6").update(spend=0.4)
    time.sleep(max(0.0, (datetime.fromisoformat(team["budget_reset_at"]) - datetime.now(
        datetime.fromisoformat(team["budget_reset_at"]).tzinfo)).total_seconds()) + 0.05)
    assert maintenance_run_once()["budgets_reset"] == 1
    row = Team.objects.get(id="t6")
    assert row.spend == 0.0 and row.budget_reset_at > datetime.fromisoformat(team["budget_reset_at"])


# -- request rates ---------------------------------------------------------------------------------------
def wait_for_a_fresh_minute(margin: float = 5.0) -> None:
    """Start a limit test well inside a fixed one-minute window, so no window boundary falls in it."""
    if time.time() - window_start(60) > 60 - margin:
        time.sleep(60 - (time.time() - window_start(60)) + 0.05)


def test_rpm_limit_is_429_with_retry_after_and_rate_limit_headers(client, priced_gateway):
    fake_gateway = priced_gateway
    wait_for_a_fresh_minute()
    key = generate(client, key_alias="slow", rpm_limit=2, tpm_limit=1000)["key"]
    first, second = chat(client, key), chat(client, key)
    assert (first.status_code, second.status_code) == (200, 200)
    fake_gateway.reset()
    refused = chat(client, key)
    assert refused.status_code == 429
    reset = int(refused["Retry-After"])
    assert 1 <= reset <= 60
    assert error_body(refused) == envelope(
        f"Rate limit exceeded for key 'slow': 2 requests per minute. Try again in {reset} s.", "rate_limit_error",
        None, "rate_limit_exceeded")
    assert {name: refused[name] for name in (
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")} == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{reset}s", "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": str(1000 - 2 * CHAT_TOKENS), "x-ratelimit-reset-tokens": f"{reset}s"}
    assert fake_gateway.requests == []
    assert chat(client, generate(client)["key"]).status_code == 200  # another key is not limited


def test_a_team_rpm_limit_is_shared_by_its_keys(client, fake_gateway):
    wait_for_a_fresh_minute()
    new_team(client, team_id="t7", team_alias="Shared", rpm_limit=3)
    first, second = generate(client, team_id="t7")["key"], generate(client, team_id="t7", rpm_limit=10)["key"]
    assert [chat(client, key).status_code for key in (first, second, first)] == [200, 200, 200]
    fake_gateway.reset()
    refused = chat(client, second)
    assert refused.status_code == 429
    assert error_body(refused)["error"]["message"].startswith(
        "Rate limit exceeded for team 'Shared': 3 requests per minute.")
    assert (refused["x-ratelimit-limit-requests"], refused["x-ratelimit-remaining-requests"]) == ("3", "0")
    assert fake_gateway.requests == []


def test_a_refused_request_does_not_use_up_the_allowance(client, fake_gateway):
    wait_for_a_fresh_minute()
    new_team(client, team_id="t8", rpm_limit=1)
    key = generate(client, team_id="t8", rpm_limit=5)["key"]
    other = generate(client, team_id="t8", rpm_limit=5)["key"]
    assert chat(client, key).status_code == 200
    assert chat(client, other).status_code == 429  # the team's minute is used up
    post_json(client, "/team/update", {"team_id": "t8", "rpm_limit": 2}, MASTER)
    assert chat(client, other).status_code == 200  # the team refusal did not count against the key's own 5
    assert chat(client, other).status_code == 429
