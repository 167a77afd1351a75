"""A small, bounded asyncio load client for what wrk cannot account for: streams and completion rates.

Two modes, each printing one JSON object on stdout:

- `stream`: opens `--concurrency` connections first, then writes one streamed request on each, all
  at once, and for every stream measures time to headers, time to first token (the first `data:`
  event), time to last byte, and whether it completed (HTTP 200, the expected number of events,
  `data: [DONE]`, no error event). Times count from the moment the request is written; the time
  to connect is reported on its own, so the client's own connection ramp neither passes for server
  latency nor stops the streams from really being concurrent.
- `closed-loop`: `--concurrency` keep-alive connections (opened first), each sending its next
  request as soon as the previous one is answered, for `--duration` seconds; then no new request
  starts and those in flight get up to `--timeout` to finish. Every request started is counted as
  completed or failed, so the completion rate is exact (wrk drops the requests still in flight when
  it stops).

Everything is bounded: connecting has `--timeout`, each request or stream has `--timeout`, and
the whole run ends within `--duration + 2 x --timeout` plus a few seconds. Standard library only.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: thousands of short connections leave no TIME_WAIT
# One receive buffer for every connection: asyncio hands it to recv_into and we copy out what arrived
# before the next read, so there is no 256 KiB allocation per read (plain Protocols pay one).
_RECEIVE = memoryview(bytearray(256 * 1024))
REST_OF_STREAM_BYTES = 256 * 1024  # larger than any benchmark stream: wake up at the close
CONNECTS_IN_FLIGHT = 256  # connection attempts at once (a SYN burst past the listen backlog costs 1 s retries)


def build_request(url: str, body: bytes, api_key: str | None, *, stream: bool, close: bool) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "User-Agent: gatehouse-bench"]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    if stream:
        lines.append("Accept: text/event-stream")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9, mean and max in milliseconds (None when there is nothing to measure)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "p999": None, "mean": None, "max": None}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
        return round(ordered[index] * 1000.0, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999),
            "mean": round(sum(ordered) / len(ordered) * 1000.0, 3), "max": round(ordered[-1] * 1000.0, 3)}


def _reset_close(transport: asyncio.Transport | None) -> None:
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    transport.close()


class _Connection(asyncio.BufferedProtocol):
    """A client connection that reads into the shared buffer and records when it came up."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.connected_at: float | None = None
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connected_at = time.perf_counter()
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECEIVE

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_RECEIVE[:nbytes]))

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.transport = None


async def connect_all(host: str, port: int, connections: list[_Connection], timeout: float) -> dict[str, int]:
    """Open every connection (a bounded number of attempts at a time); returns failures by kind."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    failures: dict[str, int] = {}
    deadline = time.perf_counter() + timeout

    async def one(connection: _Connection) -> None:
        async with gate:
            remaining = deadline - time.perf_counter()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(loop.create_connection(lambda: connection, host, port), remaining)
            except (OSError, TimeoutError) as error:
                kind = "connect_timeout" if isinstance(error, TimeoutError) else "connect"
                failures[kind] = failures.get(kind, 0) + 1

    await asyncio.gather(*(one(connection) for connection in connections))
    return failures


# ---------------------------------------------------------------------------------------------- streams
class StreamExchange(_Connection):
    """One streamed request on its own connection; only flags and timestamps are kept, never the body."""

    def __init__(self, finished: asyncio.Future) -> None:
        super().__init__()
        self.finished = finished
        self.started: float | None = None
        self.head = b""
        self.status: int | None = None
        self.headers_at: float | None = None
        self.first_token_at: float | None = None
        self.last_byte_at: float | None = None
        self.events = 0
        self.saw_done = False
        self.saw_error = False
        self.tail = b""
        self.outcome: str | None = None

    def send(self, request: bytes) -> None:
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.status is None:
            self.head += data
            cut = self.head.find(b"\r\n\r\n")
            if cut < 0:
                return
            try:
                self.status = int(self.head[9:12])
            except ValueError:
                self.status = 0
            self.headers_at = now
            data = self.head[cut + 4:]
            self.head = b""
            if not data:
                return
        self.last_byte_at = now
        scan = self.tail + data
        found = scan.count(b"data:") - self.tail.count(b"data:")
        if found and self.first_token_at is None:
            self.first_token_at = now
            self._read_rest_at_once()
        self.events += found
        if not self.saw_done and b"[DONE]" in scan:
            self.saw_done = True
        if b'{"error"' in scan:
            self.saw_error = True
        self.tail = scan[-8:]
        if self.saw_done and scan.endswith(b"0\r\n\r\n"):  # the chunked body's terminator
            self.finish("done")

    def _read_rest_at_once(self) -> None:
        """After the first token, wake up only when the server has sent everything (or closes).

        With SO_RCVLOWAT above a whole stream's size the kernel keeps the remaining events in the
        socket buffer until the server closes (the request said `Connection: close`), so the client
        spends a few reads per stream instead of one per event, and its own CPU (on the core it shares
        with the fake upstream) does not become the bottleneck that the benchmark reports.
        """
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, REST_OF_STREAM_BYTES)

    def eof_received(self):
        self.finish("done")
        return False

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.finish("done" if self.started is not None else "connect")

    def finish(self, outcome: str) -> None:
        if self.transport is not None:
            _reset_close(self.transport)
            self.transport = None
        if self.outcome is None:
            self.outcome = outcome
        if not self.finished.done():
            self.finished.set_result(None)


async def run_streams(arguments: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    parts = urlsplit(arguments.url)
    host, port = parts.hostname, parts.port or 80
    request = build_request(arguments.url, _body(arguments), arguments.api_key, stream=True, close=True)
    exchanges = [StreamExchange(loop.create_future()) for _ in range(arguments.concurrency)]
    connect_started = time.perf_counter()
    failures = await connect_all(host, port, exchanges, arguments.timeout)
    connect_seconds = time.perf_counter() - connect_started
    live = [exchange for exchange in exchanges if exchange.transport is not None and not exchange.lost]
    started = time.perf_counter()
    for exchange in live:  # every request leaves within a few milliseconds: the streams really overlap
        exchange.send(request)
    sent_seconds = time.perf_counter() - started
    if live:
        await asyncio.wait([exchange.finished for exchange in live], timeout=arguments.timeout)
        for exchange in live:
            if not exchange.finished.done():
                exchange.finish("timeout")
    wall = time.perf_counter() - started
    to_connect, to_headers, to_first, to_last = [], [], [], []
    completed = 0
    for exchange in live:
        to_connect.append(exchange.connected_at - connect_started)
        if exchange.headers_at is not None:
            to_headers.append(exchange.headers_at - exchange.started)
        if exchange.first_token_at is not None:
            to_first.append(exchange.first_token_at - exchange.started)
        if exchange.outcome != "done":
            kind = exchange.outcome
        elif exchange.status is None:
            kind = "no_response"
        elif exchange.status != 200:
            kind = f"status_{exchange.status}"
        elif exchange.saw_error:
            kind = "error_event"
        elif not exchange.saw_done or (arguments.expect_events and exchange.events != arguments.expect_events):
            kind = "truncated"
        else:
            kind = None
        if kind:
            failures[kind] = failures.get(kind, 0) + 1
            continue
        completed += 1
        to_last.append(exchange.last_byte_at - exchange.started)
    return {
        "mode": "stream", "concurrency": arguments.concurrency, "requested": arguments.concurrency,
        "completed": completed, "completion_rate": round(completed / arguments.concurrency, 6),
        "failures": failures, "connect_phase_s": round(connect_seconds, 3), "send_phase_s": round(sent_seconds, 4),
        "wall_s": round(wall, 3), "connect_ms": percentiles(to_connect),
        "time_to_headers_ms": percentiles(to_headers), "time_to_first_token_ms": percentiles(to_first),
        "time_to_last_byte_ms": percentiles(to_last),
    }


# ---------------------------------------------------------------------------------------------- closed loop
class KeepAliveConnection(_Connection):
    """A keep-alive connection answering one request at a time (Content-Length or chunked bodies)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future | None = None
        self.buffer = b""
        self.status: int | None = None
        self.remaining: int | None = None  # Content-Length of the body; None while chunked or close-delimited
        self.chunked = False
        self.server_closes = False

    def send(self, request: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer, self.status, self.remaining, self.chunked = b"", None, None, False
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.status is None:
            cut = self.buffer.find(b"\r\n\r\n")
            if cut < 0:
                return
            head = self.buffer[:cut].lower()
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.status = 0
            self.buffer = self.buffer[cut + 4:]
            self.server_closes = b"\r\nconnection: close" in head
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                end = head.find(b"\r\n", at + 2)
                self.remaining = int(head[at + 17: end if end >= 0 else len(head)].strip())
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
        if self.remaining is not None:
            if len(self.buffer) >= self.remaining:
                self._answer()
        elif self.chunked and self._chunked_complete():
            self._answer()

    def _chunked_complete(self) -> bool:
        position = 0
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return False
            size = int(buffer[position:line_end].split(b";", 1)[0], 16)
            if size == 0:
                return buffer.find(b"\r\n\r\n", line_end) >= 0
            position = line_end + 2 + size + 2
            if position > len(buffer):
                return False

    def _answer(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self.waiter is not None and not self.waiter.done():
            if self.status is not None and self.remaining is None and not self.chunked:
                self.waiter.set_result(self.status)  # a close-delimited body ended
            else:
                self.waiter.set_exception(ConnectionResetError("connection closed mid-response"))


async def closed_loop_worker(host: str, port: int, connection: KeepAliveConnection | None, request: bytes,
                             stop_at: float, timeout: float, latencies: list[float], failures: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    try:
        while time.perf_counter() < stop_at:
            if connection is None or connection.lost:
                try:
                    _, connection = await asyncio.wait_for(
                        loop.create_connection(KeepAliveConnection, host, port), timeout)
                except (OSError, TimeoutError):
                    failures["connect"] = failures.get("connect", 0) + 1
                    connection = None
                    await asyncio.sleep(0.05)
                    continue
            started = time.perf_counter()
            waiter = connection.send(request)
            try:
                status = await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                failures["timeout"] = failures.get("timeout", 0) + 1
                _reset_close(connection.transport)
                connection = None
                continue
            except ConnectionError:
                failures["read"] = failures.get("read", 0) + 1
                connection = None
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures[f"status_{status}"] = failures.get(f"status_{status}", 0) + 1
            if connection.server_closes:
                _reset_close(connection.transport)
                connection = None
    finally:
        if connection is not None:
            _reset_close(connection.transport)


async def run_closed_loop(arguments: argparse.Namespace) -> dict:
    parts = urlsplit(arguments.url)
    host, port = parts.hostname, parts.port or 80
    request = build_request(arguments.url, _body(arguments), arguments.api_key, stream=False, close=False)
    connections = [KeepAliveConnection() for _ in range(arguments.concurrency)]
    connect_started = time.perf_counter()
    failures = await connect_all(host, port, connections, arguments.timeout)
    connect_seconds = time.perf_counter() - connect_started
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + arguments.duration
    workers = [closed_loop_worker(host, port, connection if connection.transport else None, request, stop_at,
                                  arguments.timeout, latencies, failures) for connection in connections]
    await asyncio.wait_for(asyncio.gather(*workers), arguments.duration + 2 * arguments.timeout + 10)
    elapsed = time.perf_counter() - started
    failed = sum(failures.values())
    total = len(latencies) + failed
    return {
        "mode": "closed-loop", "concurrency": arguments.concurrency, "duration_s": arguments.duration,
        "connect_phase_s": round(connect_seconds, 3), "elapsed_s": round(elapsed, 3), "requested": total,
        "completed": len(latencies), "completion_rate": round(len(latencies) / total, 6) if total else 0.0,
        "failures": failures, "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies),
    }


def _body(arguments: argparse.Namespace) -> bytes:
    if arguments.body_file:
        with open(arguments.body_file, "rb") as handle:
            return handle.read()
    return arguments.body.encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["stream", "closed-loop"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", default='{"model":"bench","messages":[{"role":"user","content":"hi"}]}')
    parser.add_argument("--body-file")
    parser.add_argument("--api-key")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0, help="closed-loop: seconds of new requests")
    parser.add_argument("--timeout", type=float, default=60.0, help="connect phase, and each request or stream")
    parser.add_argument("--expect-events", type=int, default=0, help="stream: data events incl. [DONE] (0: any)")
    arguments = parser.parse_args()
    host = urlsplit(arguments.url).hostname or ""
    if host not in ("localhost", "::1") and not host.startswith("127."):
        parser.error("the bench client only targets loopback addresses")
    runner = run_streams if arguments.mode == "stream" else run_closed_loop
    result = asyncio.run(runner(arguments))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
