"""Background loops: started once per process, run on schedule, survive their own failures, stop."""
from __future__ import annotations

import threading

from models_registry.periodic import PeriodicTask
from tests.support.polling import wait_until


def test_a_task_runs_on_schedule_keeps_running_after_a_failure_and_stops(caplog):
    runs: list[int] = []

    def work() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("boom")

    task = PeriodicTask("test", work)
    with caplog.at_level("ERROR", logger="gatehouse.periodic"):
        assert task.start(0.02) is True
        assert task.start(0.02) is True  # already running in this process: no second loop
        assert wait_until(lambda: len(runs) >= 4, seconds=5)
        task.stop()
    stopped_at = len(runs)
    assert [record.getMessage() for record in caplog.records] == [
        "background task test failed; it runs again on schedule"]
    assert threading.Event().wait(0.1) is False and len(runs) == stopped_at
    assert task.thread is None


def test_run_at_start_runs_before_the_first_interval_and_a_non_positive_interval_starts_nothing():
    ran = threading.Event()
    task = PeriodicTask("eager", ran.set, run_at_start=True)
    assert task.start(0) is False and task.thread is None
    assert task.start(3600) is True
    try:
        assert ran.wait(5)
    finally:
        task.stop(timeout=0.1)
