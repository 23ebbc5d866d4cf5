"""Load generation: Locust (closed loop, the seed experiment's tool) and an open-loop generator."""

from __future__ import annotations

import asyncio
import csv
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from harness.processes import ROOT, python_env


@dataclass
class LoadResult:
    rps: float  # completed OK requests per second in the measured window
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    requests: int  # requests completed in the measured window
    failures: int  # over the whole run, warm-up included
    window_s: float
    generator_cpu_pct: float  # load generator CPU, % of one core, whole run

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summarize(records: Sequence[tuple[float, float, bool]], window_start: float, window_end: float,
              failures: int, cpu_pct: float) -> LoadResult:
    """``records``: (start time, latency ms, ok). Counts requests that completed inside the window."""
    in_window = sorted(lat for start, lat, ok in records if ok and window_start <= start + lat / 1000 < window_end)
    window = window_end - window_start
    return LoadResult(
        rps=len(in_window) / window,
        p50_ms=percentile(in_window, 50), p95_ms=percentile(in_window, 95), p99_ms=percentile(in_window, 99),
        max_ms=in_window[-1] if in_window else float("nan"),
        requests=len(in_window), failures=failures, window_s=window, generator_cpu_pct=cpu_pct,
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_locust(host: str, users: int, warmup_s: float, measure_s: float, out_dir: Path, tag: str) -> LoadResult:
    """One headless Locust run; the first ``warmup_s`` seconds are excluded from the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"{tag}_raw.csv"
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--host", host, "--headless",
               "-u", str(users), "-r", str(users), "-t", f"{warmup_s + measure_s:.0f}s", "--stop-timeout", "30",
               "--csv", str(out_dir / tag), "--only-summary", "--loglevel", "WARNING"]
    cpu_before = _children_cpu()
    started = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=python_env(LOCUST_RAW_FILE=str(raw)), capture_output=True, text=True,
                          timeout=warmup_s + measure_s + 120)
    elapsed = time.time() - started
    cpu_pct = 100 * (_children_cpu() - cpu_before) / elapsed
    if not raw.is_file():
        raise RuntimeError(f"locust wrote no raw file (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    records = []
    failures = 0
    with open(raw) as f:
        for row in csv.DictReader(f):
            ok = row["ok"] == "1"
            failures += not ok
            records.append((float(row["start_time"]), float(row["latency_ms"]), ok))
    first = min(start for start, _, _ in records) if records else started
    return summarize(records, first + warmup_s, first + warmup_s + measure_s, failures, cpu_pct)


async def _open_loop(url: str, rate: float, duration_s: float, texts: Sequence[str], seed: int
                     ) -> tuple[list[tuple[float, float, bool]], int]:
    rng = random.Random(seed)
    count = int(rate * duration_s)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    records: list[tuple[float, float, bool]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.time() + 0.5

        async def one(intended: float) -> None:
            try:
                r = await client.post("/predict", json={"text": rng.choice(texts)})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            # Latency counts from when the request should have been sent: a late sender can't hide queueing.
            records.append((intended, (time.time() - intended) * 1000, ok))

        tasks = []
        for i in range(count):
            intended = t0 + i / rate
            delay = intended - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(intended)))
        await asyncio.gather(*tasks)
    return records, count


def run_open_loop(url: str, rate: float, duration_s: float, texts: Sequence[str], seed: int = 0) -> LoadResult:
    """Requests at a fixed arrival rate (uniformly spaced), latency from the intended send time."""
    cpu_before = time.process_time()
    started = time.time()
    records, count = asyncio.run(_open_loop(url, rate, duration_s, texts, seed))
    cpu_pct = 100 * (time.process_time() - cpu_before) / (time.time() - started)
    failures = sum(not ok for _, _, ok in records) + count - len(records)
    latencies = sorted(lat for _, lat, ok in records if ok)
    end = max((s + lat / 1000 for s, lat, _ in records), default=started)
    first = min((s for s, _, _ in records), default=started)
    return LoadResult(
        rps=len(latencies) / max(end - first, 1e-9),
        p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"), requests=len(latencies), failures=failures,
        window_s=end - first, generator_cpu_pct=cpu_pct,
    )


def median_of(results: Sequence[LoadResult]) -> dict:
    """Median of each figure over repeats, with the spread (min, max) of RPS and p99."""
    out = {key: statistics.median(getattr(r, key) for r in results)
           for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "generator_cpu_pct")}
    out["max_ms"] = max(r.max_ms for r in results)
    out["failures"] = sum(r.failures for r in results)
    out["requests"] = sum(r.requests for r in results)
    out["rps_range"] = [min(r.rps for r in results), max(r.rps for r in results)]
    out["p99_range"] = [min(r.p99_ms for r in results), max(r.p99_ms for r in results)]
    out["repeats"] = len(results)
    return out

