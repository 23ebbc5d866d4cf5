"""``python -m benchmarks.backends``: the service per backend against the naive server and LitServe, in one run.

Rows (same model, texts, load, machine): the naive server with PyTorch fp32 (the seed's experiment) and with
``BACKEND=auto``; LitServe given the backend the service's ``auto`` chose (its batching tuned first with
``benchmarks.peers.tune_litserve``); the batched service with each exact backend and with ``auto``. For each
service row: the backend's in-process ceiling at the worker's policy, the worker's RSS, and its start-up time
cold (an empty EXPORT_CACHE_DIR: export and, for auto, measuring) and warm (from the cache).

    python -m benchmarks.backends [--quick] [--model M] [--litserve-max-batch-size 16 --litserve-batch-timeout 0.01]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import time
from pathlib import Path

import httpx

from benchmarks.__main__ import ensure_model, measure_system
from benchmarks.ceiling import measure_ceiling
from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from benchmarks.systems import System, litserve_system, naive_system, warm_up
from engine.cpu import cpu_bf16_support
from harness.corpus import load_sentences
from harness.processes import ROOT, RedisServer
from harness.service import start_service

SERVICE_BACKENDS = ("torch", "onnxruntime", "openvino", "auto")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def running_backend(redis: RedisServer, service) -> tuple[str, int]:
    """The backend and token budget the service's worker runs (BACKEND=auto: what it chose), from its heartbeat."""
    client = redis.client
    worker, = client.hkeys(service.keys.workers)
    beat = client.hgetall(service.keys.heartbeat(worker.decode()))
    return beat[b"backend"].decode(), int(beat[b"max_batch_tokens"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: models/bench)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--litserve-max-batch-size", type=int, default=8)
    parser.add_argument("--litserve-batch-timeout", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds per row, one repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.duration, args.warmup, args.repeats = 8, 3.0, 1.0, 1
    model, model_note = ensure_model(args.model)
    sentences, source = load_sentences()
    random.Random(0).shuffle(sentences)
    name = args.name or f"backends-{dt.date.today().isoformat()}-{git_commit()}"
    run_dir = ROOT / "benchmarks" / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    caches = run_dir / "export-cache"
    shutil.rmtree(caches, ignore_errors=True)  # cold starts start from nothing
    base_env = {"TORCH_THREADS": str(args.torch_threads), "LOG_LEVEL": "INFO"}
    result: dict = {"name": name, "environment": {
        "model": model, "model_note": model_note, "texts": source, "cpu_model": cpu_model(), "cores": os.cpu_count(),
        "bf16": cpu_bf16_support() or "none", "users": args.users, "duration_s": args.duration,
        "repeats": args.repeats, "torch_threads": args.torch_threads, "max_batch_size": args.max_batch_size,
        "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit()}, "rows": {}}
    users = [args.users]

    def record(label: str, system: System, extra: dict) -> None:
        warm_up(system.url, sentences)
        levels, _, _ = measure_system(system, users, args, run_dir)
        median = levels[str(args.users)]["median"]
        result["rows"][label] = {**extra, **median}
        print(f"{label}: {median['rps']:.1f} req/s, p50 {median['p50_ms']:.0f} ms, p99 {median['p99_ms']:.0f} ms, "
              f"failures {median['failures']}", flush=True)

    redis = RedisServer(run_dir)
    try:
        for backend in SERVICE_BACKENDS:
            cache = caches / backend
            env = {**base_env, "MODEL": model, "BACKEND": backend, "EXPORT_CACHE_DIR": str(cache),
                   "MAX_BATCH_SIZE": str(args.max_batch_size), "REQUEST_TIMEOUT_S": "60", "MAX_QUEUE_DEPTH": "100000"}
            starts = {}
            for start in ("cold", "warm"):  # cold: empty cache; warm: what the cold start left
                logs = run_dir / f"{backend}-{start}"
                logs.mkdir(exist_ok=True)
                began = time.perf_counter()
                service = start_service(redis.url, logs, workers=1, env=env,
                                        ready_timeout=600)
                starts[start] = time.perf_counter() - began
                if start == "cold":
                    service.stop()
            try:
                worker = service.workers[0].pid
                running, budget = running_backend(redis, service)
                extra = {"backend": running, "max_batch_tokens": budget, "cold_start_s": starts["cold"],
                         "warm_start_s": starts["warm"], "worker_rss_mb_ready": rss_mb(worker)}
                processes = {"api": service.api.pid, "redis": redis.pid, "worker": worker}
                record(f"service {backend}", System("batched", service.url, processes, redis, service.keys), extra)
                result["rows"][f"service {backend}"]["worker_rss_mb_after"] = rss_mb(worker)
            finally:
                service.stop()
            print(f"  start-up: cold {starts['cold']:.1f} s, warm {starts['warm']:.1f} s", flush=True)
    finally:
        redis.stop()
    auto_backend = result["rows"]["service auto"]["backend"]

    naive_env = {**base_env, "LOG_LEVEL": "WARNING"}
    with naive_system(model, run_dir, {**naive_env, "BACKEND": "torch"}) as naive:
        record("naive torch", naive, {"backend": "torch", "rss_mb": rss_mb(naive.processes["naive"])})
    with naive_system(model, run_dir, {**naive_env, "BACKEND": "auto",
                                       "EXPORT_CACHE_DIR": str(caches / "auto")}) as naive:
        backend = httpx.get(f"{naive.url}/readyz", timeout=5).json()["backend"]
        record("naive auto", naive, {"backend": backend, "rss_mb": rss_mb(naive.processes["naive"])})
    with litserve_system(model, run_dir, {**naive_env, "BACKEND": auto_backend,
                                          "EXPORT_CACHE_DIR": str(caches / "auto")},
                         max_batch_size=args.litserve_max_batch_size,
                         batch_timeout_s=args.litserve_batch_timeout) as peer:
        record("litserve", peer, {"backend": auto_backend, "max_batch_size": args.litserve_max_batch_size,
                                  "batch_timeout_s": args.litserve_batch_timeout})

    for label, row in result["rows"].items():
        if not label.startswith("service"):
            continue
        ceiling = measure_ceiling(model, sentences, torch_threads=args.torch_threads, backend=row["backend"],
                                  max_batch_size=args.max_batch_size, max_batch_tokens=row["max_batch_tokens"],
                                  repeats=1 if args.quick else 3, n_batch1=16, n_batched=64 if args.quick else 512,
                                  export_cache_dir=str(caches / "auto"), worker_policy_only=True)
        row["ceiling"] = ceiling["policies"][ceiling["worker_policy"]]["sentences_per_s"]
        row["of_ceiling"] = row["rps"] / row["ceiling"]
    save_report(args.out / name, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    env, rows = result["environment"], result["rows"]
    naive = rows["naive torch"]["rps"]
    lines = [
        f"# Backends: {env['users']} users, {env['duration_s']:g} s x {env['repeats']} (median), {env['texts']}",
        "", f"Model {env['model']} ({env['model_note']}); {env['cpu_model']}, {env['cores']} cores, bf16: {env['bf16']}; "
        f"{env['torch_threads']} threads per model process; window {env['max_batch_size']}; {env['date']}, "
        f"commit `{env['commit']}`.", "",
        "| system | backend | token budget | RPS | x naive torch | p50 ms | p99 ms | failures | ceiling /s | "
        "of ceiling | worker RSS MB | start cold / warm s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        ceiling = f"{r['ceiling']:.1f} | {100 * r['of_ceiling']:.0f} %" if "ceiling" in r else "— | —"
        rss = r.get("worker_rss_mb_after", r.get("rss_mb"))
        start = f"{r['cold_start_s']:.1f} / {r['warm_start_s']:.1f}" if "cold_start_s" in r else "—"
        lines.append(f"| {label} | {r['backend']} | {r.get('max_batch_tokens', '—')} | {r['rps']:.1f} | "
                     f"{r['rps'] / naive:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['failures']} | {ceiling} | "
                     f"{f'{rss:.0f}' if rss else '—'} | {start} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
