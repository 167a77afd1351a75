"""The key management API with real keys: issue, read, change, list, regenerate, block, revoke; who may call
it; and that each change is enforced on the very next request, with nothing sent upstream when refused."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from keys.models import VirtualKey
from keys.tokens import key_digest
from tests.keys import support
from tests.keys.support import (
    MASTER,
    bearer,
    body,
    chat,
    generate,
    new_team,
)
from tests.proxy_api.helpers import envelope, error_body, post_json

fresh_key_state = support.fresh_key_state  # a fixture shared with tests/keys

pytestmark = pytest.mark.usefixtures("fresh_key_state")

WRONG_KEY = envelope("Incorrect API key provided.", "authentication_error", None, "invalid_api_key")
BLOCKED = envelope("This API key is blocked.", "authentication_error", None, "key_blocked")


def info(client, key: str) -> dict:
    response = client.get("/key/info", {"key": key}, **MASTER)
    assert response.status_code == 200, response.content
    return body(response)["info"]


# -- issuing ---------------------------------------------------------------------------------------------
def test_generate_returns_the_plaintext_once_and_stores_only_its_digest(client, fake_gateway):
    issued = generate(client, key_alias="billing", models=["gpt-fake"])
    plaintext = issued["key"]
    assert plaintext.startswith("sk-") and len(plaintext) == 35
    assert issued["key_name"] == f"sk-...{plaintext[-4:]}"
    assert issued["token"] == issued["token_id"]
    row = VirtualKey.objects.get(id=issued["token"])
    assert row.digest == key_digest(plaintext)
    stored = " ".join(str(value) for value in VirtualKey.objects.values().get(id=row.id).values())
    assert plaintext not in stored
    assert plaintext[3:] not in stored
    shown = client.get("/key/info", {"key": plaintext}, **MASTER)
    assert plaintext not in shown.content.decode()

    response = chat(client, plaintext)
    assert response.status_code == 200
    [received] = fake_gateway.requests
    assert received.headers["authorization"] == "Bearer sk-upstream-deployment-secret-7f3a9c"
    assert plaintext not in str(received.headers)


def test_generate_echoes_every_field_with_litellms_names(client, fake_gateway):
    team = new_team(client, team_id="team-a", models=["gpt-fake", "embed-fake"])
    issued = generate(client, key_alias="app", models=["gpt-fake"], aliases={"gpt-4": "gpt-fake"}, max_budget=2.5,
                      budget_duration="30d", rpm_limit=10, tpm_limit=1000, max_parallel_requests=3,
                      expires="2031-01-02T03:04:05Z", metadata={"owner": "ops"}, team_id=team["team_id"],
                      user_id="user-1", role="internal_user", unknown_litellm_field=True)
    created = datetime.fromisoformat(issued["created_at"])
    reset_at = datetime.fromisoformat(issued["budget_reset_at"])
    assert abs(reset_at - created - timedelta(days=30)) < timedelta(seconds=5)
    assert {name: issued[name] for name in issued if name not in {"key", "token", "token_id", "key_name",
                                                                   "created_at", "updated_at", "budget_reset_at"}} == {
        "key_alias": "app", "team_id": "team-a", "user_id": "user-1", "role": "internal_user",
        "models": ["gpt-fake"], "aliases": {"gpt-4": "gpt-fake"}, "spend": 0.0, "max_budget": 2.5,
        "budget_duration": "30d", "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 3,
        "expires": "2031-01-02T03:04:05+00:00", "metadata": {"owner": "ops"}, "blocked": False, "last_used_at": None,
        "log_prompts": False,
    }


def test_duration_sets_the_expiry_from_now(client, fake_gateway):
    issued = generate(client, duration="2h")
    expires = datetime.fromisoformat(issued["expires"])
    assert timedelta(hours=2) - timedelta(seconds=5) < expires - datetime.now(UTC) <= timedelta(hours=2)


def test_a_custom_key_value_is_accepted_once(client, fake_gateway):
    custom = "sk-my-own-key-value-1234567890"
    issued = generate(client, key=custom)
    assert issued["key"] == custom
    assert chat(client, custom).status_code == 200
    again = post_json(client, "/key/generate", {"key": custom}, MASTER)
    assert (again.status_code, error_body(again)) == (400, envelope(
        "This key value is already in use; choose another.", "invalid_request_error", "key", "key_taken"))


@pytest.mark.parametrize(("fields", "param", "message"), [
    ({"models": "gpt-fake"}, "models", "'models' must be a list of model group names."),
    ({"models": ["ok", 3]}, "models", "'models' must be a list of model group names."),
    ({"max_budget": -1}, "max_budget", "'max_budget' must be a number of US dollars, 0 or more."),
    ({"max_budget": "10"}, "max_budget", "'max_budget' must be a number of US dollars, 0 or more."),
    ({"budget_duration": "3x"}, "budget_duration",
     "'budget_duration' must be a duration such as '30s', '30m', '24h', '30d' or '1mo'; got '3x'."),
    ({"budget_duration": "0d"}, "budget_duration",
     "'budget_duration' must be a duration such as '30s', '30m', '24h', '30d' or '1mo'; got '0d'."),
    ({"duration": 30}, "duration", "'duration' must be a duration such as '30s', '30m', '24h', '30d' or '1mo'."),
    ({"rpm_limit": 1.5}, "rpm_limit", "'rpm_limit' must be a whole number, 0 or more."),
    ({"tpm_limit": True}, "tpm_limit", "'tpm_limit' must be a whole number, 0 or more."),
    ({"max_parallel_requests": -2}, "max_parallel_requests",
     "'max_parallel_requests' must be a whole number, 0 or more."),
    ({"expires": "tomorrow"}, "expires", "'expires' must be an ISO 8601 date and time, e.g. 2030-01-31T00:00:00Z."),
    ({"duration": "1d", "expires": "2030-01-01T00:00:00Z"}, "expires",
     "Give either 'duration' or 'expires', not both."),
    ({"metadata": ["a"]}, "metadata", "'metadata' must be an object."),
    ({"aliases": {"gpt-4": 4}}, "aliases",
     "'aliases' must map model names to model group names, e.g. {\"gpt-4\": \"my-group\"}."),
    ({"blocked": "yes"}, "blocked", "'blocked' must be true or false."),
    ({"role": "root"}, "role", "'role' must be one of internal_user, proxy_admin."),
    ({"key_alias": 5}, "key_alias", "'key_alias' must be a string."),
    ({"key": "not-prefixed-key-value-123"}, "key",
     "'key' must start with 'sk-', be 20 to 200 characters long and hold no spaces."),
    ({"team_id": "no-such-team"}, "team_id", "Team 'no-such-team' does not exist."),
])
def test_bad_fields_are_400_envelopes_naming_the_field(client, fake_gateway, fields, param, message):
    response = post_json(client, "/key/generate", fields, MASTER)
    assert response.status_code == 400
    error = error_body(response)["error"]
    assert (error["message"], error["param"], error["type"]) == (message, param, "invalid_request_error")
    assert VirtualKey.objects.count() == 0


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1]"])
def test_a_body_that_is_not_a_json_object_is_400(client, fake_gateway, raw):
    response = post_json(client, "/key/generate", raw, MASTER)
    assert response.status_code == 400
    assert error_body(response)["error"]["code"] == "invalid_json"


def test_a_duplicate_alias_is_400(client, fake_gateway):
    generate(client, key_alias="same")
    response = post_json(client, "/key/generate", {"key_alias": "same"}, MASTER)
    assert (response.status_code, error_body(response)) == (400, envelope(
        "A key with key_alias 'same' already exists.", "invalid_request_error", "key_alias", "key_alias_taken"))


# -- who may manage keys -----------------------------------------------------------------------------------
MANAGEMENT = [
    ("post", "/key/generate", {}),
    ("post", "/key/update", {"key": "x"}),
    ("post", "/key/delete", {"keys": ["x"]}),
    ("get", "/key/list", None),
    ("post", "/key/regenerate", {"key": "x"}),
    ("post", "/key/x/regenerate", {}),
    ("post", "/key/block", {"key": "x"}),
    ("post", "/key/unblock", {"key": "x"}),
    ("post", "/team/new", {}),
    ("get", "/team/info", None),
    ("post", "/team/update", {"team_id": "x"}),
    ("post", "/team/delete", {"team_ids": ["x"]}),
    ("get", "/team/list", None),
]


@pytest.mark.parametrize(("method", "path", "payload"), MANAGEMENT)
def test_a_plain_key_may_not_manage(client, fake_gateway, method, path, payload):
    plain = generate(client)["key"]
    before = VirtualKey.objects.count()
    if method == "get":
        response = client.get(path, **bearer(plain))
    else:
        response = post_json(client, path, payload, bearer(plain))
    route = "/key/unblock" if path == "/key/unblock" else ("/key/block" if path == "/key/block" else
                                                          "/key/regenerate" if "regenerate" in path else path)
    assert (response.status_code, error_body(response)) == (403, envelope(
        f"Only the master key or a proxy_admin key may call {route}.", "permission_denied", None, "admin_only"))
    assert VirtualKey.objects.count() == before


@pytest.mark.parametrize(("method", "path", "payload"), MANAGEMENT)
def test_management_needs_a_key(client, fake_gateway, method, path, payload):
    response = client.get(path) if method == "get" else post_json(client, path, payload)
    assert response.status_code == 401
    assert error_body(response)["error"]["type"] == "authentication_error"


def test_a_proxy_admin_key_may_manage(client, fake_gateway):
    admin_key = generate(client, role="proxy_admin")["key"]
    response = post_json(client, "/key/generate", {"key_alias": "made-by-admin-key"}, bearer(admin_key))
    assert response.status_code == 200
    assert client.get("/key/list", **bearer(admin_key)).status_code == 200
    assert body(response)["role"] == "internal_user"


# -- /key/info --------------------------------------------------------------------------------------------------
def test_a_key_reads_its_own_info_and_no_other(client, fake_gateway):
    mine = generate(client, key_alias="mine")
    other = generate(client, key_alias="other")
    own = client.get("/key/info", **bearer(mine["key"]))
    assert own.status_code == 200
    assert body(own)["key"] == mine["token"]
    assert body(own)["info"]["key_alias"] == "mine"
    assert client.get("/key/info", {"key": mine["key"]}, **bearer(mine["key"])).status_code == 200
    assert client.get("/key/info", {"key": mine["token"]}, **bearer(mine["key"])).status_code == 200
    for value in (other["key"], other["token"], "sk-unknown-key-value-000000"):
        response = client.get("/key/info", {"key": value}, **bearer(mine["key"]))
        assert (response.status_code, error_body(response)) == (403, envelope(
            "A key may read only its own info.", "permission_denied", "key", "admin_only"))


def test_the_master_key_reads_any_key_by_plaintext_or_token(client, fake_gateway):
    issued = generate(client, key_alias="any")
    by_plaintext, by_token = info(client, issued["key"]), info(client, issued["token"])
    assert by_plaintext == by_token
    assert by_token["key_alias"] == "any"
    missing = client.get("/key/info", {"key": "sk-no-such-key-0000000000"}, **MASTER)
    assert (missing.status_code, error_body(missing)) == (404, envelope(
        "No key matches the one given.", "invalid_request_error", "key", "key_not_found"))
    bare = client.get("/key/info", **MASTER)
    assert (bare.status_code, error_body(bare)) == (400, envelope(
        "The master key has no key info; pass ?key=<key or token>.", "invalid_request_error", "key",
        "missing_required_parameter"))


# -- /key/update ------------------------------------------------------------------------------------------------
def test_update_changes_only_what_it_names_and_applies_at_once(client, fake_gateway):
    issued = generate(client, key_alias="upd", models=["gpt-fake", "embed-fake"], max_budget=5, rpm_limit=100)
    assert chat(client, issued["key"]).status_code == 200

    response = post_json(client, "/key/update", {"key": issued["key"], "models": ["embed-fake"], "max_budget": None},
                         MASTER)
    assert response.status_code == 200
    updated = body(response)
    assert (updated["key"], updated["models"], updated["max_budget"], updated["rpm_limit"], updated["key_alias"]) == (
        issued["token"], ["embed-fake"], None, 100, "upd")

    fake_gateway.reset()
    refused = chat(client, issued["key"])
    assert (refused.status_code, error_body(refused)) == (403, envelope(
        "This key may not use model 'gpt-fake'. Models it may use: embed-fake.", "key_model_access_denied", "model",
        "key_model_access_denied"))
    assert fake_gateway.requests == []


def test_update_of_an_unknown_key_is_404_and_without_key_400(client, fake_gateway):
    missing = post_json(client, "/key/update", {"key": "abc", "max_budget": 1}, MASTER)
    assert (missing.status_code, error_body(missing)["error"]["param"]) == (404, "key")
    bare = post_json(client, "/key/update", {"max_budget": 1}, MASTER)
    assert (bare.status_code, error_body(bare)) == (400, envelope(
        "'key' is required: the key's plaintext or its token.", "invalid_request_error", "key",
        "missing_required_parameter"))


def test_update_may_set_the_spend(client, fake_gateway):
    issued = generate(client, max_budget=1.0)
    post_json(client, "/key/update", {"key": issued["token"], "spend": 0.25}, MASTER)
    assert info(client, issued["token"])["spend"] == 0.25
    assert VirtualKey.objects.get(id=issued["token"]).spend == 0.25


# -- /key/delete -------------------------------------------------------------------------------------------------
def test_delete_by_keys_and_by_aliases(client, fake_gateway):
    first, second, third = (generate(client, key_alias=f"del-{n}") for n in range(3))
    assert chat(client, first["key"]).status_code == 200
    response = post_json(client, "/key/delete", {"keys": [first["key"], second["token"]]}, MASTER)
    assert (response.status_code, body(response)) == (200, {"deleted_keys": [first["key"], second["token"]]})
    by_alias = post_json(client, "/key/delete", {"key_aliases": ["del-2"]}, MASTER)
    assert body(by_alias) == {"deleted_keys": ["del-2"]}
    assert VirtualKey.objects.count() == 0
    fake_gateway.reset()
    for issued in (first, second, third):
        refused = chat(client, issued["key"])
        assert (refused.status_code, error_body(refused)) == (401, WRONG_KEY)
    assert fake_gateway.requests == []


def test_delete_is_all_or_nothing(client, fake_gateway):
    kept = generate(client, key_alias="kept")
    response = post_json(client, "/key/delete", {"keys": [kept["token"], "sk-missing-key-abcdefgh"]}, MASTER)
    assert (response.status_code, error_body(response)) == (404, envelope(
        "No key matches: sk-...efgh. Nothing was deleted.", "invalid_request_error", "keys", "key_not_found"))
    by_alias = post_json(client, "/key/delete", {"key_aliases": ["kept", "ghost"]}, MASTER)
    assert error_body(by_alias)["error"]["message"] == "No key matches: ghost. Nothing was deleted."
    assert VirtualKey.objects.filter(id=kept["token"]).exists()


@pytest.mark.parametrize("payload", [{}, {"keys": ["a"], "key_aliases": ["b"]}, {"keys": []}, {"keys": "a"}])
def test_delete_needs_exactly_one_list(client, fake_gateway, payload):
    response = post_json(client, "/key/delete", payload, MASTER)
    assert response.status_code == 400
    assert error_body(response)["error"]["param"] == "keys"


# -- /key/list ---------------------------------------------------------------------------------------------------
def test_list_paginates_and_filters(client, fake_gateway):
    new_team(client, team_id="t-list")
    tokens = [generate(client, key_alias=f"k{n}", team_id="t-list" if n % 2 else None,
                       user_id="u1" if n < 2 else None)["token"] for n in range(5)]
    newest_first = list(reversed(tokens))
    page = body(client.get("/key/list", {"page": 2, "size": 2}, **MASTER))
    assert page == {"keys": newest_first[2:4], "total_count": 5, "current_page": 2, "total_pages": 3}
    assert body(client.get("/key/list", {"team_id": "t-list"}, **MASTER))["keys"] == [tokens[3], tokens[1]]
    assert body(client.get("/key/list", {"user_id": "u1"}, **MASTER))["keys"] == [tokens[1], tokens[0]]
    full = body(client.get("/key/list", {"key_alias": "k4", "return_full_object": "true"}, **MASTER))
    assert [item["key_alias"] for item in full["keys"]] == ["k4"]
    assert full["total_count"] == 1
    empty = body(client.get("/key/list", {"page": 9}, **MASTER))
    assert empty == {"keys": [], "total_count": 5, "current_page": 9, "total_pages": 1}


@pytest.mark.parametrize(("query", "param"), [({"page": "0"}, "page"), ({"page": "x"}, "page"),
                                              ({"size": "101"}, "size"), ({"size": "-1"}, "size")])
def test_list_rejects_bad_paging(client, fake_gateway, query, param):
    response = client.get("/key/list", query, **MASTER)
    assert (response.status_code, error_body(response)["error"]["param"]) == (400, param)


# -- /key/regenerate ---------------------------------------------------------------------------------------------
def test_regenerate_replaces_the_secret_and_keeps_the_key(client, fake_gateway):
    issued = generate(client, key_alias="rot", max_budget=3)
    post_json(client, "/key/update", {"key": issued["token"], "spend": 1.5}, MASTER)
    response = post_json(client, "/key/regenerate", {"key": issued["key"], "rpm_limit": 7}, MASTER)
    assert response.status_code == 200
    fresh = body(response)
    assert fresh["key"] != issued["key"] and fresh["key"].startswith("sk-")
    assert (fresh["token"], fresh["key_alias"], fresh["spend"], fresh["rpm_limit"]) == (issued["token"], "rot", 1.5, 7)
    assert fresh["key_name"] == f"sk-...{fresh['key'][-4:]}"
    assert (chat(client, issued["key"]).status_code, chat(client, fresh["key"]).status_code) == (401, 200)


def test_regenerate_with_a_grace_period_keeps_the_old_secret_working_until_it_ends(client, fake_gateway):
    issued = generate(client)
    response = post_json(client, f"/key/{issued['token']}/regenerate", {"grace_period": 1}, MASTER)
    fresh = body(response)
    assert chat(client, issued["key"]).status_code == 200
    assert chat(client, fresh["key"]).status_code == 200
    time.sleep(1.1)
    refused = chat(client, issued["key"])
    assert (refused.status_code, error_body(refused)) == (401, WRONG_KEY)
    assert chat(client, fresh["key"]).status_code == 200


def test_regenerate_by_path_with_a_chosen_key_and_bad_grace(client, fake_gateway):
    issued = generate(client)
    chosen = "sk-chosen-replacement-0123456789"
    response = post_json(client, f"/key/{issued['key']}/regenerate", {"new_key": chosen}, MASTER)
    assert body(response)["key"] == chosen
    assert chat(client, chosen).status_code == 200
    bad = post_json(client, "/key/regenerate", {"key": chosen, "grace_period": "soon"}, MASTER)
    assert (bad.status_code, error_body(bad)["error"]["param"]) == (400, "grace_period")
    unknown = post_json(client, "/key/sk-unknown-key-000000000/regenerate", {}, MASTER)
    assert unknown.status_code == 404


# -- block / unblock / expiry ------------------------------------------------------------------------------------
def test_block_and_unblock_take_effect_on_the_next_request(client, fake_gateway):
    issued = generate(client)
    assert chat(client, issued["key"]).status_code == 200
    blocked = post_json(client, "/key/block", {"key": issued["key"]}, MASTER)
    assert (blocked.status_code, body(blocked)["blocked"]) == (200, True)
    fake_gateway.reset()
    refused = chat(client, issued["key"])
    assert (refused.status_code, error_body(refused)) == (401, BLOCKED)
    assert client.get("/v1/models", **bearer(issued["key"])).status_code == 401
    assert fake_gateway.requests == []
    unblocked = post_json(client, "/key/unblock", {"key": issued["token"]}, MASTER)
    assert body(unblocked)["blocked"] is False
    assert chat(client, issued["key"]).status_code == 200


def test_an_expired_key_is_401(client, fake_gateway):
    issued = generate(client, expires="2001-02-03T04:05:06Z")
    response = chat(client, issued["key"])
    assert (response.status_code, error_body(response)) == (401, envelope(
        "This API key expired at 2001-02-03T04:05:06+00:00.", "authentication_error", None, "key_expired"))
    assert fake_gateway.requests == []


def test_a_key_expires_when_its_duration_ends(client, fake_gateway):
    issued = generate(client, duration="1s")
    assert chat(client, issued["key"]).status_code == 200
    time.sleep(1.05)
    assert chat(client, issued["key"]).status_code == 401
