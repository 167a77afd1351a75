"""Request logs and spend, buffered in each worker and written in bulk off the request path.

A finished request appends one `UsageRecord` to this process's buffer: no query, no lock held
against the database, a few microseconds. A background flusher (a thread; a greenlet under
gunicorn's gevent workers, whose monkey patching makes `threading` cooperative) writes whatever is
pending every `interval` seconds, sooner when a full batch is waiting, each batch in one transaction
(`keys.spend.usage_records_write`).

Nothing is lost on a normal stop: gunicorn's `worker_exit` hook (and `atexit` as a safety net)
stops the flusher and writes the rest. When the database is unavailable the batch goes back to the
front of the buffer and the flusher retries with a growing pause; past `MAX_PENDING_ROWS` the oldest
rows are dropped with an error log, so an outage costs bounded memory, never the worker.

SQLite blocks the whole process while a query runs, and under gevent that means every request of
the worker: there each batch is written from a native thread of gevent's pool (sqlite releases the
GIL while it works), so the worker keeps serving during a flush. PostgreSQL waits are cooperative
already and are written in place.

The flusher is started by the server (`gunicorn.conf.py`'s `post_worker_init`), not on import: a
process that never serves requests (a management command, a test run) never writes in the background.

Metrics (`keys.metrics`) are observed from the same records: each one also goes into a second queue,
`unobserved`, which every tick of the flusher drains into the metrics before it writes to the database.
The two queues are independent, so rows re-queued during a database outage are never counted twice,
and the metrics keep ticking at the normal interval while the writes wait out their retry pause.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque

import gevent
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, ProgrammingError, connection
from gevent import monkey

from keys.metrics import buffer_gauges_publish, usage_records_observe
from keys.spend import usage_records_write
from keys.usage import UsageRecord

logger = logging.getLogger("gatehouse.usage")

FLUSH_INTERVAL_SECONDS = 1.0
FLUSH_BATCH_ROWS = 500
MAX_PENDING_ROWS = 100_000
RETRY_PAUSE_SECONDS = 1.0
MAX_RETRY_PAUSE_SECONDS = 30.0
SHUTDOWN_ATTEMPTS = 3
# The database (not the rows) is the problem: down, unreachable, or its schema not migrated yet. Any
# other failure (a DataError, an IntegrityError, a value that cannot be encoded) is the rows' own.
RETRYABLE_ERRORS = (OperationalError, InterfaceError, ProgrammingError, InternalError)


class _Buffer:
    def __init__(self) -> None:
        self.pending: deque[UsageRecord] = deque()
        # Records not yet counted in the metrics; bounded like `pending` (the oldest go first).
        self.unobserved: deque[UsageRecord] = deque(maxlen=MAX_PENDING_ROWS)
        self.dropped = 0
        self.pid = os.getpid()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.flush_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.interval = FLUSH_INTERVAL_SECONDS
        self.exit_hook_registered = False


_buffer = _Buffer()


def usage_record_enqueue(record: UsageRecord) -> None:
    """Queue a finished request for the next flush and the metrics (the only call on the request path)."""
    pending = _buffer.pending
    pending.append(record)
    _buffer.unobserved.append(record)
    size = len(pending)
    if size > MAX_PENDING_ROWS:
        _drop_oldest(size - MAX_PENDING_ROWS)
    elif size % FLUSH_BATCH_ROWS == 0:
        _buffer.wake.set()


def _drop_oldest(count: int) -> None:
    for _ in range(count):
        try:
            _buffer.pending.popleft()
        except IndexError:
            break
    _buffer.dropped += count
    if _buffer.dropped == count or _buffer.dropped % 1000 < count:
        logger.error("request log buffer full (%d rows): %d oldest rows dropped so far; is the database down?",
                     MAX_PENDING_ROWS, _buffer.dropped)


def pending_count() -> int:
    return len(_buffer.pending)


def pending_records() -> list[UsageRecord]:
    """A copy of what waits for the next flush (tests and diagnostics)."""
    return list(_buffer.pending)


def pending_discard() -> None:
    """Forget everything pending, metrics included (tests start from an empty buffer)."""
    _buffer.pending.clear()
    _buffer.unobserved.clear()


def metrics_observe_pending() -> int:
    """Count what was queued since the last tick in the metrics and publish this process's gauges (the
    in-flight calls, the rows waiting for the database); returns the records observed. Never raises:
    metrics must not stop the flusher. Safe to run from two places at once (each record is taken once).
    """
    unobserved = _buffer.unobserved
    records = []
    while True:
        try:
            records.append(unobserved.popleft())
        except IndexError:
            break
    try:
        observed = usage_records_observe(records)
        buffer_gauges_publish(buffer_rows=len(_buffer.pending), dropped_total=_buffer.dropped)
    except Exception:
        logger.exception("metrics: %d finished requests could not be observed", len(records))
        return 0
    return observed


def usage_flush() -> int:
    """Write everything pending now, batch by batch; returns the rows written.

    When the database is unavailable the unwritten rows go back to the front of the buffer and the
    error propagates (the caller retries later). A batch refused for its content (a value no column
    accepts) is written row by row, dropping only the rows that cannot be stored, with an error log.
    """
    written = 0
    with _buffer.flush_lock:
        while _buffer.pending:
            written += _write(_take(FLUSH_BATCH_ROWS))
    return written


def _take(limit: int) -> list[UsageRecord]:
    batch = []
    pending = _buffer.pending
    while pending and len(batch) < limit:
        batch.append(pending.popleft())
    return batch


def _requeue(records: list[UsageRecord]) -> None:
    _buffer.pending.extendleft(reversed(records))


def _store(records: list[UsageRecord]) -> None:
    if connection.vendor == "sqlite" and monkey.is_module_patched("threading"):
        gevent.get_hub().threadpool.apply(_store_in_native_thread, (records,))
    else:
        usage_records_write(records=records)


def _store_in_native_thread(records: list[UsageRecord]) -> None:
    try:
        usage_records_write(records=records)
    finally:
        connection.close()  # this pool thread's own connection: never left open between flushes


def _write(batch: list[UsageRecord]) -> int:
    """Write one batch; on an outage put back what was not written and re-raise."""
    try:
        _store(batch)
        return len(batch)
    except RETRYABLE_ERRORS:
        _requeue(batch)
        raise
    except Exception:
        logger.warning("a request log batch was refused for its content; writing its %d rows one by one",
                       len(batch), exc_info=True)
    except BaseException:  # the worker is being killed mid-write: keep the rows for the exit flush
        _requeue(batch)
        raise
    written = 0
    for position, record in enumerate(batch):
        try:
            _store([record])
            written += 1
        except RETRYABLE_ERRORS:
            _requeue(batch[position:])
            raise
        except Exception:
            logger.exception("request log row for %s cannot be stored; dropped", record.request_id,
                             extra={"request_id": record.request_id})
        except BaseException:
            _requeue(batch[position:])
            raise
    return written


def flusher_start(*, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
    """Start this process's background flusher (once per process; a forked child starts its own)."""
    global _buffer
    if _buffer.pid != os.getpid():
        # Rows inherited through a fork belong to the parent, which writes them itself.
        _buffer = _Buffer()
    if _buffer.thread is not None and _buffer.thread.is_alive():
        return
    _buffer.interval = max(0.01, interval)
    _buffer.stopping.clear()
    _buffer.thread = threading.Thread(target=_run, name="gatehouse-usage-flusher", daemon=True)
    _buffer.thread.start()
    if not _buffer.exit_hook_registered:
        atexit.register(flusher_stop)
        _buffer.exit_hook_registered = True


def flusher_running() -> bool:
    return _buffer.thread is not None and _buffer.thread.is_alive()


def flusher_stop(*, timeout: float = 10.0) -> int:
    """Stop the flusher and write what is left (graceful shutdown); returns the rows written now.

    A database that fails here is retried a few times; rows still unwritten are reported, not hidden.
    """
    thread = _buffer.thread
    if thread is not None:
        _buffer.stopping.set()
        _buffer.wake.set()
        thread.join(timeout)
        _buffer.thread = None
    if _buffer.exit_hook_registered:
        atexit.unregister(flusher_stop)
        _buffer.exit_hook_registered = False
    metrics_observe_pending()  # before the last write, which may fail: the metrics files outlive the worker
    written = 0
    for attempt in range(1, SHUTDOWN_ATTEMPTS + 1):
        try:
            written += usage_flush()
            break
        except DatabaseError:
            logger.warning("final request log flush failed (attempt %d of %d)", attempt, SHUTDOWN_ATTEMPTS,
                           exc_info=True)
            if attempt < SHUTDOWN_ATTEMPTS:
                time.sleep(1.0)
        finally:
            _release_connection()
    if _buffer.pending:
        logger.error("%d request log rows could not be written before exit", len(_buffer.pending))
    return written


def _run() -> None:
    """Every `interval`: the metrics, then the database write, unless a failed write's retry pause is not over."""
    failures = 0
    next_write = 0.0
    while not _buffer.stopping.is_set():
        _buffer.wake.wait(_buffer.interval)
        _buffer.wake.clear()
        if _buffer.stopping.is_set():
            break
        metrics_observe_pending()
        if time.monotonic() < next_write:
            _release_connection()  # the metrics may have read the registry
            continue
        try:
            usage_flush()
            failures = 0
            next_write = 0.0
        except DatabaseError:
            failures += 1
            pause = _retry_pause(failures)
            next_write = time.monotonic() + pause
            logger.warning("request log flush failed; %d rows kept, retrying in %.0f s", len(_buffer.pending),
                           pause, exc_info=failures == 1)
        except Exception:
            failures += 1
            next_write = time.monotonic() + _retry_pause(failures)
            logger.exception("request log flush failed unexpectedly; %d rows kept", len(_buffer.pending))
        finally:
            _release_connection()


def _retry_pause(failures: int) -> float:
    """1, 2, 4 ... seconds between attempts while the database fails, at most `MAX_RETRY_PAUSE_SECONDS`."""
    return min(MAX_RETRY_PAUSE_SECONDS, RETRY_PAUSE_SECONDS * 2 ** (failures - 1))


def _release_connection() -> None:
    """Give this thread's connection back (closed, or to the pool) between flushes; never one that a
    caller still uses inside a transaction."""
    if not connection.in_atomic_block:
        connection.close()
