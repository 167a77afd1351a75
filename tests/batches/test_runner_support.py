"""Shared pieces of the in-process batch tests (no tests here): a batch input stored as a managed file, a batch made
with `batch_create`, and draining the task queue with django-tasks-db's own worker loop."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from django_tasks_db.management.commands.db_worker import Worker

from batches.gateway_engine import STOPPING
from batches.models import Batch
from batches.services import batch_create
from batches.worker import BatchWorker
from files_registry.choices import FilePurpose
from files_registry.models import ManagedFile
from files_registry.services import managed_file_create
from files_registry.storage import stored_bytes_open
from keys.key_cache import key_view_from_row
from keys.principal import MASTER, Caller
from keys.services import virtual_key_generate
from tests.files_registry.support import use_temporary_storage


@pytest.fixture
def batch_storage(settings, tmp_path):
    """Managed files in a temporary directory; the batch settings tests rely on."""
    settings.GATEWAY_BATCH_CONCURRENCY = 4
    return use_temporary_storage(settings, tmp_path)


def chat_line(custom_id: str, model: str, text: str = "hello", url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": text}]}}


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def input_file(lines: list[dict], *, caller: Caller = MASTER) -> ManagedFile:
    """A batch input stored as the caller's managed file (no provider copies: no target groups)."""
    data = jsonl(lines)
    key = caller.key
    return managed_file_create(owner_key_id=key.id if key else "", owner_team_id=(key.team_id or "") if key else "",
                               content=io.BytesIO(data), size=len(data), filename="input.jsonl",
                               mime_type="application/jsonl", purpose=FilePurpose.BATCH, target_model_names=[])


def make_batch(lines: list[dict], *, caller: Caller = MASTER, endpoint: str = "/v1/chat/completions",
               window: str = "24h") -> Batch:
    return batch_create(caller=caller, input_file_id=input_file(lines, caller=caller).id, endpoint=endpoint,
                        completion_window=window)


def key_caller(models: list[str]) -> Caller:
    issued = virtual_key_generate(fields={"models": models})
    return Caller(key=key_view_from_row(issued.key))


def drain() -> None:
    """Run every task that is ready now, in this thread, until none is left."""
    Worker(queue_names=["batches", "default"], interval=0, batch=True, backend_name="default", startup_delay=False,
           max_tasks=None, worker_id="test-drain", excluded_queue_names=[]).run()


@contextmanager
def running_worker(*, threads: int = 2, sweep_seconds: float = 0.2) -> Iterator[BatchWorker]:
    """A `BatchWorker` running in a background thread of this process, stopped on exit."""
    worker = BatchWorker(threads=threads, sweep_seconds=sweep_seconds, grace_seconds=10, interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=20)
        STOPPING.clear()  # the process goes on: later tests run parts in it


def file_lines(managed_file: ManagedFile | None) -> list[dict]:
    if managed_file is None:
        return []
    with stored_bytes_open(managed_file.stored_name) as handle:
        return [orjson.loads(line) for line in handle.read().splitlines()]
