"""`log_prompts` through the key management API: off unless asked, set at `/key/generate`, changed by
`/key/update` and `/key/regenerate`, shown by `/key/info`, refused when not a boolean, and seen by the
next request (the key cache carries it)."""
from __future__ import annotations

import orjson
import pytest
import yaml
from django.core.management import call_command

from keys.key_cache import key_lookup
from keys.models import VirtualKey
from tests.keys import support
from tests.keys.support import MASTER, generate
from tests.proxy_api.helpers import error_body, post_json

fresh_key_state = support.fresh_key_state

pytestmark = pytest.mark.usefixtures("fresh_key_state")


def info(client, token: str) -> dict:
    response = client.get("/key/info", {"key": token}, **MASTER)
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)["info"]


def test_keys_do_not_log_prompts_unless_asked(client, fake_gateway):
    issued = generate(client, key_alias="plain")

    assert issued["log_prompts"] is False
    assert VirtualKey.objects.get(id=issued["token"]).log_prompts is False
    assert key_lookup(issued["key"]).log_prompts is False


def test_generate_update_and_regenerate_set_it_and_the_cache_follows(client, fake_gateway):
    issued = generate(client, key_alias="audited", log_prompts=True)
    assert (issued["log_prompts"], info(client, issued["token"])["log_prompts"]) == (True, True)
    assert key_lookup(issued["key"]).log_prompts is True

    off = post_json(client, "/key/update", {"key": issued["token"], "log_prompts": False}, MASTER)
    assert off.status_code == 200
    assert orjson.loads(off.content)["log_prompts"] is False
    assert key_lookup(issued["key"]).log_prompts is False  # the version moved: the cached view is reloaded

    untouched = post_json(client, "/key/update", {"key": issued["token"], "rpm_limit": 5, "log_prompts": None},
                          MASTER)
    assert orjson.loads(untouched.content)["log_prompts"] is False  # null means "not given"

    regenerated = post_json(client, "/key/regenerate", {"key": issued["token"], "log_prompts": True}, MASTER)
    assert regenerated.status_code == 200
    fresh = orjson.loads(regenerated.content)
    assert fresh["log_prompts"] is True
    assert key_lookup(fresh["key"]).log_prompts is True
    assert VirtualKey.objects.get(id=issued["token"]).log_prompts is True


@pytest.mark.parametrize("value", ["yes", 1, [], {}])
def test_a_value_that_is_not_a_boolean_is_a_400_naming_the_field(client, fake_gateway, value):
    response = post_json(client, "/key/generate", {"key_alias": "bad", "log_prompts": value}, MASTER)

    assert response.status_code == 400
    assert error_body(response) == {"error": {"message": "'log_prompts' must be true or false.",
                                              "type": "invalid_request_error", "param": "log_prompts",
                                              "code": "invalid_type"}}
    assert VirtualKey.objects.count() == 0


def test_a_key_that_is_not_an_admin_cannot_turn_it_on(client, fake_gateway):
    issued = generate(client, key_alias="someone")

    response = post_json(client, "/key/update", {"key": issued["token"], "log_prompts": True},
                         {"HTTP_AUTHORIZATION": f"Bearer {issued['key']}"})

    assert response.status_code == 403
    assert error_body(response) == {"error": {"message": "Only the master key or a proxy_admin key may call "
                                                         "/key/update.", "type": "permission_denied", "param": None,
                                              "code": "admin_only"}}
    assert VirtualKey.objects.get(id=issued["token"]).log_prompts is False


def test_the_openapi_schema_documents_it(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    components = yaml.safe_load(path.read_text())["components"]["schemas"]

    for name in ("KeyGenerateRequest", "KeyUpdateRequest", "KeyInfo"):
        assert components[name]["properties"]["log_prompts"]["type"] == "boolean", name
