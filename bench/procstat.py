"""Reading CPU time, memory and per-core load from /proc (Linux), for the processes under test."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    parent: int
    cpu_seconds: float  # utime + stime
    rss_bytes: int


def read_process(pid: int) -> ProcessSample | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()
    # fields[0] is field 3 of proc(5): state; ppid is 4, utime 14, stime 15, rss 24.
    return ProcessSample(pid=pid, parent=int(fields[1]), cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                         rss_bytes=int(fields[21]) * PAGE_BYTES)


def process_tree(root: int) -> list[ProcessSample]:
    """The root process and all its descendants, as they are now."""
    samples: dict[int, ProcessSample] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            sample = read_process(int(entry))
            if sample is not None:
                samples[sample.pid] = sample
    if root not in samples:
        return []
    children: dict[int, list[int]] = {}
    for sample in samples.values():
        children.setdefault(sample.parent, []).append(sample.pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(samples[pid])
        pending.extend(children.get(pid, ()))
    return tree


@dataclass(frozen=True, slots=True)
class CoreTimes:
    """Jiffies per core: `process` is user+nice+system (what processes ran), `busy` adds irq and softirq."""

    process: dict[int, int]
    busy: dict[int, int]


def read_cores() -> CoreTimes:
    process, busy = {}, {}
    with open("/proc/stat") as handle:
        for line in handle:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *values = line.split()
            numbers = [int(value) for value in values[:8]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = numbers
            core = int(name[3:])
            process[core] = user + nice + system
            busy[core] = user + nice + system + irq + softirq + steal
    return CoreTimes(process=process, busy=busy)


@dataclass
class Watcher:
    """Samples a process tree's memory while a run goes on; CPU is taken from the start and end snapshots."""

    root: int
    interval: float = 0.25
    peak_worker_rss: int = 0
    peak_total_rss: int = 0
    worker_pids: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        tree = process_tree(self.root)
        if not tree:
            return
        workers = [sample for sample in tree if sample.pid != self.root] or tree
        self.worker_pids.update(sample.pid for sample in workers)
        self.peak_worker_rss = max(self.peak_worker_rss, max(sample.rss_bytes for sample in workers))
        self.peak_total_rss = max(self.peak_total_rss, sum(sample.rss_bytes for sample in tree))


def tree_cpu_seconds(root: int) -> tuple[float, set[int]]:
    tree = process_tree(root)
    return sum(sample.cpu_seconds for sample in tree), {sample.pid for sample in tree}


def worker_pid(root: int, wait: float = 10.0) -> int | None:
    """The first child of `root` (gunicorn's worker), waiting for it to appear; the root itself if it has none."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        tree = process_tree(root)
        children = [sample.pid for sample in tree if sample.pid != root]
        if children:
            return children[0]
        time.sleep(0.1)
    return root if process_tree(root) else None
