"""gunicorn settings for `serve`. The gevent patch must come first (STACK.md, pitfall 1):
anything imported before it (psycopg above all) would block the whole worker on I/O."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:4000")
workers = int(os.environ.get("GATEWAY_WORKERS", "1"))
worker_class = "gevent"
# Each LLM call waits seconds on its provider: one worker must hold thousands of open requests.
worker_connections = int(os.environ.get("GATEWAY_WORKER_CONNECTIONS", "10000"))
# gevent workers heartbeat from their own greenlet, so this is a liveness limit, not a request limit.
timeout = int(os.environ.get("GATEWAY_WORKER_TIMEOUT", "120"))
# On SIGTERM, in-flight requests and streams get this long to finish.
graceful_timeout = int(os.environ.get("GATEWAY_GRACEFUL_TIMEOUT", "60"))
# Idle keep-alive connections hold a worker open during a graceful stop: keep them short (the OpenAI
# SDK's own pool drops idle connections after 5 s anyway).
keepalive = int(os.environ.get("GATEWAY_KEEPALIVE", "10"))
backlog = 4096
preload_app = False
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "gatehouse"
# gunicorn's own lines (its error log) in GATEWAY_LOG_FORMAT, like the gateway's (docs/logging.md).
logger_class = "gateway_project.log_format.GunicornLogger"
# Gatehouse is reached directly or behind a proxy that sets these; trust only loopback by default.
forwarded_allow_ips = os.environ.get("GATEWAY_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Several gateways may run on one machine (tests, multi-instance setups): no shared control socket.
control_socket_disable = True
# Request logs and spend are buffered in each worker and written in bulk this often (seconds).
log_flush_seconds = float(os.environ.get("GATEWAY_LOG_FLUSH_SECONDS", "1"))

# Prometheus multiprocess mode (docs/metrics.md): every process of this gateway (web workers, the embedded
# batch worker) writes its metrics to files in one directory that any worker's `GET /metrics` adds up. It
# must be in the environment before a worker imports prometheus_client, and start empty: files left by an
# earlier run would be added to this one's. An operator's PROMETHEUS_MULTIPROC_DIR is emptied of its
# metrics files and used; otherwise a new private directory is made, and removed when the gateway stops.
METRICS_DIRECTORY_MARKER = "GATEWAY_METRICS_DIRECTORY"  # "<master pid> private|given": who prepared it, how


def _metrics_directory() -> tuple[str, bool]:
    """(the directory, whether this gateway made it and removes it at exit)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    marker = os.environ.get(METRICS_DIRECTORY_MARKER, "")
    prepared_by, _, kind = marker.partition(" ")
    if configured and prepared_by == str(os.getpid()):
        return configured, kind == "private"  # this master reloading its config (SIGHUP): keep the counts
    if configured and not marker:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
        return str(directory), False
    # None configured, or one inherited from another gateway's environment: never share its files.
    return tempfile.mkdtemp(prefix="gatehouse-metrics-"), True


metrics_directory, _metrics_directory_owned = _metrics_directory()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory
os.environ[METRICS_DIRECTORY_MARKER] = f"{os.getpid()} {'private' if _metrics_directory_owned else 'given'}"


def post_worker_init(worker):
    """Start the worker's background work once Django is loaded (see models_registry/periodic.py)."""
    from files_registry.maintenance import files_maintenance_start
    from keys.log_buffer import flusher_start
    from keys.maintenance import maintenance_start
    from models_registry.health import background_health_checks_start

    flusher_start(interval=log_flush_seconds)  # request logs and spend (keys/log_buffer.py)
    maintenance_start()  # keys' last use and budget resets, written in the background (keys/maintenance.py)
    files_maintenance_start()  # provider copies left to delete, expired files (files_registry/maintenance.py)
    background_health_checks_start()  # when the config asks for them (models_registry/health.py)


def child_exit(server, worker):
    """In the master, for every worker that exited: its live gauges (in-flight calls, log buffer rows) stop
    counting; its counters and histograms stay in the sum, so totals never go backwards."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, path=metrics_directory)


def worker_exit(server, worker):
    """Write the worker's last request logs before it exits, so a graceful stop loses none.

    gunicorn also calls this in the master for a worker that already died: nothing to flush there.
    """
    if worker.pid != os.getpid():
        return
    import sys

    log_buffer = sys.modules.get("keys.log_buffer")
    if log_buffer is not None:
        log_buffer.flusher_stop()


# `serve` starts one batch worker process next to gunicorn unless told `--no-worker` (batches/worker.py).
embedded_batch_worker = os.environ.get("GATEWAY_EMBEDDED_BATCH_WORKER", "1") == "1"
_batch_worker: list[subprocess.Popen] = []


def when_ready(server):
    """Start the embedded batch worker (`manage.py batch_worker`) with the gateway's own environment."""
    if not embedded_batch_worker or _batch_worker:
        return
    manage = Path(__file__).resolve().parents[1] / "manage.py"
    environment = dict(os.environ)
    environment["GATEWAY_BATCH_WORKER_PARENT_PID"] = str(os.getpid())
    # Background work yields the CPU to requests (and to the web workers booting beside it).
    # `--restart`: a supervisor that starts a new worker whenever the worker dies (batches/supervisor.py).
    process = subprocess.Popen([sys.executable, str(manage), "batch_worker", "--restart"], env=environment,
                               cwd=str(manage.parent), preexec_fn=_lower_priority)
    _batch_worker.append(process)
    server.log.info("embedded batch worker started (pid %s)", process.pid)


def _lower_priority():
    os.nice(10)


def on_exit(server):
    """Stop the embedded batch worker: SIGTERM lets its running parts record their lines and stop."""
    from batches.supervisor import process_stop

    for process in _batch_worker:
        process_stop(process, grace_seconds=graceful_timeout)
    _batch_worker.clear()
    if _metrics_directory_owned:
        shutil.rmtree(metrics_directory, ignore_errors=True)
