"""``python -m benchmarks.backends``: the service per backend against the naive server and LitServe, in one run.

Rows (same model, texts, load, machine): the naive server with PyTorch fp32 (the seed's experiment) and with
``BACKEND=auto``; LitServe given the backend the service's ``auto`` chose (its batching tuned first with
``benchmarks.peers.tune_litserve``); the batched service with each exact backend, with ``auto`` (PRECISION=exact,
the default) and with ``auto`` at PRECISION=faithful (the fast tier: bf16 or int8 where they agree with fp32). For
each service row: the backend's in-process ceiling at the worker's policy (full runs: measured just before and just
after the row's load, the median of both), the worker's RSS, its start-up time cold (an empty EXPORT_CACHE_DIR:
export and, for auto, measuring) and warm (from the cache), and where the cores' time went under load (each
process, the client, the worker's phases).

The client is wrk (closed loop, ``--users`` connections, no think time: a C event loop whose CPU is small next to
the servers'); ``--client locust`` runs the repo's locustfile instead (think time 0-1 s: it cannot saturate the fast
tier with 100 users).

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
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path

import httpx

from benchmarks.__main__ import ensure_model, measure_system
from benchmarks.ceiling import measure_ceiling, merge
from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from benchmarks.systems import Lineup, System, litserve_system, naive_system, warm_up
from benchmarks.wrk import measure_with_wrk, run_wrk
from engine.cpu import cpu_bf16_support
from harness.corpus import load_sentences
from harness.processes import ROOT, RedisServer
from harness.service import start_service

# Service rows: label -> (BACKEND, PRECISION).
SERVICE_ROWS = {"service torch": ("torch", "exact"), "service onnxruntime": ("onnxruntime", "exact"),
                "service openvino": ("openvino", "exact"), "service auto": ("auto", "exact"),
                "service faithful": ("auto", "faithful")}


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
    parser.add_argument("--torch-threads", type=int,
                        help="torch threads per model process (default 2; quick: 1, as its rows run side by side)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--litserve-max-batch-size", type=int, default=8)
    parser.add_argument("--litserve-batch-timeout", type=float, default=0.01)
    parser.add_argument("--client", choices=("wrk", "locust"), default="wrk",
                        help="load generator: wrk (closed loop, no think time) or the repo's locustfile")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s per row, one repeat, the rows started at once")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.torch_threads is None:
        args.torch_threads = 1 if args.quick else 2
    if args.quick:
        args.users, args.duration, args.warmup, args.repeats = 8, 2.0, 0.0, 1
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
        "repeats": args.repeats, "client": args.client, "torch_threads": args.torch_threads, "max_batch_size": args.max_batch_size,
        "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit()}, "rows": {}}
    users = [args.users]

    def record(label: str, system: System, extra: dict) -> None:
        warm_up(system.url, sentences)
        if args.client == "wrk":
            if args.warmup >= 1:
                run_wrk(f"{system.url}/predict", sentences, args.users, int(args.warmup))
            measured = measure_with_wrk(system, sentences, args.users, max(1, int(args.duration)), args.repeats)
        else:
            levels, _, _ = measure_system(system, users, args, run_dir)
            measured = {**levels[str(args.users)]["median"], "cpu_pct": levels[str(args.users)]["cpu_pct"]}
        result["rows"][label] = {**extra, **measured}
        print(f"{label}: {measured['rps']:.1f} req/s, p50 {measured['p50_ms']:.0f} ms, p99 {measured['p99_ms']:.0f} "
              f"ms, failures {measured['failures']}", flush=True)

    @contextmanager
    def redis_server() -> Iterator[RedisServer]:
        redis = RedisServer(run_dir)
        try:
            yield redis
        finally:
            redis.stop()

    @contextmanager
    def service_row(label: str) -> Iterator[tuple[System, dict]]:
        """The service of row ``label``, started cold and stopped, then started warm: running, with its start-ups."""
        redis = lineup.get(redis_entry)
        backend, precision = SERVICE_ROWS[label]
        cache = caches / label.removeprefix("service ")
        env = {**base_env, "MODEL": model, "BACKEND": backend, "PRECISION": precision, "EXPORT_CACHE_DIR": str(cache),
               "MAX_BATCH_SIZE": str(args.max_batch_size), "REQUEST_TIMEOUT_S": "60", "MAX_QUEUE_DEPTH": "100000"}
        starts = {}
        for start in ("cold", "warm"):  # cold: empty cache; warm: what the cold start left
            logs = run_dir / f"{label.removeprefix('service ')}-{start}"
            logs.mkdir(exist_ok=True)
            began = time.perf_counter()
            service = start_service(redis.url, logs, workers=1, env=env,
                                    ready_timeout=600)
            starts[start] = time.perf_counter() - began
            if start == "cold":
                lineup.stop_later(service.stop)  # ahead, the warm start need not wait for it
        try:
            worker = service.workers[0].pid
            running, budget = running_backend(redis, service)
            extra = {"backend": running, "precision": precision, "max_batch_tokens": budget, "cold_start_s": starts["cold"],
                     "warm_start_s": starts["warm"], "worker_rss_mb_ready": rss_mb(worker)}
            processes = {"api": service.api.pid, "redis": redis.pid, "worker": worker}
            yield System("batched", service.url, processes, redis, service.keys), extra
        finally:
            service.stop()

    def auto_backend() -> str:
        """What the service's BACKEND=auto chose (ahead: once that row has started)."""
        return lineup.get(service_rows["service auto"])[1]["backend"]

    @contextmanager
    def naive_row(backend: str) -> Iterator[System]:
        logs = run_dir / f"naive-{backend}"
        logs.mkdir(exist_ok=True)
        env = {**base_env, "LOG_LEVEL": "WARNING", "BACKEND": backend}
        if backend == "auto":  # the service's auto row's cache: its export (one at a time on a lock)
            env["EXPORT_CACHE_DIR"] = str(caches / "auto")
        with naive_system(model, logs, env) as naive:
            yield naive

    def peer_row() -> AbstractContextManager[System]:
        return litserve_system(model, run_dir, {**base_env, "LOG_LEVEL": "WARNING", "BACKEND": auto_backend(),
                                                "EXPORT_CACHE_DIR": str(caches / "auto")},
                               max_batch_size=args.litserve_max_batch_size, batch_timeout_s=args.litserve_batch_timeout)

    def ceiling_of(row: dict, cache: str) -> dict:
        return measure_ceiling(model, sentences, torch_threads=args.torch_threads, backend=row["backend"],
                               max_batch_size=args.max_batch_size, max_batch_tokens=row["max_batch_tokens"],
                               repeats=1 if args.quick else 3, n_batch1=16, n_batched=64 if args.quick else 512,
                               export_cache_dir=str(caches / cache), worker_policy_only=True)

    def set_ceiling(label: str, ceiling: dict) -> None:
        row = result["rows"][label]
        policy = ceiling["policies"][ceiling["worker_policy"]]
        row["ceiling"], row["ceiling_runs"] = policy["sentences_per_s"], policy["runs"]
        row["ceiling_texts_per_pass"] = policy["mean_batch"]
        row["of_ceiling"] = row["rps"] / row["ceiling"]

    def measure_ceilings(labels: list[str]) -> None:
        for label in labels:
            set_ceiling(label, ceiling_of(result["rows"][label], label.removeprefix("service ")))

    # In turn (full runs): one row's processes at a time, the ceilings at the end. Ahead (quick runs): the rows
    # start in the background (the service rows first, the auto ones early: they measure), each is measured as
    # soon as it has started and stops in the background, and a service row's ceiling is measured in a thread of
    # its own (one at a time) meanwhile.
    with Lineup(ahead=args.quick) as lineup, ThreadPoolExecutor(1, thread_name_prefix="ceiling") as ceilings:
        measured: list[Future[None]] = []
        redis_entry = lineup.add(redis_server)
        started = {label: lineup.add(partial(service_row, label))
                   for label in ("service torch", "service auto", "service faithful", "service onnxruntime",
                                 "service openvino")}
        started["naive auto"] = lineup.add(partial(naive_row, "auto"))
        started["litserve"] = lineup.add(peer_row)
        started["naive torch"] = lineup.add(partial(naive_row, "torch"))
        service_rows = {label: started[label] for label in SERVICE_ROWS}
        other_rows = {label: started[label] for label in ("naive torch", "naive auto", "litserve")}

        for label, (system, extra) in lineup.as_started(service_rows):
            # In turn, the ceiling is measured just before and just after the row's load (its processes idle
            # meanwhile): the machine's drift weighs on both alike.
            before = None if lineup.ahead else ceiling_of(extra, label.removeprefix("service "))
            record(label, system, extra)
            if before is not None:
                set_ceiling(label, merge(before, ceiling_of(extra, label.removeprefix("service "))))
            result["rows"][label]["worker_rss_mb_after"] = rss_mb(system.processes["worker"])
            lineup.stop(service_rows[label])
            print(f"  start-up: cold {extra['cold_start_s']:.1f} s, warm {extra['warm_start_s']:.1f} s", flush=True)
            if lineup.ahead:
                measured.append(ceilings.submit(measure_ceilings, [label]))
        if not lineup.ahead:  # ahead, it stops last, with the lineup, after the services' stops in the background
            lineup.stop(redis_entry)

        for label, system in lineup.as_started(other_rows):
            if label == "litserve":
                extra = {"backend": auto_backend(), "max_batch_size": args.litserve_max_batch_size,
                         "batch_timeout_s": args.litserve_batch_timeout}
            else:
                running = label.removeprefix("naive ")
                if running == "auto":
                    running = httpx.get(f"{system.url}/readyz", timeout=5).json()["backend"]
                extra = {"backend": running, "rss_mb": rss_mb(system.processes["naive"])}
            record(label, system, extra)
            lineup.stop(other_rows[label])

        for ceiling in measured:
            ceiling.result()
        result["rows"] = {label: result["rows"][label] for label in (*service_rows, *other_rows)}  # table order
        save_report(args.out / name, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    env, rows = result["environment"], result["rows"]
    naive = rows["naive torch"]["rps"]
    lines = [
        f"# Backends: {env['users']} {env.get('client', 'locust')} clients, {env['duration_s']:g} s x {env['repeats']} "
        f"(median), {env['texts']}",
        "", f"Model {env['model']} ({env['model_note']}); {env['cpu_model']}, {env['cores']} cores, bf16: {env['bf16']}; "
        f"{env['torch_threads']} threads per model process; window {env['max_batch_size']}; {env['date']}, "
        f"commit `{env['commit']}`.", "",
        "| system | precision | backend | token budget | RPS | x naive torch | p50 ms | p99 ms | failures | "
        "ceiling /s | of ceiling | worker RSS MB | start cold / warm s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        ceiling = f"{r['ceiling']:.1f} | {100 * r['of_ceiling']:.0f} %" if "ceiling" in r else "— | —"
        rss = r.get("worker_rss_mb_after", r.get("rss_mb"))
        start = f"{r['cold_start_s']:.1f} / {r['warm_start_s']:.1f}" if "cold_start_s" in r else "—"
        lines.append(f"| {label} | {r.get('precision', '—')} | {r['backend']} | {r.get('max_batch_tokens', '—')} | "
                     f"{r['rps']:.1f} | {r['rps'] / naive:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                     f"{r['failures']} | {ceiling} | {f'{rss:.0f}' if rss else '—'} | {start} |")
    lines += ["", "Where the cores' time went under load (% of one core, medians over the repeats; the worker's "
              "phases in % of its wall time):", "",
              "| system | RPS | processes (CPU %) | worker: forward / tokenize / publish / pop, decode | "
              "texts per pass: under load / ceiling |",
              "|---|---|---|---|---|"]
    for label, r in rows.items():
        cpu = ", ".join(f"{role} {pct:.0f}" for role, pct in r.get("cpu_pct", {}).items())
        phases = r.get("worker_phases_pct") or {}
        split = (f"{phases['forward_s']:.0f} / {phases['tokenize_s']:.0f} / {phases['publish_s']:.0f} / "
                 f"{phases['pop_s'] + phases['decode_s']:.0f}" if "forward_s" in phases else "—")
        per_pass = (f"{r['texts_per_pass']:.1f} / {r['ceiling_texts_per_pass']:.1f}"
                    if "texts_per_pass" in r and "ceiling_texts_per_pass" in r else "—")
        lines.append(f"| {label} | {r['rps']:.1f} | {cpu or '—'} | {split} | {per_pass} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
