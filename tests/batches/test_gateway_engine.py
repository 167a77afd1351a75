"""Gateway-executed parts against a loopback OpenAI-compatible fake, run by a real `BatchWorker` in this
process: what reached the upstream, per-line upstream errors in the error file, rpm waited out (not
failed), expiry recording `batch_expired` lines, and cancel mid-run with partial output."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from batches.choices import BatchStatus, PartStatus
from batches.models import Batch, BatchLineResult
from batches.services import batch_cancel
from tests.batches.test_runner_support import (  # noqa: F401
    batch_storage,
    chat_line,
    file_lines,
    make_batch,
    running_worker,
)
from tests.support.polling import wait_until

# A worker thread and the test's thread share the database here: SQLite's in-memory test database (shared
# cache) refuses concurrent access with "table is locked" instead of waiting. The same behaviours are covered
# on SQLite by tests/e2e/test_batches_gateway.py, with real processes on a database file.
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                 reason="a worker thread beside the test needs PostgreSQL (see above)")]

UPSTREAM_KEY = "sk-upstream-batch-engine"
EXPIRED = {"code": "batch_expired",
           "message": "This request could not be executed before the completion window expired."}


def like_entry(group: str, deployment_id: str, fake, **info) -> dict:
    return {"model_name": group, "model_info": {"id": deployment_id, **info},
            "litellm_params": {"model": f"openai_like/llama-{deployment_id}",
                               "api_base": f"{fake.url}/{deployment_id}/v1", "api_key": UPSTREAM_KEY}}


@pytest.fixture
def like_gateway(configure_gateway, batch_storage, fake_openai):  # noqa: F811
    configure_gateway({"model_list": [
        like_entry("llama", "l1", fake_openai),
        like_entry("llama-pair", "p1", fake_openai),
        like_entry("llama-pair", "p2", fake_openai),
        like_entry("llama-serial", "s1", fake_openai, batch_concurrency=1),
        like_entry("llama-rpm", "r1", fake_openai, rpm=2),
    ]})
    return fake_openai


def settled(batch: Batch, seconds: float = 20) -> Batch:
    assert wait_until(lambda: Batch.objects.get(id=batch.id).status in
                      (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED),
                      seconds=seconds, interval=0.05), Batch.objects.get(id=batch.id).status
    batch.refresh_from_db()
    return batch


def results(batch: Batch) -> int:
    return BatchLineResult.objects.filter(batch_id=batch.id).count()


def test_lines_reach_the_upstream_and_output_holds_its_answers(like_gateway):
    fake = like_gateway
    batch = make_batch([chat_line(f"c{index}", "llama", f"text {index}") for index in range(6)])
    with running_worker():
        batch = settled(batch)
    assert batch.status == BatchStatus.COMPLETED
    received = fake.requests_to("/l1/v1/chat/completions")
    assert sorted(r.body["messages"][0]["content"] for r in received) == [f"text {index}" for index in range(6)]
    assert {r.body["model"] for r in received} == {"llama-l1"}
    assert {r.headers["authorization"] for r in received} == {f"Bearer {UPSTREAM_KEY}"}
    written = file_lines(batch.output_file)
    assert [line["custom_id"] for line in written] == [f"c{index}" for index in range(6)]
    for line in written:
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "llama-l1"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake provider.",
                                                 "refusal": None}
        assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert (batch.prompt_tokens, batch.completion_tokens) == (66, 42)


def test_sharding_across_two_deployments_keeps_input_order(like_gateway):
    fake = like_gateway
    batch = make_batch([chat_line(f"s{index}", "llama-pair", f"q{index}") for index in range(7)])
    with running_worker():
        batch = settled(batch)
    assert batch.status == BatchStatus.COMPLETED
    first = sorted(r.body["messages"][0]["content"] for r in fake.requests_to("/p1/v1/"))
    second = sorted(r.body["messages"][0]["content"] for r in fake.requests_to("/p2/v1/"))
    assert (first, second) == (["q0", "q1", "q2", "q3"], ["q4", "q5", "q6"])
    written = file_lines(batch.output_file)
    assert [line["custom_id"] for line in written] == [f"s{index}" for index in range(7)]
    assert [line["response"]["body"]["model"] for line in written] == ["llama-p1"] * 4 + ["llama-p2"] * 3


def test_an_upstream_error_ends_in_the_error_file(like_gateway):
    fake = like_gateway
    refusal = {"error": {"message": "This prompt is not allowed.", "type": "invalid_request_error",
                         "param": "messages", "code": "bad_prompt"}}
    fake.fail_next(status=400, body=refusal, path_contains="/s1/")
    batch = make_batch([chat_line(f"e{index}", "llama-serial") for index in range(3)])
    with running_worker():
        batch = settled(batch)
    assert (batch.status, batch.completed, batch.failed) == (BatchStatus.COMPLETED, 2, 1)
    errors = file_lines(batch.error_file)
    assert len(errors) == 1
    assert errors[0]["custom_id"] == "e0" and errors[0]["error"] is None
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"] == {"error": {
        "message": "This prompt is not allowed.", "type": "invalid_request_error", "param": "messages",
        "code": "bad_prompt"}}
    assert [line["custom_id"] for line in file_lines(batch.output_file)] == ["e1", "e2"]
    assert len(fake.requests_to("/s1/v1/chat/completions")) == 3  # a 400 is not retried


def away_from_a_minute_boundary() -> None:
    """rpm windows are calendar minutes: start a few seconds after one so the test's lines share one window."""
    into = time.time() % 60
    if into > 50:
        time.sleep(60.5 - into)


def test_rpm_is_waited_out_then_expiry_records_the_rest(like_gateway):
    fake = like_gateway
    away_from_a_minute_boundary()
    batch = make_batch([chat_line(f"r{index}", "llama-rpm") for index in range(4)])
    with running_worker():
        assert wait_until(lambda: results(batch) == 2, seconds=15)
        # The other two wait for the deployment's next minute: nothing more reaches it, nothing fails.
        assert not wait_until(lambda: len(fake.requests_to("/r1/")) > 2, seconds=1.5)
        assert results(batch) == 2
        Batch.objects.filter(id=batch.id).update(expires_at=timezone.now() - timedelta(seconds=1))
        batch = settled(batch)
    assert len(fake.requests_to("/r1/")) == 2
    assert (batch.status, batch.completed, batch.failed) == (BatchStatus.EXPIRED, 2, 2)
    assert batch.expired_at is not None and batch.completed_at is None
    assert list(batch.parts.values_list("status", flat=True)) == [PartStatus.EXPIRED]
    done = file_lines(batch.output_file)
    expired = file_lines(batch.error_file)
    assert sorted(line["custom_id"] for line in done + expired) == ["r0", "r1", "r2", "r3"]
    assert len(done) == 2 and all(line["response"]["status_code"] == 200 for line in done)
    assert [(line["response"], line["error"]) for line in expired] == [(None, EXPIRED)] * 2


def test_cancel_mid_run_keeps_partial_output_and_sends_nothing_more(like_gateway):
    fake = like_gateway
    fake.path_latency = {"/s1/": 0.2}
    batch = make_batch([chat_line(f"k{index}", "llama-serial") for index in range(30)])
    with running_worker():
        assert wait_until(lambda: results(batch) >= 2, seconds=15)
        batch_cancel(batch=Batch.objects.get(id=batch.id))
        sent_at_cancel = len(fake.requests_to("/s1/"))
        batch = settled(batch)
        sent = len(fake.requests_to("/s1/"))
    assert batch.status == BatchStatus.CANCELLED and batch.cancelled_at is not None
    assert sent <= sent_at_cancel + 1  # at most the line in flight when it was cancelled
    written = file_lines(batch.output_file)
    assert 2 <= len(written) == sent < 30
    assert [line["custom_id"] for line in written] == [f"k{index}" for index in range(len(written))]
    assert batch.error_file is None and (batch.completed, batch.failed) == (len(written), 0)
    assert list(batch.parts.values_list("status", flat=True)) == [PartStatus.CANCELLED]
