"""`GATEWAY_METRICS_PUBLIC=1` opens `GET /metrics` to a scraper without a key; an operator's
`PROMETHEUS_MULTIPROC_DIR` is used, emptied of an earlier run's files first; and a standalone
`manage.py batch_worker --metrics-port` (which cannot share the gateway's metrics files) serves its own
page with the batch lines it ran."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_metrics import USER, batch_counts, fresh_client, sample, scrape, settles, submit_batch
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, REPO_ROOT, GatewayProcess, free_port, start_gateway, terminate

pytestmark = pytest.mark.e2e


STALE_PID = 999_999_999  # no process of this run has it


def stale_counts(directory: Path) -> None:
    """A counter file as an earlier run of the gateway would have left it: 100 requests already counted."""
    directory.mkdir()
    stale = MmapedDict(str(directory / f"counter_{STALE_PID}.db"))
    stale.write_value(mmap_key("gatehouse_requests", "gatehouse_requests_total",
                               ["operation", "model_group", "deployment", "status"],
                               ["chat", "mock-public", "mock-p1", "200"], "stale"), 100.0, 0.0)
    stale.close()


@pytest.fixture(scope="module")
def metrics_directory(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("operator") / "prometheus"
    stale_counts(directory)
    return directory


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, metrics_directory) -> Iterator[GatewayProcess]:
    config = {"model_list": [{"model_name": "mock-public", "model_info": {"id": "mock-p1"},
                              "litellm_params": {"model": "mock/mock-p1", "mock_response": "mock answer"}}],
              "general_settings": {"master_key": MASTER_KEY}}
    process = start_gateway(tmp_path_factory.mktemp("metrics-public"), config,
                            env={"GATEWAY_METRICS_PUBLIC": "1", "GATEWAY_LOG_FLUSH_SECONDS": "0.2",
                                 "GATEWAY_BATCH_SWEEP_SECONDS": "0.5",
                                 "PROMETHEUS_MULTIPROC_DIR": str(metrics_directory)})
    yield process
    process.stop()
    assert metrics_directory.is_dir()  # the operator's directory: emptied at start, never removed


@pytest.fixture(scope="module")
def worker_metrics(gateway) -> Iterator[str]:
    """A standalone batch worker on the gateway's database, serving its metrics on a loopback port: its URL."""
    port = free_port()
    environment = {**gateway.extra["environment"], "GATEWAY_CONFIG": str(gateway.extra["config_path"])}
    environment.pop("PROMETHEUS_MULTIPROC_DIR")  # as on another machine: the gateway's files are out of reach
    log_path = gateway.log_path.parent / "standalone-worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "batch_worker", "--threads", "1", "--metrics-port", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(serving, seconds=30, interval=0.2), log_path.read_text(errors="replace")
        yield url
    finally:
        terminate(process, 30)


def test_public_metrics_need_no_key_and_count_from_zero_in_the_operators_directory(gateway, metrics_directory):
    assert not (metrics_directory / f"counter_{STALE_PID}.db").exists()
    with fresh_client(gateway) as client:
        client.chat.completions.create(model="mock-public", messages=USER)
    page = settles(gateway, "gatehouse_requests_total", 1, operation="chat", model_group="mock-public",
                   deployment="mock-p1", status="200")
    assert [path.name for path in metrics_directory.glob("counter_*.db")]  # the worker's own files
    assert sample(page, "gatehouse_in_flight_requests") == 0
    assert sample(scrape(gateway, headers={}), "gatehouse_requests_total", operation="chat", model_group="mock-public",
                  deployment="mock-p1", status="200") == 1
    assert sample(scrape(gateway, headers={"Authorization": "Bearer sk-not-a-key"}), "gatehouse_in_flight_requests") \
        == 0


def test_a_standalone_worker_serves_its_own_batch_lines(gateway, worker_metrics):
    batch_id = submit_batch(gateway, "mock-public", 4)
    assert batch_counts(gateway, batch_id) == ("completed", 4, 0)

    def worker_lines() -> float | None:
        response = requests.get(worker_metrics, timeout=5)
        assert response.status_code == 200
        for family in text_string_to_metric_families(response.text):
            for found in family.samples:
                if found.name == "gatehouse_batch_lines_total" and found.labels == {
                        "model_group": "mock-public", "outcome": "completed"}:
                    return found.value
        return None

    assert wait_until(lambda: worker_lines() == 4, seconds=10, interval=0.1)
    # The gateway's own page has only its processes' files: the standalone worker's lines are not there.
    assert sample(scrape(gateway), "gatehouse_batch_lines_total", model_group="mock-public",
                  outcome="completed") is None
