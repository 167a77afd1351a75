"""Gateway-executed batch parts: the part's lines sent through the router by the worker itself.

One part runs its remaining lines (those without a `BatchLineResult`: a part resumed after a crash
starts where the dead worker's last write ended) with bounded concurrency in plain threads (the
worker is not gevent-patched): `GATEWAY_BATCH_CONCURRENCY` lines at once, or the deployment's own
`model_info.batch_concurrency`. Each line is one routed call, preferring the part's deployment; the
router honours every deployment's rpm/tpm, and a 429 (our limits or the provider's, once the
router's retries are spent) is waited out and the line tried again rather than failed, until the
batch's window ends. Any other error is the line's answer and goes to the error file.

Only the part's own thread touches the part's rows: it gathers finished lines and records them
(`results.line_results_write`, under the lease) every half second or 50 lines, renews the lease as
it goes, and before starting lines reads the batch's state (at most ten times a second): `cancelling`
or a worker stopping means no new line starts while those in flight finish and are recorded; a batch
past its window records every line not yet done as `batch_expired`. A lost lease stops everything at
once, writing nothing more.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connections
from django.utils import timezone

from batches.choices import BatchStatus, PartStatus
from batches.leases import lease_locked, lease_release, lease_renew, lease_seconds
from batches.models import BatchLineResult, BatchPart
from batches.results import BatchOwner, LineOutcome, failure_line, line_results_write, success_line
from files_registry.batch_input import BATCH_ENDPOINTS, BatchRequest, batch_requests
from files_registry.storage import stored_bytes_open
from keys.usage import usage_from_body
from models_registry.drop_params import fit_params
from models_registry.router import route
from models_registry.snapshot import current_snapshot
from providers.errors import GatewayError, RateLimitError, UpstreamRateLimitError

logger = logging.getLogger("gatehouse.batches")

# Set by the worker on SIGTERM: parts start no new line, record what is in flight and give their lease back.
STOPPING = threading.Event()

WRITE_EVERY_SECONDS = 0.5
WRITE_EVERY_LINES = 50
# The batch's state is read at most this often, before lines start: a cancel stops new lines within it.
CHECK_EVERY_SECONDS = 0.1
# The part's thread wakes at least this often to write, renew its lease and look at the batch's state.
WAKE_EVERY_SECONDS = 0.25
EXPIRED_WRITE_CHUNK = 500
RATE_LIMIT_BACKOFF_SECONDS = 0.5
RATE_LIMIT_BACKOFF_MAX_SECONDS = 10.0
ADAPTER_METHODS = {"chat": "chat", "completions": "completion", "embeddings": "embedding"}
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."

STOPPED = "stopped"


def gateway_part_run(*, part: BatchPart, owner: str, charge_to: BatchOwner) -> bool:
    """Run the part's remaining lines; True when the part is finished (its status set, lease released),
    False when it stopped early for the worker's shutdown (lease released: the part must be queued again).
    Raises `LeaseLostError` when another worker took the part over."""
    return _PartRun(part, owner, charge_to).run()


def part_concurrency(deployment_id: str) -> int:
    """Lines of one part in flight at once: the deployment's `model_info.batch_concurrency`, else the setting."""
    deployment = current_snapshot().by_id.get(deployment_id)
    configured = deployment.model_info.get("batch_concurrency") if deployment is not None else None
    if isinstance(configured, int) and not isinstance(configured, bool) and configured > 0:
        return configured
    return max(1, int(settings.GATEWAY_BATCH_CONCURRENCY))


class _PartRun:
    def __init__(self, part: BatchPart, owner: str, charge_to: BatchOwner) -> None:
        self.part = part
        self.batch = part.batch
        self.owner = owner
        self.charge_to = charge_to
        self.operation = BATCH_ENDPOINTS[self.batch.endpoint]
        self.method = ADAPTER_METHODS[self.operation]
        self.prefer = frozenset({part.deployment_id})
        self.pending: list[LineOutcome] = []
        self.halt = threading.Event()  # line threads: stop waiting out rate limits, start nothing new
        self.last_write = time.monotonic()
        self.last_renew = time.monotonic()
        self.last_check = 0.0
        self.stop_reason: str | None = None

    # -- the part's own thread ---------------------------------------------------------------
    def run(self) -> bool:
        concurrency = part_concurrency(self.part.deployment_id)
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"batch-part-{self.part.id}")
        try:
            while self.stop_reason is None:
                if not self._round(executor, concurrency):
                    break
        except BaseException:
            self.halt.set()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
        return self._finish()

    def _round(self, executor: ThreadPoolExecutor, concurrency: int) -> bool:
        """Run every line without a result once; False when there was none left to run."""
        requests = self._remaining()
        in_flight: set[Future] = set()
        started = 0
        exhausted = False
        try:
            while True:
                self._check()
                while self.stop_reason is None and not exhausted and len(in_flight) < concurrency:
                    request = next(requests, None)
                    if request is None:
                        exhausted = True
                        break
                    in_flight.add(executor.submit(self._line, request))
                    started += 1
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, timeout=WAKE_EVERY_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if outcome is not None:
                        self.pending.append(outcome)
                self._write(force=False)
        finally:
            requests.close()
        self._write(force=True)
        return started > 0

    def _remaining(self) -> Iterator[BatchRequest]:
        """The part's lines without a result yet, in input order, read lazily from the stored input."""
        part = self.part
        last = part.first_line + part.line_count
        done = set(BatchLineResult.objects.filter(batch_id=part.batch_id, line__gte=part.first_line, line__lt=last)
                   .values_list("line", flat=True))
        with stored_bytes_open(self.batch.input_file.stored_name) as handle:
            for request in batch_requests(handle):
                if request.index >= last:
                    return
                if request.index >= part.first_line and request.index not in done:
                    yield request

    def _check(self) -> None:
        """At most every `CHECK_EVERY_SECONDS`: the worker stopping, the batch cancelled or past its window."""
        now = time.monotonic()
        if self.stop_reason is not None or now - self.last_check < CHECK_EVERY_SECONDS:
            return
        self.last_check = now
        if STOPPING.is_set():
            self._stop(STOPPED)
            return
        row = type(self.batch).objects.filter(id=self.batch.id).values("status", "expires_at").first()
        if row is None or row["status"] != BatchStatus.IN_PROGRESS:
            self._stop(PartStatus.CANCELLED)
        elif timezone.now() >= row["expires_at"]:
            self._stop(PartStatus.EXPIRED)

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.halt.set()

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        due = len(self.pending) >= WRITE_EVERY_LINES or now - self.last_write >= WRITE_EVERY_SECONDS
        if self.pending and (force or due):
            outcomes, self.pending = self.pending, []
            line_results_write(part=self.part, owner=self.owner, outcomes=outcomes, charge_to=self.charge_to)
            self.last_write = now
        if now - self.last_renew >= lease_seconds() / 3:
            lease_renew(part=self.part, owner=self.owner)
            self.last_renew = now

    def _finish(self) -> bool:
        if self.stop_reason == STOPPED:
            lease_release(part=self.part, owner=self.owner)
            logger.info("batch part %s stopped for the worker's shutdown; to be queued again", self.part.id)
            return False
        status = self.stop_reason or PartStatus.DONE
        if status == PartStatus.EXPIRED:
            self._expire_remaining()
        now = timezone.now()
        with lease_locked(part=self.part, owner=self.owner):
            BatchPart.objects.filter(id=self.part.id).update(status=status, finished_at=now, lease_owner="",
                                                             lease_expires_at=None, updated_at=now)
        logger.info("batch part %s finished: %s", self.part.id, status)
        return True

    def _expire_remaining(self) -> None:
        """Every line still without a result ends as `batch_expired` (the ones done are kept)."""
        requests = self._remaining()
        chunk: list[LineOutcome] = []
        for request in requests:
            chunk.append(LineOutcome(
                line=request.index, custom_id=request.custom_id, succeeded=False, operation=self.operation,
                status_code=0, error_type="batch_expired", started_at=time.time(),
                output=failure_line(custom_id=request.custom_id, code="batch_expired", message=EXPIRED_MESSAGE)))
            if len(chunk) >= EXPIRED_WRITE_CHUNK:
                line_results_write(part=self.part, owner=self.owner, outcomes=chunk, charge_to=self.charge_to)
                lease_renew(part=self.part, owner=self.owner)
                chunk = []
        line_results_write(part=self.part, owner=self.owner, outcomes=chunk, charge_to=self.charge_to)

    # -- line threads ---------------------------------------------------------------------------
    def _line(self, request: BatchRequest) -> LineOutcome | None:
        """One line's outcome, or None when it was abandoned unsent (halted while waiting out a 429)."""
        try:
            attempt = 0
            while not self.halt.is_set():
                try:
                    return self._call(request)
                except (RateLimitError, UpstreamRateLimitError) as error:
                    attempt += 1
                    pause = error.retry_after if getattr(error, "retry_after", None) else min(
                        RATE_LIMIT_BACKOFF_SECONDS * 2 ** (attempt - 1), RATE_LIMIT_BACKOFF_MAX_SECONDS)
                    self.halt.wait(pause)
                except GatewayError as error:
                    return self._failure(request, error)
                except Exception:
                    logger.exception("batch %s line %d failed unexpectedly", self.batch.id, request.index)
                    return self._failure(request, GatewayError("The gateway failed to run this request."))
            return None
        finally:
            _release_connections()

    def _call(self, request: BatchRequest) -> LineOutcome:
        request_id = new_line_request_id()
        started_at = time.time()
        clock = time.monotonic()
        body = request.body

        def attempt(deployment, target, deadline, first_chunk_timeout):
            payload = fit_params(deployment, body, request_id)
            return getattr(deployment.adapter, self.method)(target, payload, deadline)

        result, outcome = route(model_group=self.batch.model_group, operation=self.operation, call=attempt,
                                prefer_deployments=self.prefer)
        parsed = result.parsed
        usage = usage_from_body(parsed)
        deployment = outcome.deployment
        cost = deployment.prices.cost(usage.prompt_tokens, usage.completion_tokens)
        outcome.finish(total_tokens=usage.total_tokens)
        return LineOutcome(
            line=request.index, custom_id=request.custom_id, succeeded=True, operation=self.operation,
            output=success_line(custom_id=request.custom_id, status_code=200, request_id=request_id, body=parsed),
            status_code=200, deployment_id=deployment.id, provider=deployment.provider,
            provider_model=deployment.provider_model, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, cost=cost, started_at=started_at,
            latency_ms=(time.monotonic() - clock) * 1000, attempts=outcome.attempts)

    def _failure(self, request: BatchRequest, error: GatewayError) -> LineOutcome:
        request_id = new_line_request_id()
        return LineOutcome(
            line=request.index, custom_id=request.custom_id, succeeded=False, operation=self.operation,
            output=failure_line(custom_id=request.custom_id, status_code=error.status_code, request_id=request_id,
                                body=error.envelope()),
            status_code=error.status_code, error_type=type(error).__name__, started_at=time.time())


def new_line_request_id() -> str:
    """The request id of one line's call, shaped like the ids of the gateway's own calls."""
    return "req_" + secrets.token_hex(12)


def _release_connections() -> None:
    """A line thread's database connections (the registry's version check) are closed when its line ends:
    threads come and go, and their connections would otherwise stay open until the process ends."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
