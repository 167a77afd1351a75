"""Waiting, boundedly, for something another thread or process does (a fake counting a hang-up)."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], *, seconds: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `condition` until it holds or `seconds` pass; returns whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
