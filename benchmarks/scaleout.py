"""``python -m benchmarks.scaleout``: does the queueing system scale? Measured with simulated workers.

Each worker runs ``BACKEND=simulated``: a forward pass sleeps ``a + b·n`` (no CPU), so 8 workers on this 2-core
machine behave like 8 accelerators and what limits throughput is the API, Redis and the dispatch — the parts
this project owns. Two measurements, each with 1 and 2 API processes (uvicorn workers):

1. **Scaling**: 1, 2, 4, 8 workers with the cost model; the load grows with the workers (``--users-per-worker``
   closed-loop connections each), so every worker can be kept busy with full batches. Efficiency at N
   workers = RPS(N) / (N x RPS(1)); the ideal is N x B / (a + b·B) with B = ``--max-batch-size``.
2. **No-op ceiling**: workers that answer at once (a = b = 0): the requests/s the API + Redis path itself
   sustains on this machine, load generator included.

The load generator is wrk (C, closed loop), not Locust: at thousands of requests/s Locust would eat the cores
it is supposed to measure. Results: benchmarks/results/<name>.json, .md and a PNG chart.

    python -m benchmarks.scaleout            # ~8 min: 3 repeats of 10 s per point
    python -m benchmarks.scaleout --quick    # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.environment import git_commit
from benchmarks.report import save_report
from benchmarks.wrk import WrkResult, run_wrk, summarize, wrk_binary
from harness.corpus import load_sentences
from harness.processes import ROOT, RedisServer, children, cpu_seconds, wait_until
from harness.service import start_service


class Cluster:
    """Redis + one API (with ``api_processes`` server processes) + simulated workers added on demand."""

    def __init__(self, redis: RedisServer, logs: Path, api_processes: int, max_batch_size: int) -> None:
        self.redis = redis
        logs = logs / f"api-x{api_processes}"
        logs.mkdir()
        self.service = start_service(redis.url, logs, workers=0, env=dict(
            LOG_LEVEL="WARNING", API_PROCESSES=str(api_processes), BACKEND="simulated",
            MAX_BATCH_SIZE=str(max_batch_size), MAX_BATCH_TOKENS="0", MAX_QUEUE_DEPTH="100000", MAX_IN_FLIGHT="4096",
            HEARTBEAT_INTERVAL_S="0.5"))
        self.url = self.service.url

    def set_workers(self, count: int, batch_ms: float, text_ms: float) -> None:
        """Exactly ``count`` workers with this cost model (restarts them if the cost model changed)."""
        costs = {"SIMULATED_BATCH_MS": f"{batch_ms:g}", "SIMULATED_TEXT_MS": f"{text_ms:g}"}
        service = self.service
        if any(service.env.get(k) != v for k, v in costs.items()):
            service.stop_workers()
            service.env.update(costs)
        while len(service.workers) < count:
            service.start_worker()
        while len(service.workers) > count:
            service.workers.pop().stop()
        service.wait_ready(count, timeout=60)

    def stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.client.hgetall(self.service.keys.stats).items()}

    def drained(self) -> bool:
        return self.redis.client.llen(self.service.keys.requests) == 0

    def pids(self) -> dict[str, list[int]]:
        return {"api": [self.service.api.pid, *children(self.service.api.pid)], "redis": [self.redis.pid],
                "workers": [w.pid for w in self.service.workers]}

    def stop(self) -> None:
        self.service.stop()


def measure(cluster: Cluster, texts: list[str], connections: int, args: argparse.Namespace,
            label: str) -> dict:
    """Warm up (unless ``args.warmup`` is 0), then ``repeats`` measured wrk runs; the median run plus CPU per role
    and the mean batch."""
    if args.warmup:
        run_wrk(cluster.url + "/predict", texts, connections, args.warmup)
    runs: list[WrkResult] = []
    cpu_runs: list[dict[str, float]] = []
    batch_means: list[float] = []
    for repeat in range(args.repeats):
        wait_until(cluster.drained, 30, "the queue to drain")
        pids = cluster.pids()
        cpu0 = {role: sum(cpu_seconds(p) for p in ps) for role, ps in pids.items()}
        stats0, t0 = cluster.stats(), time.monotonic()
        result = run_wrk(cluster.url + "/predict", texts, connections, args.duration)
        elapsed = time.monotonic() - t0
        stats1 = cluster.stats()
        cpu_runs.append({role: 100 * (sum(cpu_seconds(p) for p in ps) - cpu0[role]) / elapsed
                         for role, ps in pids.items()})
        batches = stats1.get("batches", 0) - stats0.get("batches", 0)
        batch_means.append((stats1.get("texts", 0) - stats0.get("texts", 0)) / batches if batches else 0.0)
        runs.append(result)
        print(f"  {label} repeat {repeat + 1}: {result.rps:8.1f} req/s, p50 {result.p50_ms:6.1f} ms, "
              f"p99 {result.p99_ms:6.1f} ms, errors {result.errors}, mean batch {batch_means[-1]:.1f}", flush=True)
    return {
        "connections": connections,
        **summarize(runs),
        "cpu_pct": {role: statistics.median(c[role] for c in cpu_runs) for role in cpu_runs[0]},
        "mean_batch": statistics.median(batch_means),
    }


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    wrk_binary()  # fail before starting anything
    texts, source = load_sentences()
    ideal_per_worker = args.max_batch_size / ((args.batch_ms + args.text_ms * args.max_batch_size) / 1000)
    results: dict = {
        "environment": {
            "cores": os.cpu_count(), "date": dt.datetime.now().isoformat(timespec="seconds"), "texts": source,
            "batch_ms": args.batch_ms, "text_ms": args.text_ms, "max_batch_size": args.max_batch_size,
            "users_per_worker": args.users_per_worker, "duration_s": args.duration, "warmup_s": args.warmup,
            "repeats": args.repeats, "noop_workers": args.noop_workers,
            "ideal_rps_per_worker": ideal_per_worker,
        },
        "scaling": {}, "noop": {},
    }
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        logs = Path(tmp)
        redis = RedisServer(logs)
        try:
            for api_processes in args.api_processes:
                cluster = Cluster(redis, logs, api_processes, args.max_batch_size)
                try:
                    scaling = results["scaling"][str(api_processes)] = {}
                    for workers in args.workers:
                        cluster.set_workers(workers, args.batch_ms, args.text_ms)
                        point = measure(cluster, texts, args.users_per_worker * workers, args,
                                        f"api x{api_processes}, {workers} workers")
                        point["ideal_rps"] = workers * ideal_per_worker
                        scaling[str(workers)] = point
                    base = scaling[str(args.workers[0])]["median"]["rps"] / args.workers[0]
                    for workers, point in scaling.items():
                        point["efficiency"] = point["median"]["rps"] / (int(workers) * base)
                        point["of_ideal"] = point["median"]["rps"] / point["ideal_rps"]
                    noop = results["noop"][str(api_processes)] = {}
                    cluster.set_workers(args.noop_workers, 0, 0)
                    for connections in args.noop_connections:
                        noop[str(connections)] = measure(cluster, texts, connections, args,
                                                         f"api x{api_processes}, no-op, {connections} connections")
                finally:
                    cluster.stop()
        finally:
            redis.stop()
    return results


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"# Scale-out with simulated workers `{results['name']}`", "",
        f"{env['cores']} cores; {env['date']}; commit `{results['commit']}`. Simulated forward pass: "
        f"a = {env['batch_ms']:g} ms + b = {env['text_ms']:g} ms/text, MAX_BATCH_SIZE={env['max_batch_size']} "
        f"(ideal {env['ideal_rps_per_worker']:.0f} texts/s per busy worker). wrk closed loop, "
        f"{env['users_per_worker']} connections per worker, {env['warmup_s']:g} s warm-up, {env['duration_s']:g} s "
        f"measured, {env['repeats']} repeats (median; range in brackets). Texts: {env['texts']}.", "",
        "## Scaling", "",
        "| API processes | workers | connections | RPS | ideal | efficiency vs 1 worker | p50 ms | p99 ms | "
        "mean batch | errors | CPU % api / redis / workers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for api_processes, points in results["scaling"].items():
        for workers, p in points.items():
            m, cpu = p["median"], p["cpu_pct"]
            lines.append(
                f"| {api_processes} | {workers} | {p['connections']} | {m['rps']:,.0f} [{p['rps_range'][0]:,.0f}–"
                f"{p['rps_range'][1]:,.0f}] | {p['ideal_rps']:,.0f} | {p['efficiency']:.1%} | {m['p50_ms']:.0f} | "
                f"{m['p99_ms']:.0f} | {p['mean_batch']:.1f} | {m['errors']} | {cpu['api']:.0f} / {cpu['redis']:.0f} / "
                f"{cpu['workers']:.0f} |")
    lines += ["", f"## No-op ceiling of the API + Redis path ({env['noop_workers']} workers answering at once)", "",
              "| API processes | connections | RPS | p50 ms | p99 ms | mean batch | errors | CPU % api / redis / workers |",
              "|---|---|---|---|---|---|---|---|"]
    for api_processes, points in results["noop"].items():
        for connections, p in points.items():
            m, cpu = p["median"], p["cpu_pct"]
            lines.append(f"| {api_processes} | {connections} | {m['rps']:,.0f} [{p['rps_range'][0]:,.0f}–"
                         f"{p['rps_range'][1]:,.0f}] | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {p['mean_batch']:.1f} | "
                         f"{m['errors']} | {cpu['api']:.0f} / {cpu['redis']:.0f} / {cpu['workers']:.0f} |")
    lines.append("")
    return "\n".join(lines)


def write_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ideal_drawn = False
    for api_processes, points in results["scaling"].items():
        workers = [int(w) for w in points]
        ax.plot(workers, [p["median"]["rps"] for p in points.values()], marker="o",
                label=f"{api_processes} API process{'es' if api_processes != '1' else ''}")
        if not ideal_drawn:
            ax.plot(workers, [p["ideal_rps"] for p in points.values()], "k--", label="ideal (N busy workers)")
            ideal_drawn = True
    for api_processes, points in results["noop"].items():
        best = max(p["median"]["rps"] for p in points.values())
        ax.axhline(best, linestyle=":", color="grey")
        ax.annotate(f"no-op ceiling, {api_processes} API proc.: {best:,.0f}/s", (1, best), fontsize=8,
                    va="bottom", color="grey")
    ax.set_xlabel("simulated workers")
    ax.set_ylabel("requests/s")
    ax.set_title("Scale-out: simulated workers (a + b·n sleep), wrk closed loop")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-ms", type=float, default=100.0, help="simulated fixed cost a per pass")
    parser.add_argument("--text-ms", type=float, default=2.0, help="simulated cost b per text")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--api-processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users-per-worker", type=int, default=32,
                        help="closed-loop connections per worker (2 x the batch size keeps a full batch queued)")
    parser.add_argument("--noop-workers", type=int, default=2)
    parser.add_argument("--noop-connections", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run (whole seconds)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each point, not measured "
                                                              "(0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 and 2 workers, 1 API process, 1 s runs without warm-up")
    parser.add_argument("--name", default="scaleout")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.api_processes, args.noop_connections = [1, 2], [1], [16]
        args.duration, args.warmup, args.repeats, args.batch_ms = 1, 0, 1, 20.0

    results = run(args, print)
    results["name"], results["commit"] = args.name, git_commit()
    save_report(args.out / args.name, results, markdown(results))
    write_chart(results, args.out / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
