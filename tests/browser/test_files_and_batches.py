"""Managed files and batches in the admin, made through the API with the OpenAI SDK: a file uploaded by a
developer is listed with its copy and downloads byte for byte; a batch run by the gateway's own worker shows
its live progress while it runs, then its final status and counts."""
from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest

from tests.browser.browsing import changelist_row
from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

BATCH_WORKER = True
LINE_LATENCY_MS = 600  # each batch line takes this long on one lane: the batch is seen half done
FINAL = ("completed", "failed", "expired", "cancelled")


def gateway_config(upstream: FakeOpenAI) -> dict:
    return {"model_list": [
        {"model_name": "mock-files", "litellm_params": {"model": "mock/mock-files"},
         "model_info": {"id": "mock-files-1"}},
        {"model_name": "mock-batch", "model_info": {"id": "mock-batch-1", "batch_concurrency": 1},
         "litellm_params": {"model": "mock/mock-batch", "mock_response": "batched answer",
                            "mock_latency_ms": LINE_LATENCY_MS}},
    ], "general_settings": {"master_key": MASTER_KEY}}


def readonly(page, field: str) -> str:
    return page.locator(f".field-{field} .readonly").inner_text().strip()


def test_an_uploaded_file_is_listed_with_its_copy_and_downloads_unchanged(admin, sdk, tmp_path):
    content = b"".join(orjson.dumps({"note": index, "text": "for the admin"}) + b"\n" for index in range(40))
    uploaded = sdk.files.create(file=("operator-notes.jsonl", content, "application/jsonl"), purpose="user_data",
                                extra_body={"target_model_names": "mock-files"})
    assert (uploaded.bytes, uploaded.filename) == (len(content), "operator-notes.jsonl")

    page = admin.open("/admin/files_registry/managedfile/", "file-list")
    row = changelist_row(page, uploaded.id)
    assert {name: row[name] for name in ("id", "filename", "owner", "purpose", "size", "copies")} == {
        "id": uploaded.id, "filename": "operator-notes.jsonl", "owner": "master key", "purpose": "user_data",
        "size": f"{len(content) / 1024:.1f}\xa0KB", "copies": "1 uploaded"}

    page.click(f"#result_list a:text-is('{uploaded.id}')")
    admin.settled("file-detail")
    assert (readonly(page, "id"), readonly(page, "filename"), readonly(page, "purpose"), readonly(page, "bytes"),
            readonly(page, "target_model_names")) == (
        uploaded.id, "operator-notes.jsonl", "user_data", str(len(content)), '["mock-files"]')
    copies = page.locator(".inline-group tbody tr.has_original, .inline-group tbody tr.form-row")
    assert copies.count() == 1
    assert copies.first.locator("td.field-deployment_id").inner_text().strip() == "mock-files-1"
    assert copies.first.locator("td.field-status").inner_text().strip() == "Uploaded"

    with page.expect_download() as downloaded:
        page.click("a:text-is('Download operator-notes.jsonl')")
    assert downloaded.value.suggested_filename == "operator-notes.jsonl"
    saved = tmp_path / "downloaded.jsonl"
    downloaded.value.save_as(saved)
    assert Path(saved).read_bytes() == content


def test_a_batch_shows_its_live_progress_then_its_final_counts(admin, sdk, gateway):
    lines = [{"custom_id": f"line-{index}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "mock-batch", "messages": [{"role": "user", "content": f"question {index}"}]}}
             for index in range(3)]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    uploaded = sdk.files.create(file=("batch-input.jsonl", data, "application/jsonl"), purpose="batch",
                                extra_body={"target_model_names": "mock-batch"})
    created = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"from": "browser test"})

    page = admin.open(f"/admin/batches/batch/?q={created.id}", "batch-list-created")
    seen: dict[str, str] = {}

    def part_done() -> bool:
        """Reload the list until it shows the batch running with some, not all, of its lines done."""
        page.reload()
        page.wait_for_load_state()
        row = changelist_row(page, created.id)
        seen.update(row)
        return row["status"] == "In progress" and re.fullmatch(r"[12] completed, 0 failed / 3", row["progress"])

    assert wait_until(part_done, seconds=15, interval=0.05), seen
    admin.settled("batch-list-in-progress")
    assert (seen["owner"], seen["model_group"], seen["engines"], seen["deployments"]) == (
        "master key", "mock-batch", "gateway", "mock-batch-1")
    done = int(seen["progress"][0])
    green = page.locator("#result_list tr", has_text=created.id).locator(".batch-progress div div").first
    assert green.evaluate("bar => bar.style.width") == f"{round(100 * done / 3, 1)}%"

    deadline = time.monotonic() + 20
    while sdk.batches.retrieve(created.id).status not in FINAL and time.monotonic() < deadline:
        time.sleep(0.1)
    batch = sdk.batches.retrieve(created.id)
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == ("completed", 3, 0)

    page = admin.open(f"/admin/batches/batch/?q={created.id}", "batch-list-completed")
    row = changelist_row(page, created.id)
    assert (row["status"], row["progress"]) == ("Completed", "3 completed, 0 failed / 3")
    page.click(f"#result_list a:text-is('{created.id}')")
    admin.settled("batch-detail")
    assert (readonly(page, "status"), readonly(page, "model_group"), readonly(page, "total"),
            readonly(page, "completed"), readonly(page, "failed"), readonly(page, "cancel_button")) == (
        "Completed", "mock-batch", "3", "3", "0", "—")
    assert readonly(page, "output_download") == f"Download {created.id}_output.jsonl ({batch.output_file_id})"
    with page.expect_download() as downloaded:
        page.click(f"a:text-is('Download {created.id}_output.jsonl ({batch.output_file_id})')")
    output = [orjson.loads(line) for line in Path(downloaded.value.path()).read_bytes().splitlines()]
    assert [(item["custom_id"], item["response"]["body"]["choices"][0]["message"]["content"]) for item in output] == [
        (f"line-{index}", "batched answer") for index in range(3)]
