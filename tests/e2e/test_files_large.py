"""A 200 MB file through a running gateway with bounded memory: uploaded with the OpenAI SDK from a generated
stream (the test never holds it either), copied to a provider fake, downloaded back byte-identical, while the
gateway worker's peak resident memory grows by far less than the file."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

SIZE = 200 * 1024 * 1024
MAX_GROWTH_BYTES = 64 * 1024 * 1024
# A prime length, so the pattern never lines up with any reader's chunk size.
PATTERN = random.Random(200).randbytes(65521)


class GeneratedFile(io.RawIOBase):
    """`size` bytes of a repeating pseudo-random pattern, produced as they are read (seekable, so the SDK
    can learn the length and send it as Content-Length)."""

    name = "large.bin"

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, min(self.size, base + offset))
        return self.position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self.position)
        filled = 0
        while filled < wanted:
            start = (self.position + filled) % len(PATTERN)
            piece = PATTERN[start:start + wanted - filled]
            view[filled:filled + len(piece)] = piece
            filled += len(piece)
        self.position += filled
        return filled


def generated_sha256(size: int) -> str:
    digest, source = hashlib.sha256(), GeneratedFile(size)
    while block := source.read(1024 * 1024):
        digest.update(block)
    return digest.hexdigest()


def worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    """Reset the process's peak resident size (VmHWM) to its current size, where the kernel allows it."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI()
    yield started
    started.close()


@pytest.fixture(scope="module")
def large_gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    config = {"model_list": [{"model_name": "files-big", "model_info": {"id": "files-big-1"},
                              "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake.url}/v1",
                                                 "api_key": "sk-upstream-big"}}],
              "general_settings": {"master_key": MASTER_KEY}}
    process = start_gateway(tmp_path_factory.mktemp("files-large"), config)
    yield process
    process.stop()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read memory")
def test_a_200_mb_upload_and_download_keep_the_worker_small(large_gateway, fake, tmp_path):
    expected = generated_sha256(SIZE)
    pid = worker_pid(large_gateway.process.pid)
    with OpenAI(base_url=large_gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=300) as sdk:
        warm = sdk.files.create(file=("warm.txt", b"warm up"), purpose="user_data",
                                extra_body={"target_model_names": "files-big"})
        sdk.files.delete(warm.id)
        fake.reset()
        reset_peak(pid)
        before = max(memory_kb(pid, "VmRSS"), memory_kb(pid, "VmHWM")) * 1024

        created = sdk.files.create(file=("large.bin", GeneratedFile(SIZE), "application/octet-stream"),
                                   purpose="user_data", extra_body={"target_model_names": "files-big"})
        assert (created.bytes, created.filename, created.status) == (SIZE, "large.bin", "processed")
        [copy] = created.model_extra["provider_copies"]
        assert (copy["deployment_id"], copy["status"]) == ("files-big-1", "uploaded")
        [held] = fake.files_under("/v1")
        assert (held.size, held.sha256, held.filename) == (SIZE, expected, "large.bin")

        digest, received = hashlib.sha256(), 0
        with sdk.files.with_streaming_response.content(created.id) as response:
            for chunk in response.iter_bytes(1024 * 1024):
                digest.update(chunk)
                received += len(chunk)
        assert (received, digest.hexdigest()) == (SIZE, expected)

        growth = memory_kb(pid, "VmHWM") * 1024 - before
        assert growth < MAX_GROWTH_BYTES, f"the worker's peak memory grew by {growth / 2**20:.1f} MB"
        sdk.files.delete(created.id)
    assert fake.files_under("/v1") == []
    stored = list((Path(large_gateway.log_path).parent / "state" / "files").rglob("file-*"))
    assert stored == [] and os.path.exists(large_gateway.log_path)
