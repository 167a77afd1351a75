"""The batches admin: the list shows owner, group, engines, deployments, status and a progress bar of live
counts; a batch's page is read-only with its parts; cancelling (the list action and the page's button) runs
the API's service; the output and error files download; nobody but staff gets in."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from batches.choices import BatchStatus, Engine, PartStatus
from batches.models import Batch, BatchPart
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile
from files_registry.services import managed_file_create
from keys.models import VirtualKey
from tests.files_registry.support import file_storage  # noqa: F401 - the fixture, used by name

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/batches/batch/"
OUTPUT = b'{"id": "batch_req_1", "custom_id": "a", "response": {"status_code": 200}, "error": null}\n'
ERRORS = b'{"id": "batch_req_2", "custom_id": "b", "response": null, "error": {"code": "batch_expired"}}\n'
PROVIDER_SECRET = "sk-upstream-should-never-show"


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def stored(data: bytes, filename: str, purpose: str = FilePurpose.BATCH_OUTPUT) -> ManagedFile:
    return managed_file_create(owner_key_id="key-nightly", owner_team_id="", content=io.BytesIO(data),
                               size=len(data), filename=filename, mime_type="application/jsonl", purpose=purpose,
                               target_model_names=[])


@pytest.fixture
def batches(file_storage) -> dict[str, Batch]:  # noqa: F811 - the fixture imported above
    """A running batch split over two deployments (one native, one gateway-executed) and a completed one."""
    VirtualKey.objects.create(id="key-nightly", digest="d" * 64, key_name="sk-...n1gh", key_alias="nightly-jobs")
    now = timezone.now()
    input_file = stored(b'{"custom_id": "a"}\n', "requests.jsonl", FilePurpose.BATCH)
    running = Batch.objects.create(
        owner_key_id="key-nightly", owner_team_id="team-9", input_file=input_file, endpoint="/v1/chat/completions",
        completion_window="24h", requested_model="azure-batch", model_group="azure-batch",
        status=BatchStatus.IN_PROGRESS, total=20, completed=3, failed=1, created_at=now - timedelta(minutes=5),
        in_progress_at=now - timedelta(minutes=4), expires_at=now + timedelta(hours=24))
    BatchPart.objects.create(batch=running, index=0, deployment_id="azure-east", model_group="azure-batch",
                             provider="azure", engine=Engine.NATIVE, first_line=0, line_count=10,
                             status=PartStatus.RUNNING, provider_batch_id="batch_provider_77",
                             provider_status="in_progress", provider_completed=6, provider_failed=1)
    BatchPart.objects.create(batch=running, index=1, deployment_id="vllm-west", model_group="azure-batch",
                             provider="hosted_vllm", engine=Engine.GATEWAY, first_line=10, line_count=10,
                             status=PartStatus.RUNNING, completed=3, failed=1)
    done = Batch.objects.create(
        input_file=input_file, endpoint="/v1/embeddings", completion_window="1h", requested_model="mock-embed",
        model_group="mock-embed", status=BatchStatus.COMPLETED, total=2, completed=1, failed=1,
        output_file=stored(OUTPUT, "output.jsonl"), error_file=stored(ERRORS, "errors.jsonl"),
        created_at=now - timedelta(hours=1), completed_at=now - timedelta(minutes=50),
        expires_at=now + timedelta(hours=1))
    BatchPart.objects.create(batch=done, index=0, deployment_id="mock-embed-1", model_group="mock-embed",
                             provider="mock", engine=Engine.GATEWAY, first_line=0, line_count=2,
                             status=PartStatus.DONE, completed=1, failed=1)
    return {"running": running, "done": done}


def test_the_list_shows_owner_group_engines_deployments_and_live_progress(superuser_client, batches,
                                                                          django_assert_max_num_queries):
    running, done = batches["running"], batches["done"]
    with django_assert_max_num_queries(12):  # not one query per row
        response = superuser_client.get(CHANGELIST)
    assert response.status_code == 200
    assert [row.id for row in response.context["cl"].result_list] == [running.id, done.id]
    html = response.content.decode()
    assert "nightly-jobs (key-nightly), team team-9" in html and "master key" in html
    assert "native, gateway" in html and "azure-east, vllm-west" in html
    # Recorded 3 + 1, plus the native part's provider counts (6 completed, 1 failed).
    assert '<div style="width:45.0%;background:#3a9b4a"></div><div style="width:10.0%;background:#c2413b">' in html
    assert "9 completed, 2 failed / 20" in html
    assert "1 completed, 1 failed / 2" in html
    for title in ("status", "model group"):
        assert f"By {title}" in html
    assert '<option value="cancel_batches">Cancel the selected batches</option>' in html


@pytest.mark.parametrize(("query", "expected"), [
    ({"status__exact": "in_progress"}, "running"),
    ({"status__exact": "completed"}, "done"),
    ({"model_group__exact": "mock-embed"}, "done"),
    ({"q": "azure-batch"}, "running"),
])
def test_the_list_filters_by_status_and_group(superuser_client, batches, query, expected):
    response = superuser_client.get(CHANGELIST, query)
    assert [row.id for row in response.context["cl"].result_list] == [batches[expected].id]


def test_a_batch_page_is_read_only_with_its_parts_and_a_cancel_button(superuser_client, batches):
    running = batches["running"]
    response = superuser_client.get(f"{CHANGELIST}{running.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "azure-east" in html and "vllm-west" in html and "batch_provider_77" in html
    assert "9 completed, 2 failed / 20" in html
    assert f'formaction="{CHANGELIST}{running.id}/cancel/"' in html
    assert 'name="_save"' not in html
    assert PROVIDER_SECRET not in html


def test_a_finished_batch_page_links_its_output_and_error_files(superuser_client, batches):
    done = batches["done"]
    response = superuser_client.get(f"{CHANGELIST}{done.id}/change/")
    html = response.content.decode()
    for managed_file in (done.output_file, done.error_file):
        assert (f'<a href="/admin/files_registry/managedfile/{managed_file.id}/content/">Download '
                f'{managed_file.filename} ({managed_file.id})</a>') in html
    assert "Cancel this batch" not in html


def test_the_download_links_serve_the_files_bytes(superuser_client, batches):
    done = batches["done"]
    for managed_file, data in ((done.output_file, OUTPUT), (done.error_file, ERRORS)):
        response = superuser_client.get(f"/admin/files_registry/managedfile/{managed_file.id}/content/")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == data
        assert response["Content-Disposition"] == f'attachment; filename="{managed_file.filename}"'


def test_the_cancel_action_cancels_a_batch_and_says_so(superuser_client, batches):
    running = batches["running"]
    Batch.objects.filter(id=running.id).update(status=BatchStatus.VALIDATING)
    response = superuser_client.post(CHANGELIST, {"action": "cancel_batches", "_selected_action": [running.id]},
                                     follow=True)
    assert response.status_code == 200
    assert f"Batch {running.id} is now cancelled." in response.content.decode()
    assert Batch.objects.get(id=running.id).status == BatchStatus.CANCELLED


def test_cancelling_a_finished_batch_is_refused_with_the_reason(superuser_client, batches):
    done = batches["done"]
    response = superuser_client.post(CHANGELIST, {"action": "cancel_batches", "_selected_action": [done.id]},
                                     follow=True)
    assert (f"Not cancelled: Batch {done.id} cannot be cancelled: its status is &#x27;completed&#x27;."
            in response.content.decode())
    assert Batch.objects.get(id=done.id).status == BatchStatus.COMPLETED


def test_the_page_button_cancels_by_post_only(superuser_client, batches):
    running = batches["running"]
    Batch.objects.filter(id=running.id).update(status=BatchStatus.VALIDATING)
    url = f"{CHANGELIST}{running.id}/cancel/"
    assert superuser_client.get(url).status_code == 405
    assert Batch.objects.get(id=running.id).status == BatchStatus.VALIDATING
    response = superuser_client.post(url)
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}{running.id}/change/"
    assert Batch.objects.get(id=running.id).status == BatchStatus.CANCELLED
    assert f"Batch {running.id} is now cancelled." in superuser_client.get(response["Location"]).content.decode()


def test_a_running_batch_is_cancelling_until_its_parts_stop(superuser_client, batches):
    running = batches["running"]
    response = superuser_client.post(CHANGELIST, {"action": "cancel_batches", "_selected_action": [running.id]},
                                     follow=True)
    assert f"Batch {running.id} is now cancelling." in response.content.decode()
    assert Batch.objects.get(id=running.id).status == BatchStatus.CANCELLING


def test_anyone_but_staff_is_sent_to_the_login_page(client, django_user_model, batches):
    running, done = batches["running"], batches["done"]
    urls = [CHANGELIST, f"{CHANGELIST}{running.id}/change/",
            f"/admin/files_registry/managedfile/{done.output_file_id}/content/"]
    for visitor in ("anonymous", "not staff"):
        if visitor == "not staff":
            client.force_login(django_user_model.objects.create_user("developer", "dev@example.com", None))
        for url in urls:
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), (visitor, url)
        response = client.post(f"{CHANGELIST}{running.id}/cancel/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert Batch.objects.get(id=running.id).status == BatchStatus.IN_PROGRESS
