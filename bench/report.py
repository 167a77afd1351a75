"""Turning benchmark records into the markdown report, the target verdicts and the profile summary."""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

RESULTS_BEGIN = "<!-- bench:results:begin (written by bench/run.py; edits inside are replaced) -->"
RESULTS_END = "<!-- bench:results:end -->"
PROFILE_BEGIN = "<!-- bench:profile:begin (written by bench/run.py --profile; edits inside are replaced) -->"
PROFILE_END = "<!-- bench:profile:end -->"

DOC_HEADER = """# Gatehouse benchmarks

`make bench` (or `.venv/bin/python bench/run.py [--quick] [--profile]`) measures Gatehouse against a fast fake
OpenAI upstream, directly and through the gateway, back to back. See `bench/run.py` for what each scenario does.

"""


# ---------------------------------------------------------------------------------------------- helpers
def _get(record: dict, path: str):
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def spread(records: Iterable[dict], path: str) -> tuple[float, float] | None:
    """(min, median) of one metric over the repeats that measured it."""
    values = [value for value in (_get(record, path) for record in records) if isinstance(value, int | float)]
    if not values:
        return None
    return min(values), statistics.median(values)


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def cell(pair: tuple[float, float] | None, digits: int = 2, scale: float = 1.0) -> str:
    if pair is None:
        return "-"
    low, middle = pair[0] * scale, pair[1] * scale
    if _number(low, digits) == _number(middle, digits):
        return _number(middle, digits)
    return f"{_number(low, digits)} / {_number(middle, digits)}"


def _median(records: list[dict], path: str) -> float | None:
    pair = spread(records, path)
    return pair[1] if pair else None


def _select(records: list[dict], scenario: str, target: str, concurrency: int) -> list[dict]:
    return [record for record in records if record.get("scenario") == scenario and record.get("target") == target
            and record.get("concurrency") == concurrency and "error" not in record]


def _failures_text(records: list[dict]) -> str:
    total: Counter = Counter()
    for record in records:
        total.update(record.get("failures") or {})
    return ", ".join(f"{name} {count}" for name, count in sorted(total.items())) or "none"


def _signed(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:+,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    ratio = value / base
    if ratio >= 10:
        return f"x{ratio:,.0f}"
    return f"x{ratio:.1f}" if ratio >= 1 else f"x{ratio:.3f}"


def one_line(record: dict, route) -> str:
    """A progress line for one measured run."""
    name = f"{record['target']:9} c={record['concurrency']:<5} run {record['repeat']}:"
    cpu = f"server CPU {record['server_cpu_us_per_request']:,.0f} us/req" if record["target"] != "direct" else \
        f"fake CPU {record['fake_cpu_us_per_request'] or 0:,.0f} us/req"
    noise = record.get("other_cpu_on_gateway_core")
    noise_text = f", other load on gateway core {noise * 100:.0f}%" if noise is not None else ""
    rss = f", RSS {record['worker_rss_peak_mb']:.0f} MB" if record.get("worker_rss_peak_mb") else ""
    if record["tool"].startswith("client:stream"):
        first = record["time_to_first_token_ms"]
        last = record["time_to_last_byte_ms"]
        return (f"{name} {record['completion_rate'] * 100:.1f}% complete, TTFT p50 {first['p50']} ms p99 {first['p99']}"
                f" ms, last byte p50 {last['p50']} ms p99 {last['p99']} ms, {cpu}{rss}{noise_text}")
    latency = record["latency_ms"]
    return (f"{name} {record['requests_per_s']:,.0f} req/s, p50 {latency['p50']} ms, p99 {latency['p99']} ms, "
            f"{record['completion_rate'] * 100:.2f}% ok, {cpu}{rss}{noise_text}")


# ---------------------------------------------------------------------------------------------- tables
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _targets_in(records: list[dict]) -> list[str]:
    order = ["direct", "gatehouse", "litellm"]
    seen = {record.get("target") for record in records}
    return [name for name in order if name in seen]


def _measured_rows(scenario, records: list[dict]):
    """(concurrency, target, its records, the direct records) for every measured cell of a scenario's table."""
    for concurrency in scenario.concurrencies:
        direct = _select(records, scenario.key, "direct", concurrency)
        for target in _targets_in(records):
            chosen = _select(records, scenario.key, target, concurrency)
            if chosen:
                yield concurrency, target, chosen, direct


def _request_table(scenario, records: list[dict]) -> list[str]:
    header = ["target", "c", "req/s", "p50 ms", "p99 ms", "p50 added", "p99 added", "vs direct (p50, req/s)",
              "server CPU us/req", "worker RSS MB", "failures", "other load on gateway core"]
    rows = []
    for concurrency, target, chosen, direct in _measured_rows(scenario, records):
        is_direct = target == "direct"
        p50, p99 = _median(chosen, "latency_ms.p50"), _median(chosen, "latency_ms.p99")
        base50, base99 = _median(direct, "latency_ms.p50"), _median(direct, "latency_ms.p99")
        rps, base_rps = _median(chosen, "requests_per_s"), _median(direct, "requests_per_s")
        rows.append([
            target, str(concurrency), cell(spread(chosen, "requests_per_s"), 0),
            cell(spread(chosen, "latency_ms.p50"), 3), cell(spread(chosen, "latency_ms.p99"), 3),
            "" if is_direct else _signed(None if p50 is None or base50 is None else p50 - base50, 3),
            "" if is_direct else _signed(None if p99 is None or base99 is None else p99 - base99, 3),
            "" if is_direct else f"{_ratio(p50, base50)}, {_ratio(rps, base_rps)}",
            cell(spread(chosen, "fake_cpu_us_per_request" if is_direct else "server_cpu_us_per_request"), 0)
            + (" (fake)" if is_direct else ""),
            "" if is_direct else cell(spread(chosen, "worker_rss_peak_mb"), 0),
            _failures_text(chosen), _noise(chosen),
        ])
    return _table(header, rows)


def _closed_loop_table(scenario, records: list[dict]) -> list[str]:
    header = ["target", "c", "completed", "req/s", "p50 ms", "p99 ms", "max ms", "p99 vs direct",
              "server CPU us/req", "worker RSS MB", "failures", "other load on gateway core"]
    rows = []
    for concurrency, target, chosen, direct in _measured_rows(scenario, records):
        is_direct = target == "direct"
        rows.append([
            target, str(concurrency), cell(spread(chosen, "completion_rate"), 2, 100.0) + " %",
            cell(spread(chosen, "requests_per_s"), 0), cell(spread(chosen, "latency_ms.p50"), 1),
            cell(spread(chosen, "latency_ms.p99"), 1), cell(spread(chosen, "latency_ms.max"), 1),
            "" if is_direct else _signed(_difference(chosen, direct, "latency_ms.p99"), 1) + " ms",
            cell(spread(chosen, "fake_cpu_us_per_request" if is_direct else "server_cpu_us_per_request"), 0)
            + (" (fake)" if is_direct else ""),
            "" if is_direct else cell(spread(chosen, "worker_rss_peak_mb"), 0),
            _failures_text(chosen), _noise(chosen),
        ])
    return _table(header, rows)


def _stream_table(scenario, records: list[dict]) -> list[str]:
    header = ["target", "c", "completed", "headers p50 ms", "first token p50 ms", "first token p99 ms",
              "first token p50 added", "last byte p50 ms", "last byte p99 ms", "server CPU us/stream",
              "worker RSS MB", "failures", "other load on gateway core"]
    rows = []
    for concurrency, target, chosen, direct in _measured_rows(scenario, records):
        is_direct = target == "direct"
        rows.append([
            target, str(concurrency), cell(spread(chosen, "completion_rate"), 2, 100.0) + " %",
            cell(spread(chosen, "time_to_headers_ms.p50"), 1),
            cell(spread(chosen, "time_to_first_token_ms.p50"), 1),
            cell(spread(chosen, "time_to_first_token_ms.p99"), 1),
            "" if is_direct else _signed(_difference(chosen, direct, "time_to_first_token_ms.p50"), 1) + " ms",
            cell(spread(chosen, "time_to_last_byte_ms.p50"), 0),
            cell(spread(chosen, "time_to_last_byte_ms.p99"), 0),
            cell(spread(chosen, "fake_cpu_us_per_request" if is_direct else "server_cpu_us_per_request"), 0)
            + (" (fake)" if is_direct else ""),
            "" if is_direct else cell(spread(chosen, "worker_rss_peak_mb"), 0),
            _failures_text(chosen), _noise(chosen),
        ])
    return _table(header, rows)


def _difference(chosen: list[dict], direct: list[dict], path: str) -> float | None:
    value, base = _median(chosen, path), _median(direct, path)
    return None if value is None or base is None else value - base


def _noise(records: list[dict]) -> str:
    pair = spread(records, "other_cpu_on_gateway_core")
    if pair is None:
        return "-"
    high = max(record.get("other_cpu_on_gateway_core") or 0 for record in records)
    return f"{pair[1] * 100:.0f}% (max {high * 100:.0f}%)"


# ---------------------------------------------------------------------------------------------- verdicts
def verdicts(records: list[dict], target: str = "gatehouse") -> list[list[str]]:
    """The issue-8 targets, each with the measured figure (median of the repeats) and met / missed."""
    rows = []

    def add(figure: str, goal: str, measured: str | None, met: bool | None, margin: str = "") -> None:
        if measured is None:
            rows.append([figure, goal, "not measured in this run", "-"])
            return
        verdict = "met" if met else f"**missed**{' by ' + margin if margin else ''}"
        rows.append([figure, goal, measured, verdict])

    direct = _select(records, "a", "direct", 1)
    chosen = _select(records, "a", target, 1)
    added = _difference(chosen, direct, "latency_ms.p50") if chosen and direct else None
    add("added latency p50, concurrency 1", "<= 1.0 ms",
        None if added is None else f"{added:.3f} ms (direct {_median(direct, 'latency_ms.p50'):.3f} ms, through "
                                   f"{_median(chosen, 'latency_ms.p50'):.3f} ms)",
        added is not None and added <= 1.0, f"{added - 1.0:.2f} ms (x{added / 1.0:.1f})" if added else "")

    chosen = _select(records, "b", target, 64)
    cpu = _median(chosen, "server_cpu_us_per_request")
    rps = _median(chosen, "requests_per_s")
    add("CPU per non-stream request (c=64)", "<= 700 us (>= 1,400 req/s per core)",
        None if cpu is None else f"{cpu:,.0f} us/request; {rps:,.0f} req/s on one core "
                                 f"(CPU-bound ceiling {1e6 / cpu:,.0f} req/s)",
        cpu is not None and cpu <= 700, f"{cpu - 700:,.0f} us (x{cpu / 700:.1f})" if cpu else "")

    chosen = _select(records, "c", target, 2000)
    completion = spread(chosen, "completion_rate")
    p99 = _median(chosen, "latency_ms.p99")
    if completion is None:
        add("2000 concurrent 1-s calls", "100% complete, p99 <= 1.15 s", None, None)
    else:
        met = completion[0] >= 1.0 and p99 is not None and p99 <= 1150
        gaps = []
        if completion[0] < 1.0:
            gaps.append(f"completion {completion[0] * 100:.2f}% (min)")
        if p99 is None or p99 > 1150:
            gaps.append(f"p99 +{(p99 or 0) - 1150:,.0f} ms")
        add("2000 concurrent 1-s calls", "100% complete, p99 <= 1.15 s",
            f"{completion[1] * 100:.2f}% complete (min {completion[0] * 100:.2f}%), p99 {p99 or 0:,.0f} ms, "
            f"{_median(chosen, 'requests_per_s') or 0:,.0f} req/s", met, ", ".join(gaps))

    direct = _select(records, "d", "direct", 1000)
    chosen = _select(records, "d", target, 1000)
    completion = spread(chosen, "completion_rate")
    added = _difference(chosen, direct, "time_to_first_token_ms.p50") if chosen and direct else None
    if completion is None:
        add("1000 concurrent streams (50 x 20 ms)", "100% complete, first token added <= 15 ms p50", None, None)
    else:
        met = completion[0] >= 1.0 and added is not None and added <= 15
        gaps = []
        if completion[0] < 1.0:
            gaps.append(f"completion {completion[0] * 100:.2f}% (min)")
        if added is None or added > 15:
            gaps.append(f"first token +{(added or 0) - 15:,.1f} ms")
        add("1000 concurrent streams (50 x 20 ms)", "100% complete, first token added <= 15 ms p50",
            f"{completion[1] * 100:.2f}% complete (min {completion[0] * 100:.2f}%), first token added "
            f"{added or 0:,.1f} ms p50, last byte p50 {_median(chosen, 'time_to_last_byte_ms.p50') or 0:,.0f} ms",
            met, ", ".join(gaps))

    chosen = _select(records, "d", target, 5000)
    completion = spread(chosen, "completion_rate")
    if completion is None:
        add("5000 concurrent streams", "100% complete, RSS <= 600 MB", None, None)
    else:
        rss = max((record.get("worker_rss_peak_mb") or 0) for record in chosen)
        met = completion[0] >= 1.0 and rss <= 600
        gaps = []
        if completion[0] < 1.0:
            gaps.append(f"completion {completion[0] * 100:.2f}% (min)")
        if rss > 600:
            gaps.append(f"RSS +{rss - 600:,.0f} MB")
        add("5000 concurrent streams", "100% complete, RSS <= 600 MB",
            f"{completion[1] * 100:.2f}% complete (min {completion[0] * 100:.2f}%), worker RSS peak {rss:,.0f} MB, "
            f"last byte p50 {_median(chosen, 'time_to_last_byte_ms.p50') or 0:,.0f} ms", met, ", ".join(gaps))
    return rows


# ---------------------------------------------------------------------------------------------- report
def render(facts: dict, plan: list, records: list[dict], routes: dict, profiles: list[dict], results_path) -> str:
    lines = [f"### Run of {facts['date']} ({facts['mode']})", ""]
    lines += [
        f"- Command: `make bench` = `{facts['command'].strip()}`",
        f"- Machine: {facts['cpu']}, {facts['memory']}, {facts['os']}; Gatehouse (one gevent worker) pinned to core "
        f"{facts['gateway_core']}, the fake upstream and the load generators (wrk -t1, bench/client.py) on core "
        f"{facts['load_core']}",
        f"- Versions: Python {facts['python']}, Gatehouse {facts['gatehouse']}, "
        + ", ".join(f"{name} {version}" for name, version in facts["packages"].items()) + f"; {facts['wrk']}",
        "- Gatehouse config: called with a virtual key that has a budget and an rpm limit (cached key, admission, "
        "shared counters), request logging and spend on, access log at the default level (INFO, one line per request), "
        "router retries on (num_retries 2), SQLite, no Redis",
        f"- Load average at start {facts['loadavg_start']}, at end {facts.get('loadavg_end')}; run took "
        f"{facts.get('duration_s', 0) // 60} min {facts.get('duration_s', 0) % 60} s",
        f"- Raw results: `{results_path}` (one JSON line per measured run)",
        *[f"- {note}" for note in facts.get("notes", [])],
        "",
        "Each cell is `min / median` over the repeats (a single number when they agree). Latencies are the "
        "client's (wrk or bench/client.py); 'added' is the median through the gateway minus the median direct; "
        "'server CPU' is the gateway's user+system CPU time (gunicorn master + worker, from /proc) divided by the "
        "requests completed in the run; 'other load on gateway core' is CPU time used on the gateway's core by "
        "processes that are not part of the benchmark (other work on the machine), as a share of the run.",
        "",
    ]
    noisy = [record for record in records if (record.get("other_cpu_on_gateway_core") or 0) > 0.10]
    if noisy:
        lines += [f"**Noise:** in {len(noisy)} of {len(records)} runs other processes used more than 10% of the "
                  "gateway's core; those figures are pessimistic.", ""]
    lines += ["#### Targets (issue 8, one worker on one core)", ""]
    lines += _table(["figure", "target", "Gatehouse (median of repeats)", "verdict"], verdicts(records))
    if any(record.get("target") == "litellm" for record in records):
        lines += ["", "LiteLLM in the same run:", ""]
        lines += _table(["figure", "target", "LiteLLM (median of repeats)", "verdict"], verdicts(records, "litellm"))
    for scenario in plan:
        route = routes[scenario.route]
        lines += ["", f"#### ({scenario.key}) {scenario.title}", ""]
        if scenario.tool == "wrk":
            lines.append(f"`wrk -t1 -c<c> -d{scenario.duration:g}s`, POST /v1/{route.endpoint} ({route.latency_ms} ms "
                         f"upstream), {scenario.warmup:g} s warm-up, {scenario.repeats} repeats.")
            lines.append("")
            lines += _request_table(scenario, records)
        elif scenario.tool == "closed-loop":
            lines.append(f"bench/client.py closed-loop: <c> keep-alive connections sending back to back for "
                         f"{scenario.duration:g} s, then every request in flight is waited for (timeout "
                         f"{scenario.timeout:g} s); {route.latency_ms} ms upstream, {scenario.warmup:g} s warm-up, "
                         f"{scenario.repeats} repeats.")
            lines.append("")
            lines += _closed_loop_table(scenario, records)
        else:
            lines.append(f"bench/client.py stream: <c> connections opened first, then one streamed request written "
                         f"on each at once; {route.chunks} chunks {route.interval_ms} ms apart then `[DONE]`; "
                         f"completed = HTTP 200, every event, `[DONE]`, no error event, within {scenario.timeout:g} s; "
                         f"warm-up wave of min(c, 200), {scenario.repeats} repeats. Times count from the moment the "
                         "request is written.")
            lines.append("")
            lines += _stream_table(scenario, records)
    failed = [record for record in records if "error" in record]
    if failed:
        lines += ["", "Runs that failed outright:", ""]
        lines += [f"- ({record['scenario']}) {record['target']} c={record['concurrency']} run {record['repeat']}: "
                  f"{record['error']}" for record in failed]
    problems = sum(record.get("server_log_problems") or 0 for record in records)
    restarts = sum(1 for record in records if record.get("worker_restarted"))
    lines += ["", f"Server log lines with ERROR/CRITICAL/Traceback during measured runs: {problems}; "
                  f"runs during which the worker process changed: {restarts}."]
    return "\n".join(lines) + "\n"


def render_profiles(profiles: list[dict], facts: dict | None = None) -> str:
    lines = []
    if facts:
        lines += [f"Profiled on {facts['date']}: Gatehouse {facts['gatehouse']}, {facts['cpu']}, command "
                  f"`{facts['command'].strip()}`.", ""]
    for profile in profiles:
        lines += [f"#### Profile: {profile['label']}", "",
                  f"py-spy 200 Hz on the worker, {profile['samples']:,} samples of the worker's main thread while "
                  f"busy ({profile.get('pool_samples', 0):,} samples of idle gevent thread-pool threads left out); raw "
                  f"stacks in `{profile['path']}`.", "", "Where the time goes (share of busy samples):", ""]
        lines += _table(["part of the request path", "%"], [[label.replace("  of which", "&nbsp;&nbsp;of which"),
                                                              f"{share:.1f}"] for label, share in profile["spans"]])
        lines += ["", "Self time by package (the frame that was running):", ""]
        lines += _table(["package", "self %"], [[name, f"{share:.1f}"] for name, share in profile["packages"]])
        lines += ["", "Top frames by self time:", ""]
        lines += _table(["frame", "self %"], [[f"`{name}`", f"{share:.1f}"] for name, share in profile["self"]])
        lines += ["", "Top frames by inclusive time (frames present in >= 98% of samples left out):", ""]
        lines += _table(["frame", "inclusive %"], [[f"`{name}`", f"{share:.1f}"] for name, share in profile["total"]])
        lines.append("")
    return "\n".join(lines)


def update_doc(path: Path, markdown: str | None, profiles: list[dict], facts: dict | None = None) -> None:
    """Replace the generated blocks of the document (creating it if needed), keeping everything else.

    `markdown` None (a profile-only run) leaves the results block as it is.
    """
    text = path.read_text() if path.exists() else DOC_HEADER + f"## Latest run\n\n{RESULTS_BEGIN}\n{RESULTS_END}\n"
    if markdown is not None:
        text = _replace_block(text, RESULTS_BEGIN, RESULTS_END, markdown, "## Latest run")
    if profiles:
        text = _replace_block(text, PROFILE_BEGIN, PROFILE_END, render_profiles(profiles, facts), "## Profile")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _replace_block(text: str, begin: str, end: str, content: str, heading: str) -> str:
    begin_key, end_key = begin.split(" (")[0], end
    start = text.find(begin_key)
    stop = text.find(end_key, start + 1) if start >= 0 else -1
    if start < 0 or stop < 0:
        return text.rstrip("\n") + f"\n\n{heading}\n\n{begin}\n{content}{end}\n"
    return text[:start] + begin + "\n" + content + text[stop:]
