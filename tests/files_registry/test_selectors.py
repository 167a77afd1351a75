"""Who sees which file: the uploader's key and its team, the master key everything, anyone else a 404 that
looks exactly like an unknown id; malformed ids are refused before any query."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from files_registry.models import ManagedFile, is_file_id, new_file_id
from files_registry.selectors import managed_file_get_for_caller, managed_file_list_for_caller
from keys.principal import MASTER, Caller, KeyView
from providers.errors import InvalidRequestError, NotFoundError
from tests.files_registry.support import upload

pytestmark = pytest.mark.django_db

OWNER = Caller(key=KeyView(id="key-owner", key_name="sk-...aaaa", team_id="team-1"))
TEAMMATE = Caller(key=KeyView(id="key-mate", key_name="sk-...bbbb", team_id="team-1"))
STRANGER = Caller(key=KeyView(id="key-other", key_name="sk-...cccc", team_id="team-2"))
LONER = Caller(key=KeyView(id="key-loner", key_name="sk-...dddd"))


def not_found(file_id: str) -> dict:
    return {"error": {"message": f"No such File object: {file_id}", "type": "invalid_request_error",
                      "param": "file_id", "code": "file_not_found"}}


def test_ids_are_long_random_and_strictly_shaped():
    ids = {new_file_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(is_file_id(file_id) and len(file_id) == 29 for file_id in ids)
    for bad in ("file-short", "file-../../../etc/passwd", "../file-abcdefghijklmnopqrstuvwx",
                "file-abcdefghijklmnopqrstuvwx/", "file-abcdefghijklmnopqrstuv\\x", "FILE-abcdefghijklmnopqrstuvwx",
                "file-abcdefghijklmnopqrstuvw\n", "", None, 42):
        assert not is_file_id(bad), bad


def test_owner_and_team_see_the_file_others_get_the_same_404_as_an_unknown_id(file_storage, configure_gateway):
    configure_gateway({"model_list": []})
    managed_file = upload(caller=OWNER)
    assert (managed_file.owner_key_id, managed_file.owner_team_id) == ("key-owner", "team-1")
    for caller in (OWNER, TEAMMATE, MASTER):
        assert managed_file_get_for_caller(caller=caller, file_id=managed_file.id) == managed_file
    unknown = new_file_id()
    for caller, file_id in ((STRANGER, managed_file.id), (LONER, managed_file.id), (OWNER, unknown)):
        with pytest.raises(NotFoundError) as raised:
            managed_file_get_for_caller(caller=caller, file_id=file_id)
        assert (raised.value.status_code, raised.value.envelope()) == (404, not_found(file_id))


def test_a_master_key_upload_belongs_to_no_key(file_storage, configure_gateway):
    configure_gateway({"model_list": []})
    managed_file = upload(caller=MASTER)
    assert (managed_file.owner_key_id, managed_file.owner_team_id) == ("", "")
    with pytest.raises(NotFoundError):
        managed_file_get_for_caller(caller=LONER, file_id=managed_file.id)


def test_malformed_ids_are_404_without_a_query(django_assert_num_queries):
    for bad in ("../../etc/passwd", "file-%2e%2e", "x" * 500):
        with django_assert_num_queries(0), pytest.raises(NotFoundError) as raised:
            managed_file_get_for_caller(caller=MASTER, file_id=bad)
        shown = bad if len(bad) <= 100 else "(invalid id)"
        assert raised.value.message == f"No such File object: {shown}"


def test_deleted_and_expired_files_are_gone(file_storage, configure_gateway):
    configure_gateway({"model_list": []})
    deleted, expired = upload(caller=OWNER), upload(caller=OWNER)
    ManagedFile.objects.filter(id=deleted.id).update(deleted_at=timezone.now())
    ManagedFile.objects.filter(id=expired.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    for file_id in (deleted.id, expired.id):
        with pytest.raises(NotFoundError):
            managed_file_get_for_caller(caller=MASTER, file_id=file_id)
    assert managed_file_list_for_caller(caller=MASTER).files == []


def test_listing_pages_by_creation_time_with_ties_broken_by_id(file_storage, configure_gateway):
    configure_gateway({"model_list": []})
    files = [upload(caller=OWNER) for _ in range(5)]
    same_moment = timezone.now()
    ManagedFile.objects.filter(id__in=[f.id for f in files]).update(created_at=same_moment)
    newest_first = sorted((f.id for f in files), reverse=True)

    seen, after = [], None
    while True:
        page = managed_file_list_for_caller(caller=OWNER, limit=2, after=after)
        seen += [f.id for f in page.files]
        if not page.has_more:
            break
        after = page.files[-1].id
    assert seen == newest_first
    ascending = managed_file_list_for_caller(caller=TEAMMATE, limit=10, order="asc")
    assert [f.id for f in ascending.files] == newest_first[::-1] and not ascending.has_more
    assert managed_file_list_for_caller(caller=STRANGER).files == []
    with pytest.raises(InvalidRequestError) as raised:
        managed_file_list_for_caller(caller=STRANGER, after=files[0].id)  # someone else's id is no cursor
    assert raised.value.param == "after"
