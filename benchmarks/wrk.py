"""wrk as the load generator where the rate is high (thousands of requests/s): a C event loop costs the 2-core
machine far less CPU per request than Locust, so the server, not the generator, is what is measured.

Closed loop: ``connections`` clients, each sending its next request when the previous answer arrived. The
request bodies cycle through the given texts. The Lua ``done`` hook prints one JSON line with the counts and
latency percentiles, parsed here.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.systems import System

_MARKER = "WRK_RESULT "

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
%(bodies)s
}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%(marker)s{"requests": %%d, "duration_us": %%d, "status_errors": %%d, "connect_errors": %%d, '
    .. '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, '
    .. '"max_us": %%d}\\n', summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    requests: int
    errors: int  # non-2xx answers + socket errors + timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(runs: list[WrkResult]) -> dict:
    """Repeated runs of one configuration: the median run (by RPS), the range of RPS, and every run."""
    median = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    return {"median": median.as_dict(), "rps_range": [min(r.rps for r in runs), max(r.rps for r in runs)],
            "runs": [r.as_dict() for r in runs]}


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk not found: install it (Debian/Ubuntu: apt-get install -y wrk)")
    return binary


def _lua_string(text: str) -> str:
    body = json.dumps({"text": text})
    level = "=" * 4
    if f"]{level}]" in body:
        raise ValueError("text contains the Lua long-string terminator")
    return f"[{level}[{body}]{level}]"


def run_wrk(url: str, texts: list[str], connections: int, duration_s: int, *, threads: int = 1,
            timeout_s: int = 10) -> WrkResult:
    """POST ``{"text": ...}`` bodies to ``url`` for ``duration_s`` seconds (wrk counts whole seconds) over
    ``connections`` connections."""
    if duration_s < 1:
        raise ValueError("wrk runs for whole seconds: duration_s must be >= 1")
    script = _SCRIPT % {"bodies": ",\n".join(_lua_string(t) for t in texts), "marker": _MARKER}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = Path(f.name)
    try:
        out = subprocess.run(
            [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s}s",
             "-s", str(path), url],
            capture_output=True, text=True, timeout=duration_s + timeout_s + 30,
        )
    finally:
        path.unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(_MARKER)), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[len(_MARKER):])
    errors = r["status_errors"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return WrkResult(rps=r["requests"] / (r["duration_us"] / 1e6), requests=r["requests"], errors=errors,
                     p50_ms=r["p50_us"] / 1000, p90_ms=r["p90_us"] / 1000, p99_ms=r["p99_us"] / 1000,
                     max_ms=r["max_us"] / 1000)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_with_wrk(system: System, texts: list[str], connections: int, duration_s: int, repeats: int) -> dict:
    """``repeats`` closed-loop runs against ``system``'s /predict: the median run (by RPS), and where the cores' time
    went meanwhile (medians over the runs, % of one core): each of its processes, the client (wrk), and for the
    batched service its worker's time per phase (% of the worker's wall time, from its heartbeat) and the mean texts
    per forward pass."""
    runs: list[WrkResult] = []
    cpu_runs: list[dict[str, float]] = []
    phase_runs: list[dict[str, float]] = []
    passes0 = system.pass_counts()
    for _ in range(repeats):
        cpu0, phases0, client0, started = system.cpu(), system.worker_profile(), _children_cpu_s(), time.time()
        runs.append(run_wrk(f"{system.url}/predict", texts, connections, duration_s))
        elapsed = time.time() - started
        cpu1, phases1 = system.cpu(), system.worker_profile()
        cpu = {role: 100 * (cpu1[role] - cpu0[role]) / elapsed for role in cpu0}
        cpu["client (wrk)"] = 100 * (_children_cpu_s() - client0) / elapsed
        cpu_runs.append(cpu)
        phase_runs.append({k: 100 * (phases1[k] - phases0.get(k, 0.0)) / elapsed for k in phases1})
    summary = summarize(runs)
    median = summary["median"]
    texts, passes = (now - before for now, before in zip(system.pass_counts(), passes0))
    per_pass = {"texts_per_pass": texts / passes} if passes else {}  # the batched service's passes under load
    return {**median, **per_pass, "rps_range": summary["rps_range"], "failures": sum(r.errors for r in runs),
            "repeats": repeats, "runs": summary["runs"],
            "cpu_pct": {role: statistics.median(c[role] for c in cpu_runs) for role in cpu_runs[0]},
            "worker_phases_pct": {k: statistics.median(p[k] for p in phase_runs) for k in phase_runs[0]}
            if phase_runs and phase_runs[0] else {}}
