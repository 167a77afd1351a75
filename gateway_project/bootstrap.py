"""What `serve` needs before Django reads its settings: a state directory and a secret key.

Kept free of Django imports on purpose: it runs before settings exist.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """The directory holding the SQLite database and the generated secret key (`GATEWAY_STATE_DIR`, else ./var)."""
    return Path(os.environ.get("GATEWAY_STATE_DIR") or BASE_DIR / "var")


def secret_key_path() -> Path:
    return state_dir() / "secret_key"


def ensure_secret_key() -> None:
    """Create `var/secret_key` once, so a fresh checkout serves with no configuration.

    An explicit `SECRET_KEY` in the environment always wins and makes this a no-op.
    """
    if os.environ.get("SECRET_KEY"):
        return
    path = secret_key_path()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process won the race; its key is as good as ours
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
