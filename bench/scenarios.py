"""What the benchmark measures: the upstream routes, the scenarios of issue 8 and the targets called."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Route:
    """An upstream behaviour; it becomes one model group on the gateway and one URL prefix on the fake."""

    name: str
    latency_ms: int
    chunks: int
    interval_ms: int
    endpoint: str  # "chat/completions" or "embeddings"

    @property
    def model(self) -> str:
        return f"bench-{self.name}"

    def fake_prefix(self) -> str:
        return f"/s/{self.latency_ms}/{self.chunks}/{self.interval_ms}/v1"


ROUTES = {
    "fast": Route("fast", 0, 50, 20, "chat/completions"),
    "slow": Route("slow", 1000, 50, 20, "chat/completions"),
    "embed": Route("embed", 0, 1, 0, "embeddings"),
}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    tool: str  # "wrk", "closed-loop" or "stream"
    route: str
    concurrencies: tuple[int, ...]
    duration: float  # seconds of load per measured run (wrk, closed-loop)
    warmup: float
    repeats: int
    timeout: float  # per request / per stream
    stream: bool = False


def scenarios(quick: bool, repeats: int | None) -> list[Scenario]:
    if quick:
        plan = [
            Scenario("a", "overhead", "wrk", "fast", (1, 8), 2, 1, 2, 10),
            Scenario("b", "throughput", "wrk", "fast", (64,), 3, 1, 2, 10),
            Scenario("c", "realistic (1000 ms upstream)", "closed-loop", "slow", (200,), 2, 1.5, 2, 15),
            Scenario("d", "streaming (50 chunks x 20 ms)", "stream", "fast", (50, 200), 0, 0, 2, 30, stream=True),
            Scenario("e", "embeddings", "wrk", "embed", (64,), 2, 1, 2, 10),
        ]
    else:
        plan = [
            Scenario("a", "overhead", "wrk", "fast", (1, 8), 10, 3, 3, 10),
            Scenario("b", "throughput", "wrk", "fast", (64,), 20, 3, 3, 10),
            Scenario("c", "realistic (1000 ms upstream)", "closed-loop", "slow", (500, 2000), 15, 3, 3, 30),
            Scenario("d", "streaming (50 chunks x 20 ms)", "stream", "fast", (200, 1000, 5000), 0, 0, 3, 120,
                     stream=True),
            Scenario("e", "embeddings", "wrk", "embed", (64,), 10, 3, 3, 10),
        ]
    if repeats:
        plan = [dataclasses.replace(scenario, repeats=repeats) for scenario in plan]
    return plan


# ---------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """Something the load is sent to: the fake itself, Gatehouse, or LiteLLM."""

    name: str
    base: str  # scheme://host:port
    api_key: str | None
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    log_offset: int = 0
    direct: bool = False
    notes: list[str] = field(default_factory=list)

    def url(self, route: Route) -> str:
        prefix = route.fake_prefix() if self.direct else "/v1"
        return f"{self.base}{prefix}/{route.endpoint}"

    @property
    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def new_log_problems(self) -> int:
        """Lines of the server log written since the last call that report an error or a traceback."""
        if self.log_path is None or not self.log_path.exists():
            return 0
        with self.log_path.open("rb") as handle:
            handle.seek(self.log_offset)
            text = handle.read()
            self.log_offset = handle.tell()
        return len(re.findall(rb"(?m)( ERROR | CRITICAL |^Traceback)", text))


def request_body(route: Route, *, stream: bool) -> bytes:
    if route.endpoint == "embeddings":
        body = {"model": route.model, "input": "The quick brown fox jumps over the lazy dog.",
                "encoding_format": "float"}
    else:
        body = {"model": route.model, "max_tokens": 64, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."}]}
        if stream:
            body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()
