"""``python -m benchmarks``: the naive server and the batched service side by side, plus the model's ceiling.

    python -m benchmarks                     # full run (~15 min on 2 cores): 10/50/100 users x 3 repeats
    python -m benchmarks --quick --model M   # smoke run (seconds), e.g. with a tiny model

Results: benchmarks/results/<name>.json, .md and PNG charts; raw Locust files and logs in benchmarks/runs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from benchmarks.ceiling import measure_ceiling, merge
from benchmarks.environment import cpu_model, git_commit
from benchmarks.load import median_of, run_locust, run_open_loop
from benchmarks.report import markdown, ratios, save_report, write_charts
from benchmarks.systems import Lineup, System, batched_system, litserve_system, naive_system, warm_up
from common.counters import PHASES
from harness.corpus import load_sentences
from harness.processes import ROOT


def ensure_model(model: str | None) -> tuple[str, str]:
    if model:
        return model, "given"
    from engine.offline.make_model import main as make_model

    path = ROOT / "models" / "bench"
    make_model(["bench", str(path), "--if-missing"])
    return str(path), "bench: DistilBERT-SST-2 size, RANDOM weights (same compute, meaningless labels)"


def measure_system(system: System, users_levels: list[int], args: argparse.Namespace, run_dir: Path) -> tuple[dict, dict, dict]:
    levels: dict = {}
    profile: dict = {}
    batch_sizes: dict = {}
    for users in users_levels:
        runs, cpu_runs = [], []
        sizes_total: dict[int, int] = {}
        profile_total = dict.fromkeys(PHASES, 0.0)
        for repeat in range(args.repeats):
            cpu0, sizes0, prof0, t0 = system.cpu(), system.batch_sizes(), system.worker_profile(), time.time()
            result = run_locust(system.url, users, args.warmup, args.duration, run_dir, f"{system.name}_u{users}_r{repeat}")
            elapsed = time.time() - t0
            cpu1, sizes1, prof1 = system.cpu(), system.batch_sizes(), system.worker_profile()
            cpu_runs.append({role: 100 * (cpu1[role] - cpu0[role]) / elapsed for role in cpu0})
            for size, count in sizes1.items():
                sizes_total[size] = sizes_total.get(size, 0) + count - sizes0.get(size, 0)
            for key in profile_total:
                profile_total[key] += prof1.get(key, 0.0) - prof0.get(key, 0.0)
            runs.append(result)
            print(f"  {system.name:8s} users={users:<4d} repeat {repeat + 1}: {result.rps:6.1f} req/s, "
                  f"p50 {result.p50_ms:6.0f} ms, p99 {result.p99_ms:6.0f} ms, failures {result.failures}, "
                  f"locust CPU {result.generator_cpu_pct:.0f} %", flush=True)
        levels[str(users)] = {
            "median": median_of(runs), "runs": [r.as_dict() for r in runs],
            "cpu_pct": {role: statistics.median(c[role] for c in cpu_runs) for role in cpu_runs[0]},
        }
        profile, batch_sizes = profile_total, {k: v for k, v in sizes_total.items() if v}
    return levels, profile, batch_sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory or hub id (default: build/reuse models/bench)")
    parser.add_argument("--name", help="results name (default: date and commit)")
    parser.add_argument("--users", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds excluded at the start of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="batched service workers")
    parser.add_argument("--torch-threads", type=int,
                        help="torch threads per model process (default 2; quick: 1, as its processes run side by side)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-batch-tokens", type=int, default=512)
    parser.add_argument("--backend", default="torch", help="BACKEND of the batched service and its ceiling")
    parser.add_argument("--naive-backend", default="torch", help="BACKEND of the naive server")
    parser.add_argument("--peers", nargs="*", default=["litserve"], choices=["litserve"],
                        help="other servers measured in the same run with the same load and model (none: --peers)")
    parser.add_argument("--litserve-max-batch-size", type=int, default=8)
    parser.add_argument("--litserve-batch-timeout", type=float, default=0.01, help="seconds (default: best of benchmarks.peers.tune_litserve here)")
    parser.add_argument("--open-loop-rate", type=float, default=0.0,
                        help="requests/s for the open-loop run (0: midway between the two systems' top RPS)")
    parser.add_argument("--open-loop-duration", type=float, default=20.0)
    parser.add_argument("--ceiling-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 8 users, 2 s runs, one repeat, the systems started at once and reused")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.torch_threads is None:
        args.torch_threads = 1 if args.quick else 2
    if args.quick:
        args.users, args.duration, args.warmup, args.repeats = [8], 2.0, 0.0, 1
        args.open_loop_duration, args.ceiling_repeats = 1.0, 1

    model, model_note = ensure_model(args.model)
    sentences, source = load_sentences()
    random.Random(0).shuffle(sentences)
    commit = git_commit()
    name = args.name or f"{dt.date.today().isoformat()}-{commit}"
    run_dir = ROOT / "benchmarks" / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    environment = {
        "model": model, "model_note": model_note, "torch": torch.__version__, "torch_threads": args.torch_threads,
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": commit, "python": platform.python_version(), "texts": source, "warmup_s": args.warmup,
        "measure_s": args.duration, "repeats": args.repeats, "workers": args.workers,
        "max_batch_size": args.max_batch_size, "max_batch_tokens": args.max_batch_tokens,
        "backend_batched": args.backend, "backend_naive": args.naive_backend, "think_time": "uniform 0-1 s (locustfile default)",
    }
    if "litserve" in args.peers:
        import litserve

        environment["litserve"] = {
            "version": litserve.__version__, "max_batch_size": args.litserve_max_batch_size,
            "batch_timeout_s": args.litserve_batch_timeout,
            "note": f"backend {args.backend}, {args.torch_threads} torch threads, arrival-order batches",
        }
    print(f"benchmark {name}: model {model}, texts {source}", flush=True)

    def ceiling_now(when: str) -> dict:
        print(f"in-process ceiling ({when}) ...", flush=True)
        measured = measure_ceiling(model, sentences, torch_threads=args.torch_threads, backend=args.backend,
                                   max_batch_size=args.max_batch_size, max_batch_tokens=args.max_batch_tokens,
                                   repeats=args.ceiling_repeats, n_batch1=32 if args.quick else 160,
                                   n_batched=64 if args.quick else 512)
        for policy, r in measured["policies"].items():
            print(f"  {policy}: {r['sentences_per_s']:.1f} sentences/s", flush=True)
        return measured

    model_env = {"TORCH_THREADS": str(args.torch_threads), "LOG_LEVEL": "WARNING", "BACKEND": args.naive_backend}
    batched_env = {**model_env, "BACKEND": args.backend, "MAX_BATCH_SIZE": str(args.max_batch_size),
                   "MAX_BATCH_TOKENS": str(args.max_batch_tokens), "REQUEST_TIMEOUT_S": "60",
                   "MAX_QUEUE_DEPTH": "100000"}
    results: dict = {"name": name, "environment": environment, "closed_loop": {}, "open_loop": {}}
    peer_env = {**model_env, "BACKEND": args.backend}  # the peer runs the batched service's backend

    # Full runs: each system starts when its turn comes and stops after it, the open loop on fresh ones. Quick
    # runs start them in the background from the first ceiling on (Lineup), give the open loop the closed loop's
    # naive server and batched service, and stop them in the background (during the second ceiling and charts).
    with Lineup(ahead=args.quick) as lineup:
        naive_closed = lineup.add(lambda: naive_system(model, run_dir, model_env))
        peer = (lineup.add(lambda: litserve_system(model, run_dir, peer_env,
                                                   max_batch_size=args.litserve_max_batch_size,
                                                   batch_timeout_s=args.litserve_batch_timeout))
                if "litserve" in args.peers else None)
        batched_closed = lineup.add(lambda: batched_system(model, run_dir, batched_env, workers=args.workers))
        naive_open = naive_closed if args.quick else lineup.add(lambda: naive_system(model, run_dir, model_env))
        batched_open = batched_closed if args.quick else lineup.add(
            lambda: batched_system(model, run_dir, batched_env, workers=args.workers))

        ceiling_before = ceiling_now("before the load runs")

        print("naive server ...", flush=True)
        naive = lineup.get(naive_closed)
        warm_up(naive.url, sentences)
        results["closed_loop"]["naive"], _, _ = measure_system(naive, args.users, args, run_dir)
        if naive_open is not naive_closed:
            lineup.stop(naive_closed)
        if peer is not None:
            print("LitServe ...", flush=True)
            system = lineup.get(peer)
            warm_up(system.url, sentences)
            results["closed_loop"]["litserve"], _, _ = measure_system(system, args.users, args, run_dir)
            lineup.stop(peer)
        print("batched service ...", flush=True)
        batched = lineup.get(batched_closed)
        warm_up(batched.url, sentences)
        results["closed_loop"]["batched"], results["worker_profile"], results["batch_sizes"] = measure_system(
            batched, args.users, args, run_dir)
        if batched_open is not batched_closed:
            lineup.stop(batched_closed)

        top = str(max(args.users))
        rate = args.open_loop_rate or (results["closed_loop"]["naive"][top]["median"]["rps"]
                                       + results["closed_loop"]["batched"][top]["median"]["rps"]) / 2
        results["open_loop_rate"] = rate
        print(f"open loop at {rate:.1f} requests/s ...", flush=True)
        for label, entry in (("naive", naive_open), ("batched", batched_open)):
            system = lineup.get(entry)
            warm_up(system.url, sentences)
            results["open_loop"][label] = run_open_loop(system.url, rate, args.open_loop_duration, sentences).as_dict()
            lineup.stop(entry)
        for system, r in results["open_loop"].items():
            print(f"  {system}: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, failures {r['failures']}",
                  flush=True)

        results["ceiling"] = ceiling = merge(ceiling_before, ceiling_now("after the load runs"))
        results["ratios"] = ratios(results)
        policy_rate = ceiling["policies"][ceiling["worker_policy"]]["sentences_per_s"]
        results["ceiling_ratios"] = {
            f"batched service RPS at {top} users / in-process ceiling of its policy ({ceiling['worker_policy']})":
                results["closed_loop"]["batched"][top]["median"]["rps"] / policy_rate,
        }
        if args.naive_backend == args.backend:  # the ceiling is the batched backend's: only then one for naive
            results["ceiling_ratios"][f"naive server RPS at {top} users / in-process batch-1 ceiling"] = (
                results["closed_loop"]["naive"][top]["median"]["rps"]
                / ceiling["policies"]["batch_1"]["sentences_per_s"])
        results["charts"] = [Path(c).name for c in write_charts(results, args.out, name)]
        save_report(args.out / name, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
