"""The files admin: every page renders, copies show their status and error, the retry and delete actions go
through the API's services (the fakes see the copies made and removed), the stored bytes download."""
from __future__ import annotations

import pytest

from files_registry.choices import ProviderFileStatus
from files_registry.models import ManagedFile, ProviderFile
from tests.files_registry.support import PDF, UPSTREAM_KEY, stored_files, upload

CHANGELIST = "/admin/files_registry/managedfile/"


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


@pytest.fixture
def partly_copied(files_gateway):
    """A file on gpt-a whose copy on dep-a2 failed."""
    files_gateway.fail_next(status=503, body={"error": {"message": "overloaded"}}, path_contains="/a2/v1/files")
    return upload(targets=["gpt-a"], filename="plan <b>.pdf")


def test_the_changelist_shows_owner_purpose_size_and_copies(superuser_client, partly_copied):
    response = superuser_client.get(CHANGELIST)
    assert response.status_code == 200
    assert [row.id for row in response.context["cl"].result_list] == [partly_copied.id]
    html = response.content.decode()
    assert "master key" in html and "user_data" in html and "10.0\xa0KB" in html
    assert "1 uploaded, 1 failed" in html
    assert "plan &lt;b&gt;.pdf" in html
    for title in ("deleted", "purpose", "status"):
        assert f"By {title}" in html


def test_the_file_page_lists_each_copy_with_its_status_and_error_and_a_download_link(superuser_client,
                                                                                   partly_copied):
    response = superuser_client.get(f"{CHANGELIST}{partly_copied.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "dep-a1" in html and "dep-a2" in html
    assert "upstream_error: overloaded" in html
    assert "Upload failed" in html and "Uploaded" in html
    assert f'href="{CHANGELIST}{partly_copied.id}/content/"' in html
    assert UPSTREAM_KEY not in html
    assert 'name="_save"' not in html  # read-only: written by the API and the workers


def test_the_download_streams_the_stored_bytes(superuser_client, partly_copied):
    response = superuser_client.get(f"{CHANGELIST}{partly_copied.id}/content/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment; filename=")


def test_anonymous_visitors_are_sent_to_the_login_page(client, partly_copied):
    for url in (CHANGELIST, f"{CHANGELIST}{partly_copied.id}/content/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_retry_copies_fills_the_failed_copy(superuser_client, partly_copied, files_gateway):
    response = superuser_client.post(CHANGELIST, {"action": "retry_copies", "_selected_action": [partly_copied.id]},
                                     follow=True)
    assert response.status_code == 200
    assert f"Copies of {partly_copied.id}: 2 ready." in response.content.decode()
    statuses = dict(ProviderFile.objects.values_list("deployment_id", "status"))
    assert statuses == {"dep-a1": ProviderFileStatus.UPLOADED, "dep-a2": ProviderFileStatus.UPLOADED}
    assert len(files_gateway.files_under("/a2/v1")) == 1


def test_a_retry_that_fails_again_says_why(superuser_client, partly_copied, files_gateway):
    files_gateway.fail_next(status=503, body={"error": {"message": "still down"}}, path_contains="/a2/v1/files")
    response = superuser_client.post(CHANGELIST, {"action": "retry_copies", "_selected_action": [partly_copied.id]},
                                     follow=True)
    assert (f"Copies of {partly_copied.id}: 1 ready, 1 failed (dep-a2: upstream_error: still down)."
            in response.content.decode())


def test_deleting_in_the_admin_deletes_every_provider_copy(superuser_client, partly_copied, files_gateway,
                                                           file_storage):
    confirm = superuser_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [partly_copied.id]})
    assert confirm.status_code == 200
    assert "Provider copy: " in confirm.content.decode() and "(Upload failed)" in confirm.content.decode()
    response = superuser_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [partly_copied.id],
                                                  "post": "yes"}, follow=True)
    assert response.status_code == 200
    assert files_gateway.files_under("/a1/v1") == []
    assert [r.method for r in files_gateway.requests if r.method == "DELETE"] == ["DELETE"]
    assert ManagedFile.objects.count() == 0 and stored_files(file_storage) == []


def test_the_copies_changelist_filters_by_status(superuser_client, partly_copied):
    response = superuser_client.get("/admin/files_registry/providerfile/?status__exact=failed")
    assert response.status_code == 200
    assert [row.deployment_id for row in response.context["cl"].result_list] == ["dep-a2"]
    [failed] = response.context["cl"].result_list
    detail = superuser_client.get(f"/admin/files_registry/providerfile/{failed.pk}/change/")
    assert detail.status_code == 200 and "upstream_error: overloaded" in detail.content.decode()
