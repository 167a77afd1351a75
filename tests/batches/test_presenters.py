"""OpenAI's batch object as `batch_object` writes it, for batches in every status: every timestamp in epoch
seconds, the errors list, usage from the recorded tokens, and request counts that are live (recorded lines,
plus what a running provider batch reports) read with one query, and none once the batch is over."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batches.choices import BatchStatus, Engine, PartStatus
from batches.models import Batch, BatchPart
from batches.presenters import batch_list_objects, batch_object
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile

pytestmark = pytest.mark.django_db

CREATED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T0 = int(CREATED.timestamp())
TIMESTAMP_FIELDS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                    "cancelled_at")
# status -> the timestamps a batch in that status has, in seconds after creation
STATUS_TIMES = {
    BatchStatus.VALIDATING: {},
    BatchStatus.IN_PROGRESS: {"in_progress_at": 5},
    BatchStatus.FINALIZING: {"in_progress_at": 5, "finalizing_at": 50},
    BatchStatus.COMPLETED: {"in_progress_at": 5, "finalizing_at": 50, "completed_at": 55},
    BatchStatus.FAILED: {"failed_at": 3},
    BatchStatus.EXPIRED: {"in_progress_at": 5, "finalizing_at": 86400, "expired_at": 86405},
    BatchStatus.CANCELLING: {"in_progress_at": 5, "cancelling_at": 20},
    BatchStatus.CANCELLED: {"in_progress_at": 5, "cancelling_at": 20, "cancelled_at": 30},
}


def managed_file(purpose: str = FilePurpose.BATCH, filename: str = "requests.jsonl") -> ManagedFile:
    return ManagedFile.objects.create(purpose=purpose, filename=filename, bytes=10, mime_type="application/jsonl",
                                      stored_name=f"stored/{filename}")


def make_batch(status: str = BatchStatus.VALIDATING, **fields) -> Batch:
    times = {name: CREATED + timedelta(seconds=offset) for name, offset in STATUS_TIMES[status].items()}
    values = {"input_file": managed_file(), "endpoint": "/v1/chat/completions", "completion_window": "24h",
              "status": status, "created_at": CREATED, "expires_at": CREATED + timedelta(hours=24), **times,
              **fields}
    return Batch.objects.create(**values)


def part(batch: Batch, index: int, *, engine: str, status: str = PartStatus.RUNNING, **fields) -> BatchPart:
    values = {"deployment_id": f"dep-{index}", "model_group": "batch-group", "provider": "azure", "engine": engine,
              "first_line": index * 10, "line_count": 10, "status": status, **fields}
    return BatchPart.objects.create(batch=batch, index=index, **values)


def expected_object(batch: Batch, **overrides) -> dict:
    shown = {
        "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions", "model": None, "errors": None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": str(batch.status),
        "output_file_id": None, "error_file_id": None, "created_at": T0,
        **{name: None for name in TIMESTAMP_FIELDS}, "expires_at": T0 + 86400,
        "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": None,
        "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
    }
    return {**shown, **overrides}


def test_a_new_batch_is_validating_with_only_its_creation_and_deadline(django_assert_num_queries):
    batch = make_batch(metadata={"job": "nightly"})
    with django_assert_num_queries(1):  # active: its native parts are read (it has none yet)
        shown = batch_object(batch)
    assert shown == expected_object(batch, metadata={"job": "nightly"})
    assert list(shown) == ["id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window",
                           "status", "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
                           "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                           "cancelled_at", "request_counts", "metadata", "usage"]


@pytest.mark.parametrize("status", list(STATUS_TIMES))
def test_each_status_shows_exactly_its_timestamps(status):
    batch = make_batch(status, requested_model="batch-alias", model_group="batch-group", total=4, completed=3,
                       failed=1, prompt_tokens=40, completion_tokens=12)
    shown = batch_object(batch)
    times = {name: T0 + offset for name, offset in STATUS_TIMES[status].items()}
    assert shown == expected_object(
        batch, model="batch-alias", **times, request_counts={"total": 4, "completed": 3, "failed": 1},
        usage={"input_tokens": 40, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 12,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 52})


def test_the_model_falls_back_to_the_group_when_no_name_was_recorded():
    assert batch_object(make_batch(model_group="batch-group"))["model"] == "batch-group"


def test_a_completed_batch_names_its_files_and_reads_nothing_more(django_assert_num_queries):
    output, errors = managed_file(FilePurpose.BATCH_OUTPUT, "out.jsonl"), managed_file(FilePurpose.BATCH_OUTPUT,
                                                                                      "err.jsonl")
    batch = make_batch(BatchStatus.COMPLETED, total=20, completed=18, failed=2, output_file=output, error_file=errors)
    # A finished native part whose last provider counts were higher than what was recorded: ignored.
    part(batch, 0, engine=Engine.NATIVE, status=PartStatus.DONE, completed=18, failed=2, provider_completed=19,
         provider_failed=2)
    batch = Batch.objects.get(id=batch.id)
    with django_assert_num_queries(0):
        shown = batch_object(batch)
    assert (shown["output_file_id"], shown["error_file_id"]) == (output.id, errors.id)
    assert shown["request_counts"] == {"total": 20, "completed": 18, "failed": 2}


def test_a_failed_batch_lists_each_error_with_its_line():
    problems = [
        {"code": "invalid_json_line", "message": "Line 2: this line is not valid JSON.", "param": None, "line": 2},
        {"code": "model_not_found", "message": "Line 5: unknown model 'nope'.", "param": "body.model", "line": 5},
        {"code": "empty_file", "message": "The batch input holds no requests."},
    ]
    batch = make_batch(BatchStatus.FAILED, errors=problems)
    assert batch_object(batch)["errors"] == {"object": "list", "data": [
        problems[0], problems[1],
        {"code": "empty_file", "message": "The batch input holds no requests.", "param": None, "line": None}]}


def test_running_counts_add_what_native_parts_report_beyond_recorded_lines(django_assert_num_queries):
    batch = make_batch(BatchStatus.IN_PROGRESS, total=30, completed=6, failed=1)
    part(batch, 0, engine=Engine.GATEWAY, completed=4, failed=1, provider_completed=0)
    # The provider finished 7 (2 failed) of this part's lines; 2 are recorded already (a partial download).
    part(batch, 1, engine=Engine.NATIVE, completed=2, failed=0, provider_completed=7, provider_failed=2)
    part(batch, 2, engine=Engine.NATIVE, status=PartStatus.PENDING, provider_completed=0)
    # Over: its lines are all in the recorded counts already.
    part(batch, 3, engine=Engine.NATIVE, status=PartStatus.DONE, provider_completed=9, provider_failed=1)
    with django_assert_num_queries(1):
        shown = batch_object(batch)
    assert shown["request_counts"] == {"total": 30, "completed": 6 + 5, "failed": 1 + 2}


def test_a_cancelling_batch_still_counts_its_provider_progress():
    batch = make_batch(BatchStatus.CANCELLING, total=10)
    part(batch, 0, engine=Engine.NATIVE, provider_completed=4, provider_failed=1)
    assert batch_object(batch)["request_counts"] == {"total": 10, "completed": 4, "failed": 1}


def test_a_list_reads_every_active_batchs_parts_in_one_query(django_assert_num_queries):
    running = [make_batch(BatchStatus.IN_PROGRESS, total=10) for _ in range(3)]
    for index, batch in enumerate(running):
        part(batch, 0, engine=Engine.NATIVE, provider_completed=index + 1)
    done = make_batch(BatchStatus.COMPLETED, total=10, completed=10)
    with django_assert_num_queries(1):
        shown = batch_list_objects([*running, done])
    assert [item["request_counts"]["completed"] for item in shown] == [1, 2, 3, 10]
    with django_assert_num_queries(0):
        assert batch_list_objects([done]) == [batch_object(done)]
