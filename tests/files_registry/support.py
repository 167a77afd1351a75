"""Shared pieces of the managed-files tests: a gateway whose groups hold files on the loopback FakeOpenAI
(each deployment its own account, told apart by a path prefix), a temporary files storage, and callers."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from files_registry.services import FileUpload, managed_file_upload
from keys.principal import MASTER, Caller
from tests.fakes.openai_server import FakeOpenAI

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
UPSTREAM_KEY = "sk-upstream-files-secret-51c2"
# deployment id -> (group, the fake's path prefix for its account)
DEPLOYMENTS = {
    "dep-a1": ("gpt-a", "/a1/v1"),
    "dep-a2": ("gpt-a", "/a2/v1"),
    "dep-b1": ("gpt-b", "/b1/v1"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def use_temporary_storage(settings, root: Path) -> Path:
    """Point the managed files storage at `root` (Django resets its storages on the settings change)."""
    location = root / "files"
    settings.STORAGES = {**settings.STORAGES, "managed_files": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}}}
    settings.GATEWAY_FILE_MAINTENANCE_SECONDS = 0
    return location


def stored_files(location: Path) -> list[Path]:
    return sorted(path for path in location.rglob("*") if path.is_file()) if location.exists() else []


def gateway_config(fake: FakeOpenAI, *, extra: list[dict] | None = None) -> dict:
    models = [
        {"model_name": group, "model_info": {"id": deployment_id},
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake.url}{prefix}", "api_key": UPSTREAM_KEY}}
        for deployment_id, (group, prefix) in DEPLOYMENTS.items()
    ]
    models.append({"model_name": "mock-g", "model_info": {"id": "dep-m1"}, "litellm_params": {"model": "mock/m"}})
    models.append({"model_name": "text-only", "model_info": {"id": "dep-t1"},
                   "litellm_params": {"model": "text-completion-openai/gpt-3.5-turbo-instruct",
                                      "api_base": f"{fake.url}/t1/v1", "api_key": UPSTREAM_KEY}})
    return {"model_list": models + (extra or [])}


@pytest.fixture
def file_storage(settings, tmp_path) -> Path:
    return use_temporary_storage(settings, tmp_path)


@pytest.fixture
def files_gateway(configure_gateway, fake_openai: FakeOpenAI, file_storage) -> FakeOpenAI:
    configure_gateway(gateway_config(fake_openai))
    return fake_openai


def upload(*, caller: Caller = MASTER, data: bytes = PDF, filename: str = "report.pdf", purpose: str = "user_data",
           targets: list[str] | None = None, mime_type: str = "application/pdf", expires_after: int | None = None):
    return managed_file_upload(
        caller=caller, upload=FileUpload(content=io.BytesIO(data), size=len(data), filename=filename,
                                         mime_type=mime_type),
        purpose=purpose, target_model_names=targets or [], expires_after_seconds=expires_after,
        max_bytes=512 * 1024 * 1024)


def files_on(fake: FakeOpenAI, prefix: str) -> list:
    return fake.files_under(prefix)
