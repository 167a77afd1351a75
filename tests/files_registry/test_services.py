"""Upload fan-out, partial failure, lazy replication and deletion, against real loopback provider fakes:
every assertion names what reached each fake and what the database and the storage hold afterwards."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from files_registry.choices import FileStatus, ProviderFileStatus
from files_registry.maintenance import files_maintenance_run_once
from files_registry.models import ManagedFile, ProviderFile
from files_registry.services import (
    FileUploadFailedError,
    managed_file_delete,
    provider_copies_ready,
    provider_copies_retry,
    provider_copy_ensure,
)
from files_registry.storage import file_storage as storage_backend
from models_registry.snapshot import current_snapshot
from providers.errors import ProviderError
from providers.files import ProviderFileRef
from providers.http import Deadline
from tests.files_registry.support import (
    PDF,
    UPSTREAM_KEY,
    gateway_config,
    sha256,
    stored_files,
    upload,
)

pytestmark = pytest.mark.django_db(transaction=False)


def copies(managed_file) -> dict[str, ProviderFile]:
    return {copy.deployment_id: copy for copy in ProviderFile.objects.filter(managed_file=managed_file)}


def deployment(deployment_id: str):
    return current_snapshot().by_id[deployment_id]


def test_an_upload_puts_one_copy_on_every_deployment_of_every_named_group(files_gateway, file_storage):
    managed_file = upload(targets=["gpt-a", "gpt-b"])

    assert managed_file.id.startswith("file-") and len(managed_file.id) == 29
    assert managed_file.status == FileStatus.PROCESSED
    assert managed_file.target_model_names == ["gpt-a", "gpt-b"]
    for prefix in ("/a1/v1", "/a2/v1", "/b1/v1"):
        [held] = files_gateway.files_under(prefix)
        assert (held.filename, held.purpose, held.size, held.sha256, held.content_type) == (
            "report.pdf", "user_data", len(PDF), sha256(PDF), "application/pdf")
    uploads = [r for r in files_gateway.requests if r.method == "POST"]
    assert sorted(r.path for r in uploads) == ["/a1/v1/files", "/a2/v1/files", "/b1/v1/files"]
    assert {r.headers["authorization"] for r in uploads} == {f"Bearer {UPSTREAM_KEY}"}
    recorded = copies(managed_file)
    assert sorted(recorded) == ["dep-a1", "dep-a2", "dep-b1"]
    for deployment_id, (prefix) in (("dep-a1", "/a1/v1"), ("dep-a2", "/a2/v1"), ("dep-b1", "/b1/v1")):
        copy = recorded[deployment_id]
        assert (copy.status, copy.error, copy.attempts, copy.provider) == (ProviderFileStatus.UPLOADED, "", 1, "openai")
        assert copy.provider_file_id == files_gateway.files_under(prefix)[0].id
    [stored] = stored_files(file_storage)
    assert stored.read_bytes() == PDF
    assert stored.name == managed_file.id  # named by our id, never by the user's filename
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {managed_file.id: {"dep-a1", "dep-a2",
                                                                                            "dep-b1"}}


def test_one_failed_copy_in_a_group_is_recorded_and_the_upload_succeeds(files_gateway):
    files_gateway.fail_next(status=503, body={"error": {"message": "overloaded", "type": "server_error"}},
                            path_contains="/a2/v1/files")
    managed_file = upload(targets=["gpt-a", "gpt-b"])

    recorded = copies(managed_file)
    assert recorded["dep-a2"].status == ProviderFileStatus.FAILED
    assert recorded["dep-a2"].error == "upstream_error: overloaded"
    assert recorded["dep-a1"].status == recorded["dep-b1"].status == ProviderFileStatus.UPLOADED
    assert files_gateway.files_under("/a2/v1") == []
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {managed_file.id: {"dep-a1", "dep-b1"}}

    # The admin's retry gives the deployment its copy.
    assert provider_copies_retry(managed_file=managed_file) == {"dep-a1": None, "dep-a2": None, "dep-b1": None}
    assert copies(managed_file)["dep-a2"].status == ProviderFileStatus.UPLOADED
    assert copies(managed_file)["dep-a2"].attempts == 2
    assert len(files_gateway.files_under("/a2/v1")) == 1
    assert len(files_gateway.files_under("/a1/v1")) == 1  # the copy it had was kept, not made again


def test_a_group_without_any_copy_fails_the_upload_and_leaves_nothing_anywhere(files_gateway, file_storage):
    files_gateway.fail_next(status=500, path_contains="/b1/v1/files")
    with pytest.raises(FileUploadFailedError) as raised:
        upload(targets=["gpt-a", "gpt-b"])

    error = raised.value
    assert (error.status_code, error.code, error.param) == (502, "file_upload_failed", "target_model_names")
    assert error.message == (
        "No deployment of model group 'gpt-b' accepted a copy of the file, so nothing was stored "
        "(dep-b1: upstream_error: fake failure 500).")
    for prefix in ("/a1/v1", "/a2/v1", "/b1/v1"):
        assert files_gateway.files_under(prefix) == []
    deletes = sorted(r.path.rsplit("/", 1)[0] for r in files_gateway.requests if r.method == "DELETE")
    assert deletes == ["/a1/v1/files", "/a2/v1/files"]
    assert ManagedFile.objects.count() == 0 and ProviderFile.objects.count() == 0
    assert stored_files(file_storage) == []


def test_a_copy_that_cannot_be_undone_is_deleted_later_by_the_background(files_gateway, file_storage):
    files_gateway.fail_next(status=500, path_contains="/b1/v1/files")
    files_gateway.fail_next(status=500, path_contains="/a1/v1/files/")  # the undo of dep-a1's copy
    with pytest.raises(FileUploadFailedError):
        upload(targets=["gpt-a", "gpt-b"])

    [kept] = ManagedFile.objects.all()
    assert kept.deleted_at is not None and kept.status == FileStatus.ERROR
    leftover = copies(kept)
    assert leftover["dep-a1"].status == ProviderFileStatus.DELETE_FAILED
    assert leftover["dep-a2"].status == leftover["dep-b1"].status == ProviderFileStatus.DELETED
    assert len(files_gateway.files_under("/a1/v1")) == 1
    assert stored_files(file_storage) == []

    assert files_maintenance_run_once() == {"expired": 0, "copies_deleted": 1, "copies_failed": 0, "purged": 1}
    assert files_gateway.files_under("/a1/v1") == []
    assert ManagedFile.objects.count() == 0


def test_without_target_groups_the_file_is_only_stored_and_copied_on_first_use(files_gateway, file_storage):
    managed_file = upload()
    assert managed_file.status == FileStatus.PROCESSED
    assert files_gateway.requests == [] and ProviderFile.objects.count() == 0
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {}

    ref = provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-b1"),
                               deadline=Deadline.after(30))
    [held] = files_gateway.files_under("/b1/v1")
    assert ref == ProviderFileRef(file_id=held.id, uri=None, mime_type="application/pdf")
    assert held.sha256 == sha256(PDF)
    # The second use finds the copy: nothing more reaches the provider.
    before = len(files_gateway.requests)
    assert provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-b1"),
                                deadline=Deadline.after(30)) == ref
    assert len(files_gateway.requests) == before
    assert provider_copies_ready(managed_file_ids=[managed_file.id, "file-unknown"]) == {managed_file.id: {"dep-b1"}}


def test_a_deployment_added_after_the_upload_gets_its_copy_on_first_use(configure_gateway, fake_openai,
                                                                        file_storage):
    configure_gateway(gateway_config(fake_openai))
    managed_file = upload(targets=["gpt-b"])
    configure_gateway(gateway_config(fake_openai, extra=[
        {"model_name": "gpt-b", "model_info": {"id": "dep-b2"},
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake_openai.url}/b2/v1",
                            "api_key": UPSTREAM_KEY}}]))
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {managed_file.id: {"dep-b1"}}

    ref = provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-b2"), deadline=Deadline.after(30))
    assert ref.file_id == fake_openai.files_under("/b2/v1")[0].id
    assert copies(managed_file)["dep-b2"].model_group == "gpt-b"
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {managed_file.id: {"dep-b1", "dep-b2"}}


def test_a_failed_lazy_copy_raises_a_provider_error_and_is_recorded(files_gateway):
    managed_file = upload()
    files_gateway.fail_next(status=429, body={"error": {"message": "slow down", "type": "rate_limit"}},
                            path_contains="/a1/v1/files")
    with pytest.raises(ProviderError) as raised:
        provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-a1"), deadline=Deadline.after(30))
    assert raised.value.failover is True and raised.value.status_code == 429
    failed = copies(managed_file)["dep-a1"]
    assert (failed.status, failed.error, failed.attempts) == (ProviderFileStatus.FAILED,
                                                             "rate_limit_exceeded: slow down", 1)

    ref = provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-a1"), deadline=Deadline.after(30))
    done = copies(managed_file)["dep-a1"]
    assert (done.status, done.error, done.attempts, done.provider_file_id) == (
        ProviderFileStatus.UPLOADED, "", 2, ref.file_id)


def test_an_expired_copy_is_replaced_before_use(files_gateway):
    managed_file = upload(targets=["gpt-b"])
    old = copies(managed_file)["dep-b1"]
    ProviderFile.objects.filter(pk=old.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    assert provider_copies_ready(managed_file_ids=[managed_file.id]) == {}

    ref = provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-b1"), deadline=Deadline.after(30))
    assert ref.file_id != old.provider_file_id
    assert len(files_gateway.files_under("/b1/v1")) == 2
    assert copies(managed_file)["dep-b1"].expires_at is None


def test_a_deployment_that_cannot_hold_files_is_skipped_at_upload_and_refused_on_ensure(files_gateway):
    managed_file = upload(targets=["text-only", "gpt-b"])
    assert sorted(copies(managed_file)) == ["dep-b1"]
    with pytest.raises(ProviderError) as raised:
        provider_copy_ensure(managed_file=managed_file, deployment=deployment("dep-t1"), deadline=Deadline.after(30))
    assert (raised.value.code, raised.value.failover) == ("files_not_supported", True)


def test_the_mock_provider_keeps_its_own_copy(files_gateway):
    managed_file = upload(targets=["mock-g"])
    [copy] = copies(managed_file).values()
    assert copy.status == ProviderFileStatus.UPLOADED
    assert copy.provider_file_id.startswith("mockfile-") and copy.provider_file_id.endswith(f"-{len(PDF)}")


def test_deleting_removes_every_copy_the_bytes_and_the_row(files_gateway, file_storage):
    managed_file = upload(targets=["gpt-a", "gpt-b"])
    held = {prefix: files_gateway.files_under(prefix)[0].id for prefix in ("/a1/v1", "/a2/v1", "/b1/v1")}
    files_gateway.reset()

    managed_file_delete(managed_file=managed_file)
    assert sorted((r.method, r.path) for r in files_gateway.requests) == sorted(
        ("DELETE", f"{prefix}/files/{file_id}") for prefix, file_id in held.items())
    assert {r.headers["authorization"] for r in files_gateway.requests} == {f"Bearer {UPSTREAM_KEY}"}
    assert ManagedFile.objects.count() == 0 and ProviderFile.objects.count() == 0
    assert stored_files(file_storage) == []


def test_a_copy_the_provider_will_not_delete_is_retried_until_gone(files_gateway, file_storage):
    managed_file = upload(targets=["gpt-a"])
    files_gateway.fail_next(status=500, path_contains="/a2/v1/files/")
    managed_file_delete(managed_file=managed_file)

    kept = ManagedFile.objects.get(id=managed_file.id)
    assert kept.deleted_at is not None
    recorded = copies(kept)
    assert recorded["dep-a1"].status == ProviderFileStatus.DELETED
    assert recorded["dep-a2"].status == ProviderFileStatus.DELETE_FAILED
    assert recorded["dep-a2"].error == "upstream_error: fake failure 500"
    assert len(files_gateway.files_under("/a2/v1")) == 1
    assert stored_files(file_storage) == []  # the bytes go at once

    files_gateway.fail_next(status=500, path_contains="/a2/v1/files/")
    assert files_maintenance_run_once() == {"expired": 0, "copies_deleted": 0, "copies_failed": 1, "purged": 0}
    assert files_maintenance_run_once() == {"expired": 0, "copies_deleted": 1, "copies_failed": 0, "purged": 1}
    assert files_gateway.files_under("/a2/v1") == []
    assert ManagedFile.objects.count() == 0


def test_a_copy_already_gone_from_the_provider_counts_as_deleted(files_gateway):
    managed_file = upload(targets=["gpt-b"])
    files_gateway.files.clear()
    managed_file_delete(managed_file=managed_file)
    assert ManagedFile.objects.count() == 0


def test_an_expired_file_is_deleted_by_the_background(files_gateway, file_storage):
    managed_file = upload(targets=["gpt-b"], expires_after=3600)
    assert managed_file.expires_at is not None
    ManagedFile.objects.filter(id=managed_file.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert files_maintenance_run_once() == {"expired": 1, "copies_deleted": 0, "copies_failed": 0, "purged": 0}
    assert files_gateway.files_under("/b1/v1") == []
    assert ManagedFile.objects.count() == 0 and stored_files(file_storage) == []


def test_the_default_storage_is_the_state_directory(settings):
    from django.conf import settings as live

    options = live.STORAGES["managed_files"]
    assert options["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert options["OPTIONS"]["location"] == str(live.STATE_DIR / "files")
    assert storage_backend() is not None


def test_a_copy_on_a_deployment_disabled_since_is_still_deleted_with_its_credentials(files_gateway):
    from models_registry.models import Deployment
    from models_registry.snapshot import forget_snapshot

    managed_file = upload(targets=["gpt-b"])
    Deployment.objects.filter(id="dep-b1").update(enabled=False)
    forget_snapshot()
    assert "dep-b1" not in current_snapshot().by_id
    managed_file_delete(managed_file=managed_file)
    [delete] = [r for r in files_gateway.requests if r.method == "DELETE"]
    assert delete.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert files_gateway.files_under("/b1/v1") == [] and ManagedFile.objects.count() == 0


def test_a_copy_on_a_deployment_that_no_longer_exists_is_written_off(files_gateway):
    from models_registry.models import Deployment
    from models_registry.snapshot import forget_snapshot

    managed_file = upload(targets=["gpt-b"])
    Deployment.objects.filter(id="dep-b1").delete()
    forget_snapshot()
    managed_file_delete(managed_file=managed_file)
    assert [r for r in files_gateway.requests if r.method == "DELETE"] == []
    assert ManagedFile.objects.count() == 0  # nothing left that could delete it: recorded, then purged
