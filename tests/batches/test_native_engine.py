"""The native engine driven step by step in-process, against OpenAI and Azure deployments on the loopback fake.

Each test makes a batch and its parts as the runner would, takes the part's lease and calls
`native_part_step` until it says the part is finished, then asserts what reached the fake (the lines
each provider batch was given, cancels, deletions), the part's state, every recorded line, and the
spend charged to the batch's key at the deployment's batch price.
"""
from __future__ import annotations

import io
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from batches.choices import BatchStatus, Engine, PartStatus
from batches.leases import LeaseLostError, part_claim
from batches.models import Batch, BatchLineResult, BatchPart
from batches.native import native_part_step
from batches.results import batch_owner
from files_registry.choices import FilePurpose
from files_registry.models import ProviderFile
from files_registry.services import managed_file_create
from keys.models import RequestLog, VirtualKey
from keys.services import virtual_key_generate
from tests.fakes.openai_server import FakeOpenAI
from tests.files_registry.support import use_temporary_storage

pytestmark = pytest.mark.django_db

UPSTREAM_KEY = "sk-upstream-batch-secret"
PRICES = {"input_cost_per_token": 0.000002, "output_cost_per_token": 0.000008}
# The fake's chat usage (11 prompt, 7 completion tokens) at half the regular price, the batch discount.
LINE_COST = 11 * 0.000001 + 7 * 0.000004
EXPIRED = {"code": "batch_expired",
           "message": "This request could not be executed before the completion window expired."}


def gateway_config(fake: FakeOpenAI) -> dict:
    def openai(deployment_id: str, prefix: str) -> dict:
        return {"model_name": "gpt-batch", "model_info": {"id": deployment_id, **PRICES},
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake.url}{prefix}",
                                   "api_key": UPSTREAM_KEY}}

    def azure(deployment_id: str, name: str, base: str) -> dict:
        return {"model_name": "az-batch", "model_info": {"id": deployment_id, "batch_sharding": True, **PRICES},
                "litellm_params": {"model": f"azure/{name}", "api_base": base, "api_key": UPSTREAM_KEY,
                                   "api_version": "2024-10-21"}}

    return {"model_list": [openai("dep-o1", "/o1/v1"), openai("dep-o2", "/o2/v1"),
                           azure("dep-az1", "gpt-4o-eu", fake.url), azure("dep-az2", "gpt-4o-us", f"{fake.url}/r2")]}


@pytest.fixture
def gateway(configure_gateway, fake_openai, settings, tmp_path) -> FakeOpenAI:
    use_temporary_storage(settings, tmp_path)
    settings.GATEWAY_BATCH_POLL_SECONDS = 0.01
    settings.GATEWAY_BATCH_POLL_MAX_SECONDS = 0.04
    settings.GATEWAY_BATCH_LEASE_SECONDS = 60
    configure_gateway(gateway_config(fake_openai))
    return fake_openai


@pytest.fixture
def key() -> VirtualKey:
    return virtual_key_generate(fields={"models": ["gpt-batch", "az-batch"]}).key


def chat_line(custom_id: str, group: str = "gpt-batch", **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": group, "messages": [{"role": "user", "content": f"hello {custom_id}"}], **body}}


def make_batch(key: VirtualKey, lines: list[dict], group: str = "gpt-batch") -> Batch:
    """A batch as the runner leaves it once validated: the input stored (with its providers' copies), in progress."""
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    managed = managed_file_create(owner_key_id=key.id, owner_team_id="", content=io.BytesIO(data), size=len(data),
                                  filename="input.jsonl", mime_type="application/jsonl", purpose=FilePurpose.BATCH,
                                  target_model_names=[group])
    now = timezone.now()
    return Batch.objects.create(owner_key_id=key.id, input_file=managed, endpoint="/v1/chat/completions",
                                completion_window="24h", requested_model=group, model_group=group,
                                status=BatchStatus.IN_PROGRESS, total=len(lines), in_progress_at=now,
                                expires_at=now + timedelta(hours=24))


def make_part(batch: Batch, deployment_id: str, first_line: int = 0, line_count: int | None = None,
              index: int = 0) -> BatchPart:
    provider = "azure" if deployment_id.startswith("dep-az") else "openai"
    return BatchPart.objects.create(batch=batch, index=index, deployment_id=deployment_id,
                                    model_group=batch.model_group, provider=provider, engine=Engine.NATIVE,
                                    first_line=first_line,
                                    line_count=batch.total - first_line if line_count is None else line_count)


def step(part: BatchPart, owner: str = "worker-a"):
    claimed = part_claim(part_id=part.id, owner=owner)
    assert claimed is not None
    return native_part_step(claimed, owner, batch_owner(claimed.batch))


def run(part: BatchPart, owner: str = "worker-a", limit: int = 20) -> int:
    """Step until the part is finished; how many steps it took."""
    for count in range(1, limit + 1):
        if step(part, owner) is None:
            return count
    raise AssertionError("the part did not finish")


def lines_of(batch: Batch) -> dict[str, dict]:
    return {row.custom_id: orjson.loads(row.output) for row in BatchLineResult.objects.filter(batch=batch)}


def test_a_whole_file_part_runs_on_the_deployments_copy_and_is_charged_at_batch_prices(gateway, key):
    lines = [chat_line(f"req-{n}") for n in range(3)]
    batch = make_batch(key, lines)
    part = make_part(batch, "dep-o1")
    [copy] = ProviderFile.objects.filter(managed_file=batch.input_file, deployment_id="dep-o1")

    assert run(part) == 4  # create, then in_progress, finalizing, completed

    [held] = gateway.batches_under("/o1/v1")
    assert held.input_file_id == copy.provider_file_id
    assert held.metadata == {"gatehouse_batch_id": batch.id, "gatehouse_part": "0"}
    assert [(line["custom_id"], line["body"]["model"]) for line in held.lines] == [
        ("req-0", "gpt-4o-mini"), ("req-1", "gpt-4o-mini"), ("req-2", "gpt-4o-mini")]
    assert gateway.batches_under("/o2/v1") == []
    part.refresh_from_db()
    assert (part.status, part.provider_batch_id, part.provider_status, part.completed, part.failed) == (
        PartStatus.DONE, held.id, "completed", 3, 0)
    assert part.finished_at is not None and part.next_poll_at is None
    recorded = BatchLineResult.objects.filter(batch=batch).order_by("line")
    assert [(row.line, row.custom_id, row.succeeded, row.prompt_tokens, row.completion_tokens) for row in recorded] == [
        (0, "req-0", True, 11, 7), (1, "req-1", True, 11, 7), (2, "req-2", True, 11, 7)]
    output = orjson.loads(recorded[0].output)
    assert output["id"].startswith("batch_req_") and output["error"] is None
    assert output["response"]["status_code"] == 200 and output["response"]["request_id"].startswith("req_")
    assert output["response"]["body"]["model"] == "gpt-4o-mini"
    assert output["response"]["body"]["choices"][0]["message"]["content"] == gateway.reply
    # The provider's output file is deleted; the input copy belongs to the managed file and stays.
    assert [stored.id for stored in gateway.files_under("/o1/v1")] == [copy.provider_file_id]
    batch.refresh_from_db()
    assert (batch.completed, batch.failed, batch.prompt_tokens, batch.completion_tokens) == (3, 0, 33, 21)
    assert batch.cost == pytest.approx(3 * LINE_COST)
    logs = RequestLog.objects.filter(key_id=key.id).order_by("id")
    assert [(log.operation, log.model_group, log.deployment_id, log.provider, log.status_code) for log in logs] == [
        ("batch_chat", "gpt-batch", "dep-o1", "openai", 200)] * 3
    assert [log.cost for log in logs] == [pytest.approx(LINE_COST)] * 3
    key.refresh_from_db()
    assert key.spend == pytest.approx(3 * LINE_COST)


def test_a_copy_missing_on_the_deployment_is_made_rewritten_before_the_batch(gateway, key):
    batch = make_batch(key, [chat_line("only")])
    ProviderFile.objects.filter(managed_file=batch.input_file).delete()
    for stored in gateway.files_under("/o2/v1"):
        gateway.files.pop(stored.id)

    run(make_part(batch, "dep-o2"))

    [held] = gateway.batches_under("/o2/v1")
    assert [line["body"]["model"] for line in held.lines] == ["gpt-4o-mini"]
    [copy] = ProviderFile.objects.filter(managed_file=batch.input_file, deployment_id="dep-o2")
    assert held.input_file_id == copy.provider_file_id


def test_shards_send_each_deployment_only_its_lines_rewritten_for_it(gateway, key):
    lines = [chat_line(f"c{n}", group="az-batch") for n in range(5)]
    batch = make_batch(key, lines, group="az-batch")
    first, second = make_part(batch, "dep-az1", 0, 3, index=0), make_part(batch, "dep-az2", 3, 2, index=1)

    run(first)
    run(second)

    [eu] = gateway.batches_under("/openai")
    [us] = gateway.batches_under("/r2/openai")
    assert [(line["custom_id"], line["body"]["model"]) for line in eu.lines] == [
        ("c0", "gpt-4o-eu"), ("c1", "gpt-4o-eu"), ("c2", "gpt-4o-eu")]
    assert [(line["custom_id"], line["body"]["model"]) for line in us.lines] == [("c3", "gpt-4o-us"),
                                                                                 ("c4", "gpt-4o-us")]
    assert us.metadata == {"gatehouse_batch_id": batch.id, "gatehouse_part": "1"}
    shard_uploads = [r for r in gateway.requests if r.method == "POST" and r.path == "/r2/openai/files"
                     and r.form and r.form[-1].filename == f"{batch.id}_part1.jsonl"]
    assert len(shard_uploads) == 1 and shard_uploads[0].body["purpose"] == "batch"
    second.refresh_from_db()
    assert second.provider_input_file_id == us.input_file_id
    assert ("DELETE", f"/r2/openai/files/{us.input_file_id}") in [(r.method, r.path) for r in gateway.requests]
    # Only the managed file's own (whole-file) copy is left on the provider: shard and outputs are deleted.
    assert us.input_file_id not in {stored.id for stored in gateway.files_under("/r2/openai")}
    recorded = BatchLineResult.objects.filter(batch=batch).order_by("line")
    assert [(row.line, row.custom_id) for row in recorded] == [(n, f"c{n}") for n in range(5)]
    assert [orjson.loads(row.output)["response"]["body"]["model"] for row in recorded] == [
        "gpt-4o-eu"] * 3 + ["gpt-4o-us"] * 2
    assert {log.deployment_id for log in RequestLog.objects.filter(key_id=key.id)} == {"dep-az1", "dep-az2"}


def test_a_provider_side_failure_fails_every_line_with_the_providers_reason(gateway, key):
    gateway.batch_plan = ["validating", "failed"]
    gateway.batch_errors = [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached.",
                             "param": None, "line": None}]
    batch = make_batch(key, [chat_line("a"), chat_line("b")])
    part = make_part(batch, "dep-o1")

    assert run(part) == 2

    part.refresh_from_db()
    assert (part.status, part.provider_status, part.error) == (PartStatus.FAILED, "failed",
                                                               "Enqueued token limit reached.")
    recorded = lines_of(batch)
    assert sorted(recorded) == ["a", "b"]
    assert {cid: (line["response"], line["error"]) for cid, line in recorded.items()} == {
        cid: (None, {"code": "provider_batch_failed", "message": "Enqueued token limit reached."})
        for cid in ("a", "b")}
    assert list(RequestLog.objects.filter(key_id=key.id).values_list("status_code", "cost")) == [(502, 0.0)] * 2


def test_a_model_the_provider_refuses_is_reported_with_its_line(gateway, key):
    gateway.batch_models = {"some-other-model"}
    batch = make_batch(key, [chat_line("a")])
    part = make_part(batch, "dep-o1")
    run(part)
    part.refresh_from_db()
    assert part.status == PartStatus.FAILED
    assert lines_of(batch)["a"]["error"] == {
        "code": "provider_batch_failed",
        "message": "Line 1: The model 'gpt-4o-mini' does not exist or you do not have access to it."}


def test_a_per_line_400_lands_as_a_failed_line_with_the_providers_answer(gateway, key):
    batch = make_batch(key, [chat_line("good"), chat_line("bad", max_tokens=-1), chat_line("also-good")])
    part = make_part(batch, "dep-o1")
    run(part)

    part.refresh_from_db()
    assert (part.status, part.completed, part.failed) == (PartStatus.DONE, 2, 1)
    bad = BatchLineResult.objects.get(batch=batch, custom_id="bad")
    output = orjson.loads(bad.output)
    assert (bad.line, bad.succeeded, bad.cost, output["error"]) == (1, False, 0.0, None)
    assert output["response"]["status_code"] == 400
    assert output["response"]["body"]["error"]["code"] == "integer_below_min_value"
    log = RequestLog.objects.get(key_id=key.id, status_code=400)
    assert (log.status, log.error_type, log.cost) == ("error", "invalid_request_error", 0.0)
    batch.refresh_from_db()
    assert (batch.completed, batch.failed) == (2, 1)


def test_create_is_retried_with_backoff_on_provider_errors_then_succeeds(gateway, key):
    gateway.fail_next(count=2, status=503, path_contains="/o1/v1/batches")
    batch = make_batch(key, [chat_line("a")])
    part = make_part(batch, "dep-o1")

    before = timezone.now()
    first = step(part)
    part.refresh_from_db()
    assert (part.attempts, part.provider_batch_id, part.error) == (1, "", "upstream_error: fake failure 503")
    assert first - before >= timedelta(seconds=0.02)  # base 0.01 s doubled
    step(part)
    part.refresh_from_db()
    assert part.attempts == 2
    run(part)
    part.refresh_from_db()
    assert (part.status, part.attempts) == (PartStatus.DONE, 0)
    assert len([r for r in gateway.requests_to("/o1/v1/batches") if r.method == "POST"]) == 3


def test_create_gives_up_after_five_attempts(gateway, key):
    gateway.fail_next(count=5, status=500, body={"error": {"message": "down for maintenance"}},
                      path_contains="/o1/v1/batches")
    batch = make_batch(key, [chat_line("a")])
    part = make_part(batch, "dep-o1")
    assert run(part) == 5
    part.refresh_from_db()
    assert (part.status, part.attempts) == (PartStatus.FAILED, 5)
    assert lines_of(batch)["a"]["error"] == {"code": "provider_batch_failed", "message": "down for maintenance"}


def test_a_refused_create_fails_the_part_at_once_and_deletes_the_shard_input(gateway, key):
    gateway.fail_next(status=400, body={"error": {"message": "Batch endpoint not enabled for this resource.",
                                                  "type": "invalid_request_error"}},
                      path_contains="/r2/openai/batches")
    batch = make_batch(key, [chat_line("a", group="az-batch"), chat_line("b", group="az-batch")], group="az-batch")
    part = make_part(batch, "dep-az2", 1, 1, index=1)

    assert run(part) == 1

    part.refresh_from_db()
    assert part.status == PartStatus.FAILED
    assert lines_of(batch) == {"b": {**lines_of(batch)["b"], "response": None, "error": {
        "code": "provider_batch_failed", "message": "Batch endpoint not enabled for this resource."}}}
    assert ("DELETE", f"/r2/openai/files/{part.provider_input_file_id}") in [(r.method, r.path)
                                                                           for r in gateway.requests]


def test_cancel_is_sent_once_and_the_lines_done_are_kept(gateway, key):
    gateway.batch_plan = ["validating", "in_progress", "in_progress", "finalizing", "completed"]
    batch = make_batch(key, [chat_line(f"r{n}") for n in range(4)])
    part = make_part(batch, "dep-o1")
    step(part)  # created: validating
    step(part)  # in_progress, half done (the next poll still sees it in progress)
    Batch.objects.filter(id=batch.id).update(status=BatchStatus.CANCELLING, cancelling_at=timezone.now())

    assert step(part) is not None  # cancel sent: the provider says cancelling
    assert run(part) == 1

    [held] = gateway.batches_under("/o1/v1")
    assert held.cancel_requests == 1
    part.refresh_from_db()
    assert (part.status, part.provider_status) == (PartStatus.CANCELLED, "cancelled")
    assert sorted(lines_of(batch)) == ["r0", "r1"]  # the unprocessed lines are left out, as OpenAI does


def test_a_batch_cancelled_before_its_provider_batch_exists_sends_nothing(gateway, key):
    batch = make_batch(key, [chat_line("a")])
    Batch.objects.filter(id=batch.id).update(status=BatchStatus.CANCELLING)
    part = make_part(batch, "dep-o1")
    gateway.requests.clear()
    assert run(part) == 1
    part.refresh_from_db()
    assert part.status == PartStatus.CANCELLED
    assert gateway.requests == [] and lines_of(batch) == {}


def test_our_window_passing_cancels_the_provider_batch_and_expires_the_rest(gateway, key):
    gateway.batch_plan = ["validating", "in_progress", "in_progress", "finalizing", "completed"]
    batch = make_batch(key, [chat_line(f"r{n}") for n in range(4)])
    part = make_part(batch, "dep-o1")
    step(part)
    step(part)  # in_progress
    Batch.objects.filter(id=batch.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    run(part)

    [held] = gateway.batches_under("/o1/v1")
    assert held.cancel_requests == 1
    part.refresh_from_db()
    assert part.status == PartStatus.EXPIRED
    recorded = lines_of(batch)
    assert [cid for cid in sorted(recorded) if recorded[cid]["error"] is None] == ["r0", "r1"]
    assert {cid: recorded[cid]["error"] for cid in ("r2", "r3")} == {"r2": EXPIRED, "r3": EXPIRED}
    batch.refresh_from_db()
    assert (batch.completed, batch.failed) == (2, 2)


def test_a_provider_expired_batch_keeps_its_partial_results(gateway, key):
    gateway.batch_plan = ["validating", "in_progress", "expired"]
    gateway.batch_lines_done = 1
    batch = make_batch(key, [chat_line("a"), chat_line("b")])
    part = make_part(batch, "dep-o1")
    run(part)
    part.refresh_from_db()
    assert part.status == PartStatus.EXPIRED
    recorded = lines_of(batch)
    assert recorded["a"]["response"]["status_code"] == 200
    assert (recorded["b"]["response"], recorded["b"]["error"]) == (None, EXPIRED)


def test_polls_back_off_up_to_the_maximum_and_keep_the_live_counts(gateway, key):
    gateway.batch_plan = ["validating", "in_progress", "in_progress", "in_progress", "completed"]
    batch = make_batch(key, [chat_line(f"r{n}") for n in range(4)])
    part = make_part(batch, "dep-o1")
    intervals = []
    for _ in range(4):
        step(part)
        part.refresh_from_db()
        intervals.append(part.poll_interval)
    assert intervals == [0.01, 0.02, 0.04, 0.04]
    assert (part.provider_status, part.provider_completed, part.provider_failed) == ("in_progress", 2, 0)
    assert part.next_poll_at > timezone.now() - timedelta(seconds=1)


def test_a_removed_deployment_fails_every_unrecorded_line(gateway, key):
    batch = make_batch(key, [chat_line("a"), chat_line("b")])
    part = make_part(batch, "dep-gone")
    assert run(part) == 1
    part.refresh_from_db()
    assert part.status == PartStatus.FAILED
    assert {cid: line["error"]["code"] for cid, line in lines_of(batch).items()} == {
        "a": "deployment_removed", "b": "deployment_removed"}


def test_a_worker_dying_mid_download_is_resumed_by_another_with_each_line_once(gateway, key):
    count = 700
    batch = make_batch(key, [chat_line(f"id-{n:04d}") for n in range(count)])
    part = make_part(batch, "dep-o1")
    for _ in range(3):  # create, in_progress, finalizing
        step(part, "worker-a")
    # The output file breaks off after 550 lines: worker A records one chunk of 500 and then "dies".
    gateway.fail_next(kind="cut", after_chunks=550, path_contains="/content")
    assert step(part, "worker-a") is not None  # completed, but the download broke: poll again later
    assert BatchLineResult.objects.filter(batch=batch).count() == 500

    BatchPart.objects.filter(id=part.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run(part, "worker-b") == 1

    with pytest.raises(LeaseLostError):
        native_part_step(BatchPart.objects.get(id=part.id), "worker-a", batch_owner(batch))
    custom_ids = list(BatchLineResult.objects.filter(batch=batch).order_by("line").values_list("custom_id", flat=True))
    assert custom_ids == [f"id-{n:04d}" for n in range(count)]
    assert RequestLog.objects.filter(key_id=key.id).count() == count
    part.refresh_from_db()
    assert (part.status, part.lease_owner, part.completed) == (PartStatus.DONE, "worker-b", count)
    key.refresh_from_db()
    assert key.spend == pytest.approx(count * LINE_COST)


def test_a_failed_poll_is_retried_and_too_many_in_a_row_give_the_part_up(gateway, key):
    batch = make_batch(key, [chat_line("a")])
    part = make_part(batch, "dep-o1")
    step(part)
    gateway.fail_next(status=502, path_contains="/o1/v1/batches/")
    step(part)
    part.refresh_from_db()
    assert (part.status, part.attempts, part.provider_status) == (PartStatus.RUNNING, 1, "validating")
    step(part)
    part.refresh_from_db()
    assert (part.attempts, part.provider_status) == (0, "in_progress")

    gateway.fail_next(count=10, status=404, body={"error": {"message": "No batch found."}},
                      path_contains="/o1/v1/batches/")
    assert run(part) == 10
    part.refresh_from_db()
    assert (part.status, part.attempts) == (PartStatus.FAILED, 10)
    assert lines_of(batch)["a"]["error"] == {"code": "provider_batch_failed", "message": "No batch found."}
