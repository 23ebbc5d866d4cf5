"""``python -m benchmarks.hostile``: hostile 1 MiB bodies against the real API, and what each costs everyone else.

Redis and the API as real processes (harness/), with ``--workers`` simulated workers (default none: every body here
is refused before anything is queued). Each body is about 1 MiB (the default MAX_BODY_BYTES) and is built to be
costly to read: an Open Inference Protocol binary tensor of 262,000 empty elements under shape [1], the same count
as JSON, JSON lists in Triton's free-form parameters, a TEI batch of ``[""]`` items, the Inference API's and our
batch shapes, lists nested ever deeper. While each is sent, another connection polls ``/healthz`` every ~2 ms.
Reported per body (median of the repeats, and the worst): the status, the time to it, the API process's CPU,
the longest a ``/healthz`` in flight meanwhile waited, and how far the API's peak RSS rose above its RSS before.

    python -m benchmarks.hostile            # 10 repeats per body, 1 simulated worker
    python -m benchmarks.hostile --quick    # 5 repeats, no worker (the suite runs it)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import httpx

from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from harness.processes import ROOT, RedisServer
from harness.service import start_service

MIB = 1 << 20
INFER = "/v2/models/sentimentalyzer/infer"
JSON = {"content-type": "application/json"}
# What the issue this guards asks of every body: refused within 100 ms, /healthz never kept waiting 50 ms.
MAX_REFUSAL_MS, MAX_HEALTHZ_WAIT_MS = 100.0, 50.0


def repeated(prefix: bytes, item: bytes, suffix: bytes, size: int = MIB - 1024) -> bytes:
    """``prefix``, ``item`` comma-separated as often as fits in ``size`` bytes, ``suffix``."""
    return prefix + b",".join([item] * ((size - len(prefix) - len(suffix)) // (len(item) + 1))) + suffix


def oip_binary() -> tuple[str, bytes, dict[str, str]]:
    blob = b"\0\0\0\0" * ((MIB - 1024) // 4)  # 262,000 empty BYTES elements, each its 4-byte length
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return INFER, header + blob, {"content-type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(header))}


BODIES = {
    "OIP binary: 262k empty elements, shape [1]": oip_binary,
    "OIP JSON: 350k empty texts, shape [1]": lambda: (INFER, repeated(
        b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":[', b'""', b"]}]}"), JSON),
    "OIP JSON: 200k lists in parameters": lambda: (INFER, repeated(
        b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["a"]}],"parameters":{"x":[',
        b"[]", b"]}}"), JSON),
    'TEI: 210k [""] items': lambda: ("/predict", repeated(b'{"inputs":[', b'[""]', b"]}"), JSON),
    "Inference API: 100k pairs": lambda: ("/predict", repeated(b'{"parameters":{},"inputs":[', b'["a","b"]',
                                                               b"]}"), JSON),
    "ours: 350k empty texts (/predict/batch)": lambda: ("/predict/batch", repeated(b'{"texts":[', b'""', b"]}"),
                                                        JSON),
    "JSON nested 512k deep": lambda: ("/predict", b"[" * (MIB // 2 - 512) + b"]" * (MIB // 2 - 512), JSON),
}


def cpu_ms(pid: int) -> float:
    """CPU time the process's threads have used so far, in ms, to the nanosecond (Linux /proc schedstat; /proc's
    stat counts 10 ms ticks)."""
    return sum(int(stat.read_text().split()[0]) for stat in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e6


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident set now and at its peak (Linux /proc), in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> bool:
    """Start the process's peak RSS afresh from its RSS now (Linux 4.0+: clear_refs 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class HealthzPoller:
    """Polls ``/healthz`` on a connection of its own every ~2 ms, keeping (start, end) of every poll."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.polls: list[tuple[float, float]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="healthz poller", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                start = time.perf_counter()
                client.get(f"{self.url}/healthz").raise_for_status()
                self.polls.append((start, time.perf_counter()))
                time.sleep(0.002)

    def longest_wait_ms(self, since: float, until: float) -> float:
        """The longest poll in flight at any moment of [since, until] (the one in flight at the end is waited for)."""
        while not any(start >= until for start, _ in self.polls[-3:]):
            time.sleep(0.002)
        return 1000 * max((end - start for start, end in self.polls if start <= until and end >= since), default=0.0)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()


def measure(url: str, pid: int, repeats: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with httpx.Client(timeout=30) as client, HealthzPoller(url) as poller:
        time.sleep(0.2)  # a few polls first: the poller's connection is open and warm
        for name, make in BODIES.items():
            route, body, headers = make()
            runs = []
            for _ in range(repeats):
                peak_reset = reset_peak(pid)
                before, cpu0 = memory_kib(pid), cpu_ms(pid)
                start = time.perf_counter()
                response = client.post(url + route, content=body, headers=headers)
                end = time.perf_counter()
                after, cpu1 = memory_kib(pid), cpu_ms(pid)
                runs.append({
                    "status": response.status_code, "ms": 1000 * (end - start), "api_cpu_ms": cpu1 - cpu0,
                    "healthz_max_wait_ms": poller.longest_wait_ms(start, end),
                    "peak_rss_growth_mib": (after["VmHWM"] - before["VmRSS"]) / 1024 if peak_reset else None,
                    "rss_growth_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
                    "message": response.text[:200]})
                time.sleep(0.05)
            results[name] = summarize(route, len(body), runs)
            r = results[name]
            print(f"  {name}: {r['statuses']} in {r['median']['ms']:.1f} ms (API CPU {r['median']['api_cpu_ms']:.1f} "
                  f"ms), /healthz waited at most {r['median']['healthz_max_wait_ms']:.1f} ms", flush=True)
    return results


def summarize(route: str, size: int, runs: list[dict]) -> dict:
    numbers = [key for key, value in runs[0].items() if isinstance(value, float)]
    growth = [run["peak_rss_growth_mib"] for run in runs if run["peak_rss_growth_mib"] is not None]
    return {
        "route": route, "bytes": size, "statuses": sorted({run["status"] for run in runs}), "runs": runs,
        "message": runs[0]["message"],
        "median": {key: statistics.median(run[key] for run in runs) for key in numbers},
        "worst": {key: max(run[key] for run in runs) for key in numbers},
        "peak_rss_growth_mib": max(growth) if growth else None,
    }


def verdict(results: dict[str, dict]) -> list[str]:
    """What breaks the bounds, judged on each body's median (a shared 2-core machine has its moments)."""
    problems = []
    for name, r in results.items():
        if not all(400 <= status < 500 for status in r["statuses"]):
            problems.append(f"{name}: answered {r['statuses']}, not a 4xx")
        if r["median"]["ms"] >= MAX_REFUSAL_MS:
            problems.append(f"{name}: refused in {r['median']['ms']:.1f} ms (bound {MAX_REFUSAL_MS:g})")
        if r["median"]["healthz_max_wait_ms"] >= MAX_HEALTHZ_WAIT_MS:
            problems.append(f"{name}: /healthz waited {r['median']['healthz_max_wait_ms']:.1f} ms "
                            f"(bound {MAX_HEALTHZ_WAIT_MS:g})")
    return problems


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# Hostile bodies `{results['name']}`", "",
             (f"{env['cpu']}, {env['cores']} cores; {env['date']}; commit `{results['commit']}`. Redis and the API "
             f"({env['workers']} simulated worker(s)) as real processes; each body {env['repeats']} times, "
             "/healthz polled every ~2 ms meanwhile. Median [worst]."), "",
             "| body | bytes | status | time to it ms | API CPU ms | /healthz max wait ms | API peak RSS growth MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["bodies"].items():
        m, w = r["median"], r["worst"]
        growth = "n/a" if r["peak_rss_growth_mib"] is None else f"{r['peak_rss_growth_mib']:.1f}"
        lines.append(f"| {name} | {r['bytes']:,} | {', '.join(map(str, r['statuses']))} | {m['ms']:.1f} "
                     f"[{w['ms']:.1f}] | {m['api_cpu_ms']:.1f} [{w['api_cpu_ms']:.1f}] | "
                     f"{m['healthz_max_wait_ms']:.1f} [{w['healthz_max_wait_ms']:.1f}] | {growth} |")
    lines += ["", "Within bounds (4xx, median under 100 ms, /healthz median wait under 50 ms): "
              + ("yes" if not results["problems"] else "no: " + "; ".join(results["problems"])), ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    results: dict = {"name": args.name, "commit": git_commit(), "environment": {
        "cpu": cpu_model(), "cores": os.cpu_count(), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "workers": args.workers, "repeats": args.repeats, "command": " ".join(["python -m benchmarks.hostile",
                                                                              *sys.argv[1:]])}}
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        redis = RedisServer(Path(tmp))
        try:
            svc = start_service(redis.url, Path(tmp), workers=args.workers, env={
                "LOG_LEVEL": "WARNING", "BACKEND": "simulated", "ACCESS_LOG": "false"})
            try:
                results["bodies"] = measure(svc.url, svc.api.pid, args.repeats)
            finally:
                svc.stop()
        finally:
            redis.stop()
    results["problems"] = verdict(results["bodies"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="simulated workers (BACKEND=simulated)")
    parser.add_argument("--repeats", type=int, default=10, help="times each body is sent")
    parser.add_argument("--name", default="hostile")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="5 repeats, no worker (what the suite runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.workers = 5, 0
    results = run(args)
    save_report(args.out / args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
