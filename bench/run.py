"""Gatehouse benchmark: `make bench` (or `python bench/run.py [--quick] [--profile]`).

Starts a fast fake OpenAI upstream (`fake_upstream.py`) and Gatehouse (`manage.py serve`, one gevent
worker, pinned with taskset to one core; called with a virtual key that has a budget and an rpm limit,
request logging and spend on, access log at the default level), keeps the fake and every load
generator on another core, and measures each scenario of issue 8 straight against the fake
("direct") and through Gatehouse, back to back, warmed up and repeated:

  (a) overhead     non-stream chat, 0 ms upstream, concurrency 1 and 8 (wrk): added p50/p99
  (b) throughput   non-stream chat, 0 ms upstream, concurrency 64, 20 s (wrk): req/s, CPU µs/request
  (c) realistic    1000 ms upstream, concurrency 500 and 2000 (closed-loop client): completion, p99, RSS
  (d) streaming    50 chunks 20 ms apart, concurrency 200, 1000, 5000 (stream client): completion, TTFT, RSS
  (e) embeddings   concurrency 64 (wrk)

Results: a markdown report printed and written into docs/benchmarks.md (between generated markers,
so the prose around them survives), raw JSON lines in bench/results/. With BENCH_LITELLM=<venv>
(a virtual environment where LiteLLM is installed) the same run also measures LiteLLM Proxy.
Everything targets 127.0.0.1, each run is bounded in time and count, and every process started
here is stopped on exit.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import procstat  # noqa: E402
import profile_summary  # noqa: E402
import report  # noqa: E402
from processes import (  # noqa: E402
    Processes,
    ensure_py_spy,
    ensure_wrk,
    start_fake,
    start_gatehouse,
    start_litellm,
)
from scenarios import ROUTES, Route, Scenario, Target, request_body, scenarios  # noqa: E402

REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"




# ---------------------------------------------------------------------------------------------- one run
@dataclass
class Bench:
    arguments: argparse.Namespace
    wrk: str
    workdir: Path
    fake: subprocess.Popen
    targets: list[Target]
    run_id: str
    results_file: Path
    gateway_core: int | None
    load_core: int | None
    records: list[dict] = field(default_factory=list)

    def body_file(self, route: Route, stream: bool) -> Path:
        path = self.workdir / f"body-{route.name}-{'stream' if stream else 'plain'}.json"
        if not path.exists():
            path.write_bytes(request_body(route, stream=stream))
        return path

    # -- load tools -------------------------------------------------------------------------
    def run_wrk(self, target: Target, route: Route, concurrency: int, duration: float, timeout: float) -> dict:
        command = [self.wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", f"--timeout={timeout:g}s",
                   "-s", str(BENCH_DIR / "post.lua"), target.url(route), "--",
                   str(self.body_file(route, False)), target.api_key or "-"]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=duration + timeout + 60)
        line = next((line for line in finished.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result (exit {finished.returncode}): {finished.stderr.strip()[-400:]}")
        raw = json.loads(line.split(" ", 1)[1])
        errors = raw["errors"]
        failed = errors["connect"] + errors["read"] + errors["write"] + errors["status"] + errors["timeout"]
        ok = raw["requests"] - errors["status"]
        seconds = raw["duration_us"] / 1e6
        return {
            "tool": "wrk", "requested": ok + failed, "completed": ok,
            "completion_rate": round(ok / (ok + failed), 6) if ok + failed else 0.0,
            "failures": {name: count for name, count in errors.items() if count},
            "requests_per_s": round(ok / seconds, 2) if seconds else 0.0,
            "latency_ms": {name: round(raw["latency_us"][name] / 1000.0, 3)
                           for name in ("p50", "p90", "p99", "p999", "mean", "max")},
            "wrk": raw,
        }

    def run_client(self, mode: str, target: Target, route: Route, concurrency: int, duration: float,
                   timeout: float) -> dict:
        command = [sys.executable, str(BENCH_DIR / "client.py"), mode, "--url", target.url(route),
                   "--body-file", str(self.body_file(route, mode == "stream")), "--concurrency", str(concurrency),
                   "--timeout", str(timeout), "--duration", str(duration)]
        if target.api_key:
            command += ["--api-key", target.api_key]
        if mode == "stream":
            command += ["--expect-events", str(route.chunks + 1)]
        bound = (timeout if mode == "stream" else duration + 2 * timeout) + 60
        finished = subprocess.run(command, capture_output=True, text=True, timeout=bound)
        if finished.returncode != 0:
            raise RuntimeError(f"client failed (exit {finished.returncode}): {finished.stderr.strip()[-600:]}")
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        result["tool"] = f"client:{mode}"
        return result

    def load(self, scenario: Scenario, target: Target, concurrency: int, duration: float) -> dict:
        route = ROUTES[scenario.route]
        if scenario.tool == "wrk":
            return self.run_wrk(target, route, concurrency, duration, scenario.timeout)
        return self.run_client(scenario.tool, target, route, concurrency, duration, scenario.timeout)

    # -- measured run -----------------------------------------------------------------------
    def measure(self, scenario: Scenario, target: Target, concurrency: int, repeat: int | None) -> dict | None:
        """One run of the load with CPU, memory and machine-noise accounting; repeat None is a warm-up."""
        if not target.alive or self.fake.poll() is not None:
            raise RuntimeError(f"{target.name} or the fake upstream is not running any more")
        duration = scenario.warmup if repeat is None else scenario.duration
        watched = target.process.pid if target.process else self.fake.pid
        watcher = procstat.Watcher(watched).start()
        target.new_log_problems()
        cpu_before, pids_before = procstat.tree_cpu_seconds(watched)
        fake_before = procstat.read_process(self.fake.pid)
        cores_before = procstat.read_cores()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = os.getloadavg()
        started = time.monotonic()
        try:
            result = self.load(scenario, target, concurrency, duration)
        finally:
            elapsed = time.monotonic() - started
            watcher.stop()
        cpu_after, pids_after = procstat.tree_cpu_seconds(watched)
        fake_after = procstat.read_process(self.fake.pid)
        cores_after = procstat.read_cores()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if repeat is None:
            return None
        server_cpu = cpu_after - cpu_before
        fake_cpu = fake_after.cpu_seconds - fake_before.cpu_seconds if fake_after and fake_before else None
        load_cpu = ((children_after.ru_utime + children_after.ru_stime)
                    - (children_before.ru_utime + children_before.ru_stime))
        completed = max(1, result.get("completed") or 0)
        record = {
            "run_id": self.run_id, "scenario": scenario.key, "title": scenario.title, "target": target.name,
            "concurrency": concurrency, "repeat": repeat, "elapsed_s": round(elapsed, 3), **result,
            "server_cpu_s": round(server_cpu, 3),
            "server_cpu_us_per_request": round(server_cpu / completed * 1e6, 1),
            "server_cpu_utilisation": round(server_cpu / elapsed, 3),
            "fake_cpu_s": round(fake_cpu, 3) if fake_cpu is not None else None,
            "fake_cpu_us_per_request": round(fake_cpu / completed * 1e6, 1) if fake_cpu is not None else None,
            "load_generator_cpu_s": round(load_cpu, 3),
            "worker_rss_peak_mb": round(watcher.peak_worker_rss / 2**20, 1) if target.process else None,
            "server_rss_peak_mb": round(watcher.peak_total_rss / 2**20, 1) if target.process else None,
            "worker_restarted": bool(target.process) and pids_before != pids_after,
            "server_log_problems": target.new_log_problems(),
            "loadavg_before": [round(value, 2) for value in load_before],
            "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        }
        record.update(self.core_noise(cores_before, cores_after, elapsed, server_cpu if target.process else 0.0,
                                      (fake_cpu or 0.0) + load_cpu))
        self.records.append(record)
        with self.results_file.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return record

    def core_noise(self, before: procstat.CoreTimes, after: procstat.CoreTimes, elapsed: float,
                   gateway_cpu: float, load_side_cpu: float) -> dict:
        """CPU used on each pinned core by processes other than ours: other people's work skews the figures."""
        if self.gateway_core is None or self.load_core is None:
            return {}
        ticks = procstat.CLOCK_TICKS

        def used(core: int) -> float:
            return (after.process[core] - before.process[core]) / ticks

        return {
            "other_cpu_on_gateway_core": round(max(0.0, used(self.gateway_core) - gateway_cpu) / elapsed, 3),
            "other_cpu_on_load_core": round(max(0.0, used(self.load_core) - load_side_cpu) / elapsed, 3),
            "gateway_core_busy": round((after.busy[self.gateway_core] - before.busy[self.gateway_core])
                                       / ticks / elapsed, 3),
            "load_core_busy": round((after.busy[self.load_core] - before.busy[self.load_core]) / ticks / elapsed, 3),
        }

    def run_scenario(self, scenario: Scenario) -> None:
        route = ROUTES[scenario.route]
        for concurrency in scenario.concurrencies:
            print(f"\n({scenario.key}) {scenario.title}: concurrency {concurrency}", flush=True)
            for target in self.targets:
                if scenario.tool == "stream":
                    self.measure(scenario, target, min(concurrency, 200), None)
                elif scenario.warmup:
                    self.measure(scenario, target, concurrency, None)
                self.settle()
            for repeat in range(1, scenario.repeats + 1):
                for target in self.targets:
                    try:
                        record = self.measure(scenario, target, concurrency, repeat)
                    except (RuntimeError, subprocess.TimeoutExpired) as error:
                        print(f"  {target.name:9} run {repeat}: FAILED {error}", flush=True)
                        self.records.append({"run_id": self.run_id, "scenario": scenario.key, "target": target.name,
                                             "concurrency": concurrency, "repeat": repeat, "error": str(error)})
                        continue
                    print("  " + report.one_line(record, route), flush=True)
                    self.settle()

    def settle(self) -> None:
        time.sleep(0.3 if self.arguments.quick else 1.0)

    # -- profile ----------------------------------------------------------------------------
    def profile(self, target: Target, py_spy: str, seconds: float) -> list[dict]:
        """py-spy on the worker while it serves (1) plain chat at concurrency 64, (2) 1000 concurrent streams."""
        worker = procstat.worker_pid(target.process.pid)
        profiles = []
        for label, scenario, concurrency in (
            ("plain chat, wrk c=64, 0 ms upstream", Scenario("b", "throughput", "wrk", "fast", (64,), seconds + 4, 0,
                                                               1, 10), 64),
            ("streams, 1000 concurrent x 50 chunks x 20 ms", Scenario("d", "streaming", "stream", "fast", (1000,), 0,
                                                                      0, 1, 120, stream=True),
             200 if self.arguments.quick else 1000),
        ):
            output = self.workdir / f"py-spy-{len(profiles)}.txt"
            spy = subprocess.Popen([py_spy, "record", "--pid", str(worker), "--duration", str(round(seconds)),
                                    "--rate", "200", "--format", "raw", "--nolineno", "--output", str(output)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)  # let py-spy attach before the load starts
            if scenario.tool == "stream":
                # Waves back to back until py-spy is done, so the samples cover streaming only.
                waves_until = time.monotonic() + seconds
                while time.monotonic() < waves_until and spy.poll() is None:
                    self.load(scenario, target, concurrency, 0)
            else:
                self.load(scenario, target, concurrency, scenario.duration)
            try:
                _, errors = spy.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, errors = spy.communicate()
            if not output.exists():
                print(f"py-spy produced nothing for '{label}': {errors.strip()[-400:]}")
                continue
            saved = RESULTS_DIR / f"{self.run_id}-profile-{len(profiles) + 1}.txt"
            shutil.copyfile(output, saved)
            profiles.append({"label": label, "path": str(saved.relative_to(REPO_ROOT)),
                             **profile_summary.summarise_profile(output.read_text())})
            self.settle()
        return profiles


# ---------------------------------------------------------------------------------------------- main
def machine_facts(wrk: str, targets: list[Target]) -> dict:
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "-"

    cpu_model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu_model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    memory = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        memory = f"{int(handle.readline().split()[1]) / 2**20:.1f} GiB"
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    commit = git_commit()
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu_model}, {os.cpu_count()} cores", "memory": memory,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "gatehouse": f"{version('gatehouse') if version('gatehouse') != '-' else '0.1.0'} (commit {commit}"
                     f"{', with uncommitted changes' if dirty else ''})",
        "packages": {name: version(name) for name in ("Django", "gunicorn", "gevent", "requests", "urllib3", "orjson")},
        "wrk": wrk_version.strip(), "notes": [note for target in targets for note in target.notes], "commit": commit,
    }


def git_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, timeout=10).stdout.strip() or "?"


def _terminate(signum, frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark Gatehouse against a fake upstream (issue 8).")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short, small concurrencies (~2 min)")
    parser.add_argument("--scenarios", default="abcde",
                        help="which of a b c d e to run (default: all; 'none' with --profile: profile only)")
    parser.add_argument("--repeats", type=int, help="measured runs per scenario and concurrency (default 3, quick 2)")
    parser.add_argument("--profile", action="store_true", help="also profile the worker with py-spy under load")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--doc", default=str(DOC_PATH), help="markdown file to update ('-' to skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, server logs)")
    arguments = parser.parse_args()
    if platform.system() != "Linux":
        raise SystemExit("the benchmark reads /proc and uses taskset: it runs on Linux only")

    cores = sorted(os.sched_getaffinity(0))
    gateway_core = load_core = None
    if len(cores) >= 2 and shutil.which("taskset"):
        gateway_core, load_core = cores[0], cores[1]
        os.sched_setaffinity(0, {load_core})  # the fake, wrk and the clients inherit the load core
    else:
        print("warning: fewer than 2 usable cores (or no taskset): processes are not pinned", flush=True)
    wrk = ensure_wrk()
    py_spy = ensure_py_spy() if arguments.profile else None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    results_file = RESULTS_DIR / f"{run_id}.jsonl"
    workdir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    processes = Processes()
    signal.signal(signal.SIGTERM, _terminate)  # run the cleanup below on SIGTERM too
    started = time.monotonic()
    try:
        fake, fake_port = start_fake(processes, workdir)
        direct = Target("direct", f"http://127.0.0.1:{fake_port}", "sk-bench-direct", direct=True)
        print(f"fake upstream on 127.0.0.1:{fake_port} (core {load_core}); starting Gatehouse (core {gateway_core})",
              flush=True)
        targets = [direct, start_gatehouse(processes, workdir, fake_port, gateway_core)]
        if os.environ.get("BENCH_LITELLM"):
            targets.append(start_litellm(processes, workdir, fake_port, gateway_core,
                                         Path(os.environ["BENCH_LITELLM"]).expanduser().resolve()))
        facts = machine_facts(wrk, targets)
        facts.update({"command": "python bench/run.py " + " ".join(sys.argv[1:]), "mode": "quick" if arguments.quick
                      else "full", "gateway_core": gateway_core, "load_core": load_core,
                      "loadavg_start": [round(value, 2) for value in os.getloadavg()]})
        bench = Bench(arguments, wrk, workdir, fake, targets, run_id, results_file, gateway_core, load_core)
        selected = set() if arguments.scenarios == "none" else set(arguments.scenarios.replace(",", ""))
        plan = [scenario for scenario in scenarios(arguments.quick, arguments.repeats) if scenario.key in selected]
        for scenario in plan:
            bench.run_scenario(scenario)
        profiles = []
        if py_spy:
            print("\nprofiling the Gatehouse worker with py-spy", flush=True)
            profiles = bench.profile(targets[1], py_spy, arguments.profile_seconds)
        facts["loadavg_end"] = [round(value, 2) for value in os.getloadavg()]
        if git_commit() != facts["commit"]:
            facts["notes"].append(f"the checkout moved from commit {facts['commit']} to {git_commit()} during the run "
                                  "(processes started before that kept the code they had loaded)")
        facts["duration_s"] = round(time.monotonic() - started)
        with results_file.open("a") as handle:
            handle.write(json.dumps({"run_id": run_id, "summary": True, "facts": facts, "profiles": profiles}) + "\n")
        markdown = None
        if plan:
            markdown = report.render(facts, plan, bench.records, ROUTES, profiles,
                                     results_file.relative_to(REPO_ROOT))
            print("\n" + markdown)
        if profiles:
            print("\n" + report.render_profiles(profiles, facts))
        if arguments.doc != "-":
            report.update_doc(Path(arguments.doc), markdown, profiles, facts)
            print(f"\nwritten: {arguments.doc} and {results_file.relative_to(REPO_ROOT)}")
    finally:
        processes.stop_all()
        if arguments.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
