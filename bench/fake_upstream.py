"""A fast fake OpenAI upstream for the benchmark: one process, stdlib asyncio, raw HTTP/1.1 keep-alive.

It must never be the bottleneck, so it does as little as a server can: requests are parsed just
enough to find the path, the body length and `"stream": true`; every answer is prepared once at
start-up; delays and stream intervals share one timing wheel instead of one timer per request.

Behaviour is chosen by the URL, so that the gateway's own deployment `api_base` carries it and a
direct call and a proxied call meet exactly the same upstream:

    /v1/chat/completions                                  defaults from the command line
    /s/<latency_ms>/<chunks>/<interval_ms>/v1/chat/completions
    /s/<latency_ms>/<chunks>/<interval_ms>/v1/embeddings

`latency_ms` delays the whole answer (plain) or the headers and first chunk (stream); a stream
sends `chunks` data events `interval_ms` apart, then `data: [DONE]`. Run it with
`python bench/fake_upstream.py --port 9100`; it prints `READY <port>` once it listens and stops on
SIGTERM/SIGINT, or by itself after `--max-seconds`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import sys
import time

STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024
MODEL = "fake-model"
CREATED = 1_700_000_000


class Wheel:
    """Many callbacks at (roughly) millisecond precision for the price of one timer.

    Thousands of streams each wanting a wake-up every 20 ms would cost one heap entry and one
    handle per chunk with `call_later`; here they land in per-slot lists and one tick runs a slot.
    Callbacks never run early; they run at most one resolution late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.001) -> None:
        self.loop = loop
        self.resolution = resolution
        self.slots: dict[int, list] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.armed_slot: int | None = None

    def call_at(self, when: float, callback, argument) -> None:
        slot = math.ceil(when / self.resolution)
        bucket = self.slots.get(slot)
        if bucket is None:
            self.slots[slot] = bucket = []
        bucket.append((callback, argument))
        if self.armed_slot is None or slot < self.armed_slot:
            self._arm(slot)

    def _arm(self, slot: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.armed_slot = slot
        self.handle = self.loop.call_at(slot * self.resolution, self._tick)

    def _tick(self) -> None:
        self.handle = None
        self.armed_slot = None
        now_slot = math.floor(self.loop.time() / self.resolution)
        for slot in sorted(slot for slot in self.slots if slot <= now_slot):
            for callback, argument in self.slots.pop(slot):
                callback(argument)
        if self.slots:
            self._arm(min(self.slots))


class Stats:
    requests = 0
    streams_completed = 0
    streams_abandoned = 0


class Answers:
    """Every byte the fake can send, built once."""

    def __init__(self, embedding_dimensions: int) -> None:
        chat = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake upstream. " * 4,
                                                  "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 24, "completion_tokens": 28, "total_tokens": 52},
            "system_fingerprint": "fp_bench",
        }
        vector = [round(((index * 7919) % 1000) / 1000.0 - 0.5, 6) for index in range(embedding_dimensions)]
        embeddings = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                      "model": MODEL, "usage": {"prompt_tokens": 8, "total_tokens": 8}}
        not_found = {"error": {"message": "No such route on the fake upstream.", "type": "invalid_request_error",
                               "param": None, "code": "not_found"}}
        self.chat = self._plain(200, _dumps(chat))
        self.embeddings = self._plain(200, _dumps(embeddings))
        self.not_found = self._plain(404, _dumps(not_found))
        self.health = self._plain(200, b'{"status":"ok"}')
        self.stream_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                            b"Transfer-Encoding: chunked\r\n")
        self._chunk_cache: dict[int, tuple[bytes, bytes, bytes]] = {}

    @staticmethod
    def _plain(status: int, body: bytes) -> tuple[bytes, bytes]:
        reason = {200: b"OK", 404: b"Not Found"}[status]
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                % (status, reason, len(body)))
        return head, body

    def stream_chunks(self, count: int) -> tuple[bytes, bytes, bytes]:
        """(first event, one middle event, last event + [DONE] + end of body), chunk-framed."""
        cached = self._chunk_cache.get(count)
        if cached is None:
            cached = (_frame(_event(delta={"role": "assistant", "content": ""}, finish=None)),
                      _frame(_event(delta={"content": "token "}, finish=None)),
                      _frame(_event(delta={}, finish="stop")) + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            self._chunk_cache[count] = cached
        return cached


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _event(*, delta: dict, finish: str | None) -> bytes:
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
             "system_fingerprint": "fp_bench", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                             "finish_reason": finish}]}
    return b"data: " + _dumps(chunk) + b"\n\n"


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def parse_behaviour(path: bytes, defaults: tuple[float, int, float]) -> tuple[float, int, float, bytes] | None:
    """(latency s, chunks, interval s, endpoint path) from `/s/<ms>/<n>/<ms>/v1/...`, or None if malformed."""
    if not path.startswith(b"/s/"):
        return (*defaults, path)
    parts = path.split(b"/", 5)
    if len(parts) < 6:
        return None
    try:
        latency, chunks, interval = float(parts[2]) / 1000.0, int(parts[3]), float(parts[4]) / 1000.0
    except ValueError:
        return None
    return latency, max(chunks, 1), interval, b"/" + parts[5]


_RECEIVE = memoryview(bytearray(256 * 1024))


class FakeUpstream(asyncio.BufferedProtocol):
    """One client connection; requests on it are answered one at a time, in order (keep-alive).

    Reads go into one shared buffer (copied out at once), so no read allocates a 256 KiB object.
    """

    answers: Answers
    wheel: Wheel
    defaults: tuple[float, int, float]

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.busy = False
        self.closing = False
        self.close_after = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.transport = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECEIVE

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(_RECEIVE[:nbytes])
        self.buffer = self.buffer + data if self.buffer else data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        while not self.busy and self.transport is not None:
            buffer = self.buffer
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._fail(b"431 Request Header Fields Too Large")
                return
            head = buffer[:head_end]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            try:
                method, target, _version = request_line.split(b" ", 2)
            except ValueError:
                self._fail(b"400 Bad Request")
                return
            lowered = head.lower()
            length = 0
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                value_end = lowered.find(b"\r\n", at + 2)
                try:
                    length = int(lowered[at + 17: value_end if value_end >= 0 else len(lowered)].strip())
                except ValueError:
                    self._fail(b"400 Bad Request")
                    return
                if length > MAX_BODY_BYTES:
                    self._fail(b"413 Content Too Large")
                    return
            elif b"\r\ntransfer-encoding:" in lowered:
                self._fail(b"411 Length Required")
                return
            end = head_end + 4 + length
            if len(buffer) < end:
                return
            body = buffer[head_end + 4: end]
            self.buffer = buffer[end:]
            self.close_after = b"\r\nconnection: close" in lowered
            Stats.requests += 1
            self._dispatch(method, target.split(b"?", 1)[0], body)

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        behaviour = parse_behaviour(path, self.defaults)
        if behaviour is None:
            self._send(*self.answers.not_found)
            return
        latency, chunks, interval, endpoint = behaviour
        if method == b"GET" and endpoint in (b"/health", b"/v1/health"):
            self._send(*self.answers.health)
            return
        if method != b"POST":
            self._send(*self.answers.not_found)
            return
        if endpoint == b"/v1/chat/completions":
            if STREAM_FLAG.search(body):
                self._stream(latency, chunks, interval)
                return
            answer = self.answers.chat
        elif endpoint == b"/v1/embeddings":
            answer = self.answers.embeddings
        else:
            answer = self.answers.not_found
        if latency > 0:
            self.busy = True
            self.wheel.call_at(time.monotonic() + latency, FakeUpstream._send_delayed, (self, answer))
        else:
            self._send(*answer)

    @staticmethod
    def _send_delayed(argument) -> None:
        protocol, answer = argument
        protocol.busy = False
        protocol._send(*answer)
        protocol._next_request()

    def _send(self, head: bytes, body: bytes) -> None:
        if self.transport is None:
            return
        if self.close_after:
            self.transport.write(head + b"Connection: close\r\n\r\n" + body)
            self.transport.close()
            self.transport = None
        else:
            self.transport.write(head + b"\r\n" + body)

    def _fail(self, status: bytes) -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            self.transport = None

    def _stream(self, latency: float, chunks: int, interval: float) -> None:
        self.busy = True
        state = [self, chunks, interval, 0, *self.answers.stream_chunks(chunks)]
        if latency > 0:
            self.wheel.call_at(time.monotonic() + latency, FakeUpstream._stream_step, state)
        else:
            FakeUpstream._stream_step(state)

    @staticmethod
    def _stream_step(state: list) -> None:
        protocol, chunks, interval, sent, first, middle, last = state
        transport = protocol.transport
        if transport is None or transport.is_closing():
            Stats.streams_abandoned += 1
            return
        if sent == 0:
            head = protocol.answers.stream_head + (b"Connection: close\r\n\r\n" if protocol.close_after else b"\r\n")
            transport.write(head + (first if chunks > 1 else b"") + (last if chunks == 1 else b""))
        elif sent < chunks - 1:
            transport.write(middle)
        else:
            transport.write(last)
        sent += 1
        if sent >= chunks:
            Stats.streams_completed += 1
            protocol.busy = False
            if protocol.close_after:
                transport.close()
                protocol.transport = None
                return
            protocol._next_request()
            return
        state[3] = sent
        protocol.wheel.call_at(time.monotonic() + interval, FakeUpstream._stream_step, state)


async def serve(arguments: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    FakeUpstream.answers = Answers(arguments.embedding_dimensions)
    FakeUpstream.wheel = Wheel(loop)
    FakeUpstream.defaults = (arguments.latency_ms / 1000.0, arguments.chunks, arguments.interval_ms / 1000.0)
    # asyncio's loop.time() is time.monotonic(): the wheel and the protocol share one clock.
    server = await loop.create_server(FakeUpstream, arguments.host, arguments.port, backlog=8192, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=arguments.max_seconds)
    except TimeoutError:
        print("fake upstream: --max-seconds reached, stopping", file=sys.stderr, flush=True)
    server.close()
    print(json.dumps({"requests": Stats.requests, "streams_completed": Stats.streams_completed,
                      "streams_abandoned": Stats.streams_abandoned}), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--embedding-dimensions", type=int, default=1536)
    parser.add_argument("--max-seconds", type=float, default=4 * 3600.0, help="stop by itself after this long")
    arguments = parser.parse_args()
    if arguments.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("BENCH_ALLOW_NON_LOOPBACK"):
        parser.error("the fake upstream listens on loopback only")
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    main()
