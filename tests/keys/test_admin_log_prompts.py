"""`log_prompts` in the key admin: a checkbox on the add and change pages, saved through the services (so
the next request's key view carries it), and a filter on the list."""
from __future__ import annotations

import pytest

from keys.key_cache import key_lookup
from keys.models import VirtualKey
from keys.services import virtual_key_generate
from tests.keys.test_admin_keys import KEYS, issued_plaintext, key_form


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def test_a_key_added_with_the_box_ticked_logs_prompts(operator):
    page = operator.get(f"{KEYS}add/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="log_prompts"' in html and "Log prompts and answers" in html

    response = operator.post(f"{KEYS}add/", key_form(key_alias="audited-here", log_prompts="on"))

    assert response.status_code == 200
    plaintext = issued_plaintext(response)
    assert VirtualKey.objects.get(key_alias="audited-here").log_prompts is True
    assert key_lookup(plaintext).log_prompts is True


def test_editing_turns_it_on_and_off_and_the_cache_follows(operator):
    issued = virtual_key_generate(fields={"key_alias": "toggled"})
    assert key_lookup(issued.plaintext).log_prompts is False
    change = f"{KEYS}{issued.key.id}/change/"

    assert operator.post(change, key_form(key_alias="toggled", log_prompts="on")).status_code == 302
    assert VirtualKey.objects.get(id=issued.key.id).log_prompts is True
    assert key_lookup(issued.plaintext).log_prompts is True
    assert operator.get(change).context["adminform"].form["log_prompts"].value() is True

    assert operator.post(change, key_form(key_alias="toggled")).status_code == 302  # an unticked box is off
    assert VirtualKey.objects.get(id=issued.key.id).log_prompts is False
    assert key_lookup(issued.plaintext).log_prompts is False


def test_the_list_filters_on_it(operator):
    virtual_key_generate(fields={"key_alias": "logs", "log_prompts": True})
    virtual_key_generate(fields={"key_alias": "quiet"})

    listing = operator.get(KEYS)
    assert listing.status_code == 200
    assert "By log prompts" in listing.content.decode()
    logging_keys = operator.get(KEYS, {"log_prompts__exact": "1"})
    assert [key.key_alias for key in logging_keys.context["cl"].result_list] == ["logs"]
