"""The batch runner in-process: validation against the owner's key, planning across a group's deployments,
gateway-executed parts on the mock provider, settling into output files in input order, cancel rules and the
recovery sweep. Tasks run through django-tasks-db's own worker loop on the real database."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from batches.choices import BatchStatus, PartStatus
from batches.leases import part_claim
from batches.models import Batch, BatchLineResult, BatchPart
from batches.planner import split_ranges
from batches.recovery import sweep
from batches.runner import batch_settle_run, batch_start_run, part_run
from batches.services import batch_cancel
from keys.models import RequestLog
from providers.errors import InvalidRequestError
from tests.batches.test_runner_support import (  # noqa: F401 - batch_storage is a fixture
    batch_storage,
    chat_line,
    drain,
    file_lines,
    key_caller,
    make_batch,
)

pytestmark = pytest.mark.django_db(transaction=True)


def mock_entry(group: str, deployment_id: str, reply: str, **info) -> dict:
    return {"model_name": group, "model_info": {"id": deployment_id, **info},
            "litellm_params": {"model": f"mock/{deployment_id}", "mock_response": reply}}


@pytest.fixture
def mock_gateway(configure_gateway, batch_storage):  # noqa: F811
    configure_gateway({"model_list": [
        mock_entry("mock-batch", "mock-b1", "answer one"),
        mock_entry("mock-batch", "mock-b2", "answer two"),
        mock_entry("mock-solo", "mock-s1", "solo answer"),
    ]})


def queued_tasks(name: str) -> list[list]:
    return [row.args_kwargs["args"] for row in DBTaskResult.objects.filter(task_path__endswith=name,
                                                                           status="READY")]


def test_split_ranges_cover_every_line_once_in_order():
    assert split_ranges(5, 2) == [(0, 3), (3, 2)]
    assert split_ranges(7, 3) == [(0, 3), (3, 2), (5, 2)]
    assert split_ranges(2, 4) == [(0, 1), (1, 1)]
    assert split_ranges(1, 1) == [(0, 1)]


def test_gateway_batch_on_two_mock_deployments_completes_in_input_order(mock_gateway):
    lines = [chat_line(f"req-{index}", "mock-batch", f"question {index}") for index in range(5)]
    batch = make_batch(lines, window="2h")
    assert queued_tasks("batch_start") == [[batch.id]]

    drain()

    batch.refresh_from_db()
    parts = list(batch.parts.order_by("index").values_list("deployment_id", "engine", "first_line", "line_count",
                                                           "status", "completed", "failed"))
    assert parts == [("mock-b1", "gateway", 0, 3, PartStatus.DONE, 3, 0),
                     ("mock-b2", "gateway", 3, 2, PartStatus.DONE, 2, 0)]
    assert (batch.status, batch.model_group, batch.requested_model) == (BatchStatus.COMPLETED, "mock-batch",
                                                                          "mock-batch")
    assert (batch.total, batch.completed, batch.failed) == (5, 5, 0)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.error_file is None
    output = batch.output_file
    assert (output.purpose, output.filename, output.mime_type, output.owner_key_id) == (
        "batch_output", f"{batch.id}_output.jsonl", "application/jsonl", "")
    written = file_lines(output)
    assert [line["custom_id"] for line in written] == [f"req-{index}" for index in range(5)]
    assert [line["response"]["body"]["choices"][0]["message"]["content"] for line in written] == \
        ["answer one"] * 3 + ["answer two"] * 2
    assert [line["response"]["body"]["model"] for line in written] == ["mock-b1"] * 3 + ["mock-b2"] * 2
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in written)
    assert all(line["id"].startswith("batch_req_") and line["response"]["request_id"].startswith("req_")
               for line in written)
    logs = RequestLog.objects.filter(operation="batch_chat").order_by("deployment_id")
    assert [log.deployment_id for log in logs] == ["mock-b1"] * 3 + ["mock-b2"] * 2
    assert batch.prompt_tokens == sum(log.prompt_tokens for log in logs) > 0


def test_settle_twice_keeps_one_output_file(mock_gateway):
    batch = make_batch([chat_line("only", "mock-solo")])
    drain()
    batch.refresh_from_db()
    first = (batch.status, batch.output_file_id, batch.completed_at)
    assert batch.status == BatchStatus.COMPLETED
    assert batch_settle_run(batch.id) is False
    batch.refresh_from_db()
    assert (batch.status, batch.output_file_id, batch.completed_at) == first
    assert BatchLineResult.objects.filter(batch=batch).count() == 1


def test_mismatched_endpoint_fails_with_line_numbers(mock_gateway):
    lines = [chat_line("a", "mock-solo"), chat_line("b", "mock-solo", url="/v1/embeddings"),
             chat_line("c", "mock-solo")]
    batch = make_batch(lines)
    batch_start_run(batch.id)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED and batch.failed_at is not None
    assert batch.errors == [{"code": "mismatched_endpoint", "param": "url", "line": 2,
                             "message": "Line 2: url '/v1/embeddings' is not the batch's endpoint "
                                        "'/v1/chat/completions'."}]
    assert not batch.parts.exists()


def test_a_model_the_key_may_not_use_fails_each_line(mock_gateway):
    caller = key_caller(["mock-solo"])
    batch = make_batch([chat_line("a", "mock-batch"), chat_line("b", "mock-batch")], caller=caller)
    batch_start_run(batch.id)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED
    message = "This key may not use model 'mock-batch'. Models it may use: mock-solo."
    assert batch.errors == [
        {"code": "invalid_model", "param": "body.model", "line": 1, "message": f"Line 1: {message}"},
        {"code": "invalid_model", "param": "body.model", "line": 2, "message": f"Line 2: {message}"}]


def test_the_key_runs_on_its_own_model_and_output_is_its_own(mock_gateway):
    caller = key_caller(["mock-solo"])
    batch = make_batch([chat_line("a", "mock-solo")], caller=caller)
    drain()
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED
    assert (batch.output_file.owner_key_id, batch.owner_key_id) == (caller.key.id, caller.key.id)
    assert list(RequestLog.objects.values_list("key_id", "model_group")) == [(caller.key.id, "mock-solo")]


def test_cancel_rules(mock_gateway):
    validating = make_batch([chat_line("a", "mock-solo")])
    cancelled = batch_cancel(batch=validating)
    assert cancelled.status == BatchStatus.CANCELLED
    assert cancelled.cancelling_at == cancelled.cancelled_at is not None
    assert batch_cancel(batch=cancelled).status == BatchStatus.CANCELLED
    drain()  # its start finds it cancelled and does nothing
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.output_file_id, cancelled.parts.count()) == (BatchStatus.CANCELLED, None, 0)

    done = make_batch([chat_line("a", "mock-solo")])
    drain()
    done.refresh_from_db()
    with pytest.raises(InvalidRequestError) as refused:
        batch_cancel(batch=done)
    assert refused.value.envelope() == {"error": {
        "message": f"Batch {done.id} cannot be cancelled: its status is 'completed'.",
        "type": "invalid_request_error", "param": None, "code": "batch_not_cancellable"}}
    assert refused.value.status_code == 400


def test_cancel_in_progress_stops_pending_parts_and_settles_cancelled(mock_gateway):
    batch = make_batch([chat_line(f"r{index}", "mock-batch") for index in range(4)])
    batch_start_run(batch.id)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.IN_PROGRESS
    DBTaskResult.objects.all().delete()
    cancelling = batch_cancel(batch=batch)
    assert cancelling.status == BatchStatus.CANCELLING and cancelling.cancelled_at is None
    assert sorted(queued_tasks("batch_part_run")) == sorted([[part.id] for part in batch.parts.all()])
    assert batch_cancel(batch=cancelling).status == BatchStatus.CANCELLING
    drain()
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CANCELLED and batch.cancelled_at is not None
    assert set(batch.parts.values_list("status", flat=True)) == {PartStatus.CANCELLED}
    assert (batch.completed, batch.output_file_id, batch.error_file_id) == (0, None, None)


def test_a_part_leased_by_another_worker_is_left_alone(mock_gateway):
    batch = make_batch([chat_line("a", "mock-solo")])
    batch_start_run(batch.id)
    part = BatchPart.objects.get(batch=batch)
    assert part_claim(part_id=part.id, owner="someone-else") is not None
    part_run(part.id)
    part.refresh_from_db()
    assert (part.status, part.lease_owner, part.completed) == (PartStatus.RUNNING, "someone-else", 0)
    assert not BatchLineResult.objects.filter(batch=batch).exists()


def test_sweep_requeues_dead_parts_stuck_starts_and_settles(mock_gateway, settings):
    settings.GATEWAY_BATCH_LEASE_SECONDS = 2
    long_ago = timezone.now() - timedelta(minutes=5)
    stuck = make_batch([chat_line("a", "mock-solo")])
    Batch.objects.filter(id=stuck.id).update(created_at=long_ago, updated_at=long_ago)
    running = make_batch([chat_line("a", "mock-solo")])
    batch_start_run(running.id)
    dead = BatchPart.objects.get(batch=running)
    BatchPart.objects.filter(id=dead.id).update(lease_owner="dead-worker", lease_expires_at=long_ago,
                                                status=PartStatus.RUNNING, enqueued_at=long_ago)
    finished = make_batch([chat_line("a", "mock-solo")])
    batch_start_run(finished.id)
    BatchPart.objects.filter(batch=finished).update(status=PartStatus.DONE, enqueued_at=long_ago)
    DBTaskResult.objects.all().delete()

    counts = sweep()

    assert counts == {"polls_advanced": 0, "parts": 1, "starts": 1, "settles": 1}
    assert queued_tasks("batch_part_run") == [[dead.id]]
    assert queued_tasks("batch_start") == [[stuck.id]]
    assert queued_tasks("batch_settle") == [[finished.id]]
    # Just queued: the next sweep leaves them to their tasks.
    assert sweep() == {"polls_advanced": 0, "parts": 0, "starts": 0, "settles": 1}
    drain()
    for batch in (stuck, running, finished):
        batch.refresh_from_db()
    assert (stuck.status, running.status, finished.status) == (BatchStatus.COMPLETED,) * 3
    assert [line["custom_id"] for line in file_lines(running.output_file)] == ["a"]
