"""``python -m benchmarks.cache``: what the response cache (CACHE_TTL_S) gives when texts repeat.

Redis, the API and one worker as real processes, the same model and backend both times; wrk (closed loop) posts
``--distinct`` SST-2 dev sentences over and over, first with the cache off, then on. The warm-up pass sends each
text at least once, so with the cache on the measured runs are hits: answered from Redis without queueing or
inference. Reported per configuration: requests/s, latency, errors, the cache's hits and misses (from the API's
``/metrics``) and the texts the worker ran (its ``stats`` hash). Results: benchmarks/results/<name>.json and .md.

    python -m benchmarks.cache            # ~2 min: bench model, 3 repeats of 10 s per configuration
    python -m benchmarks.cache --quick    # smoke run (the suite runs it with the tiny model)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.__main__ import ensure_model
from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from benchmarks.wrk import WrkResult, run_wrk, summarize, wrk_binary
from harness.corpus import load_sentences
from harness.processes import ROOT, Process, RedisServer, wait_until
from harness.service import Service, start_service

CACHE_COUNTERS = ("sentimentalyzer_cache_hits_total", "sentimentalyzer_cache_misses_total")


def api_counters(url: str) -> dict[str, float]:
    """The API's cache counters, summed over their series (one per served model)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {name: sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
            for name in CACHE_COUNTERS}


def texts_run(svc: Service, redis: RedisServer) -> int:
    return int(redis.client.hget(svc.keys.stats, "texts") or 0)


def measure(svc: Service, redis: RedisServer, texts: list[str], args: argparse.Namespace, label: str) -> dict:
    run_wrk(svc.url + "/predict", texts, args.connections, args.warmup)  # every text sent at least once
    runs: list[WrkResult] = []
    counters0, ran0 = api_counters(svc.url), texts_run(svc, redis)
    for repeat in range(args.repeats):
        wait_until(lambda: redis.client.llen(svc.keys.requests) == 0, 30, "the queue to drain")
        runs.append(run_wrk(svc.url + "/predict", texts, args.connections, args.duration))
        print(f"  {label} repeat {repeat + 1}: {runs[-1].rps:8.1f} req/s, p50 {runs[-1].p50_ms:7.1f} ms, "
              f"p99 {runs[-1].p99_ms:7.1f} ms, errors {runs[-1].errors}", flush=True)
    counters1 = api_counters(svc.url)
    hits, misses = (counters1[n] - counters0[n] for n in CACHE_COUNTERS)
    return {**summarize(runs), "requests": sum(r.requests for r in runs),
            "cache_hits": hits, "cache_misses": misses, "texts_run_by_workers": texts_run(svc, redis) - ran0}


def restart_api(svc: Service, logs: Path, **env: str) -> None:
    """The next configuration on the same Redis, key prefix and worker, with only the API restarted with ``env``
    (quick runs): the response cache is the API's alone, and the worker's start (imports, model) is the costly
    part of a service's."""
    svc.api.stop()
    svc.env.update(env)
    svc.api = Process.python("api", svc.env, logs / "api.log")
    svc.wait_ready(len(svc.workers), timeout=300)


def run(args: argparse.Namespace) -> dict:
    wrk_binary()  # fail before starting anything
    model, model_note = ensure_model(args.model)
    sentences, source = load_sentences()
    texts = sentences[:args.distinct]
    results: dict = {"name": args.name, "commit": git_commit(), "environment": {
        "cpu": cpu_model(), "cores": os.cpu_count(), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "model": model, "model_note": model_note, "backend": args.backend, "texts": source, "distinct": len(texts),
        "connections": args.connections, "duration_s": args.duration, "warmup_s": args.warmup,
        "repeats": args.repeats, "cache_ttl_s": args.ttl}, "configurations": {}}
    with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp:
        redis = RedisServer(Path(tmp))
        svc: Service | None = None
        try:
            for label, ttl in (("cache off", 0), (f"cache on ({args.ttl} s)", args.ttl)):
                logs = Path(tmp) / f"ttl-{ttl}"
                logs.mkdir()
                if svc is None:
                    svc = start_service(redis.url, logs, workers=1, env=dict(
                        MODEL=model, BACKEND=args.backend, CACHE_TTL_S=str(ttl), LOG_LEVEL="WARNING",
                        TORCH_THREADS=str(args.torch_threads)), ready_timeout=300)
                else:  # quick runs: the same worker behind a new API
                    restart_api(svc, logs, CACHE_TTL_S=str(ttl))
                results["configurations"][label] = measure(svc, redis, texts, args, label)
                if not args.quick:  # full runs: a service of its own for each configuration
                    svc.stop()
                    svc = None
        finally:
            if svc is not None:
                svc.stop()
            redis.stop()
    return results


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# Response cache `{results['name']}`", "",
             f"{env['cpu']}, {env['cores']} cores; {env['date']}; commit `{results['commit']}`. Model {env['model']} "
             f"({env['model_note']}), BACKEND={env['backend']}, 1 worker. wrk closed loop, {env['connections']} "
             f"connections posting {env['distinct']} distinct texts ({env['texts']}) in turn; {env['warmup_s']} s "
             f"warm-up (every text sent at least once), {env['duration_s']} s measured, {env['repeats']} repeats "
             "(median; range in brackets).", "",
             "| configuration | RPS | p50 ms | p99 ms | errors | cache hits / misses | texts run by the worker |",
             "|---|---|---|---|---|---|---|"]
    for label, c in results["configurations"].items():
        m = c["median"]
        lines.append(f"| {label} | {m['rps']:,.1f} [{c['rps_range'][0]:,.1f}–{c['rps_range'][1]:,.1f}] | "
                     f"{m['p50_ms']:,.1f} | {m['p99_ms']:,.1f} | {m['errors']} | {c['cache_hits']:,.0f} / "
                     f"{c['cache_misses']:,.0f} | {c['texts_run_by_workers']:,} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: build/reuse models/bench)")
    parser.add_argument("--backend", default="auto", help="the worker's BACKEND (default auto)")
    parser.add_argument("--torch-threads", type=int, default=0)
    parser.add_argument("--distinct", type=int, default=500, help="distinct texts the load cycles through")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=20, help="seconds of warm-up (must send every text once)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ttl", type=int, default=600, help="CACHE_TTL_S when on")
    parser.add_argument("--name", default="cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20 texts, 1 s runs, 1 repeat, one worker for both configurations "
                             "(only the API restarted)")
    args = parser.parse_args(argv)
    if args.quick:
        args.distinct, args.duration, args.warmup, args.repeats, args.connections = 20, 1, 1, 1, 8
    results = run(args)
    save_report(args.out / args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
