"""Summarising a py-spy profile of the gateway worker: shares of the request path, packages and frames."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

# ---------------------------------------------------------------------------------------------- profiles
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")
# Threads of gevent's thread pool (its DNS resolver) wait on a lock: py-spy samples them but they use no CPU.
POOL_THREAD_MARKERS = ("(gevent/threadpool.py)", "(gevent/_threading.py)")
# Where a request's time goes, as shares of the worker's busy samples: (label, on the stack, but not under).
SPANS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("gevent hub and accepting connections (no request on the stack)", (), ("AsyncWorker.handle (gunicorn",)),
    ("gunicorn: read and parse the request, write the response (outside Django and the stream generator)",
     ("AsyncWorker.handle (gunicorn",), ("WSGIHandler.__call__ (django", "_frames (proxy_api")),
    ("  of which writing stream chunks to the client", ("write_chunk (gunicorn",), ()),
    ("Django handler and middleware chain (excluding DRF and the view)", ("WSGIHandler.__call__ (django",),
     ("APIView.dispatch (rest_framework",)),
    ("DRF APIView.dispatch (excluding the view method)", ("APIView.dispatch (rest_framework",),
     ("View.post (proxy_api",)),
    ("view: authenticate, parse and validate the body", ("View.post (proxy_api",),
     ("respond (proxy_api", "respond_streaming (proxy_api")),
    ("relay and router, excluding the HTTP client and the access log",
     ("respond (proxy_api", "respond_streaming (proxy_api"),
     ("send (providers/http.py)", "_log_access (proxy_api", "read_all (providers", "relay_chunks (providers")),
    ("HTTP client above the connection pool (requests: request preparation, adapter, response objects)",
     ("send (providers/http.py)",), ("HTTPConnectionPool.urlopen (urllib3",)),
    ("urllib3 + http.client: send the upstream request, read status and headers",
     ("HTTPConnectionPool.urlopen (urllib3",), ()),
    ("reading the upstream body (plain responses)", ("read_all (providers",), ()),
    ("stream generator: upstream reads, SSE split, framing", ("_frames (proxy_api",), ("_log_access (proxy_api",)),
    ("  of which reading upstream bytes (urllib3 read1)", ("iter_raw (providers",), ()),
    ("access log line (_log_access)", ("_log_access (proxy_api",), ()),
    ("all logging calls", ("Logger._log (logging",), ()),
)


def _package(frame: str) -> str:
    match = FRAME.match(frame)
    path = match.group("file") if match else frame
    head = path.split("/", 1)[0]
    if head.endswith(".py"):
        head = head[:-3]
    return head or "?"


def summarise_profile(raw: str, top: int = 25) -> dict:
    """py-spy `--format raw` (one `frame;frame;... count` per line) to self, inclusive and span shares."""
    self_counts: Counter = Counter()
    total_counts: Counter = Counter()
    package_counts: Counter = Counter()
    span_counts: Counter = Counter()
    samples = pool_samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith(("process ", "thread "))]
        if not frames:
            continue
        if any(marker in frame for frame in frames for marker in POOL_THREAD_MARKERS):
            pool_samples += count
            continue
        samples += count
        self_counts[frames[-1]] += count
        package_counts[_package(frames[-1])] += count
        for frame in set(frames):
            total_counts[frame] += count
        joined = ";".join(frames)
        for label, inside, outside in SPANS:
            if (not inside or any(pattern in joined for pattern in inside)) and \
                    not any(pattern in joined for pattern in outside):
                span_counts[label] += count
    if not samples:
        return {"samples": 0, "pool_samples": pool_samples, "self": [], "total": [], "packages": [], "spans": []}

    def shares(counter: Counter, keep: Callable[[float], bool] = lambda share: True) -> list[tuple[str, float]]:
        ranked = [(name, count * 100.0 / samples) for name, count in counter.most_common()]
        return [(name, round(share, 1)) for name, share in ranked if keep(share)][:top]

    return {"samples": samples, "pool_samples": pool_samples, "self": shares(self_counts),
            "total": shares(total_counts, lambda share: share < 98), "packages": shares(package_counts)[:15],
            "spans": [(label, round(span_counts[label] * 100.0 / samples, 1)) for label, _, _ in SPANS]}
