"""``python -m benchmarks.peers.tune_litserve``: give the peer its best settings before comparing with it.

LitServe's batching has two knobs, ``max_batch_size`` and ``batch_timeout``. This sweeps a grid of both under
the benchmark's heaviest load (Locust, 100 users, same texts and model as ``python -m benchmarks``) and writes
the table; the best RPS (ties: lower p99) is what ``python -m benchmarks --litserve-max-batch-size/
--litserve-batch-timeout`` should get.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from benchmarks.__main__ import ensure_model
from benchmarks.load import run_locust
from benchmarks.report import save_report
from benchmarks.systems import litserve_system, warm_up
from harness.corpus import load_sentences
from harness.processes import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: models/bench)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--timeouts", type=float, nargs="+", default=[0.002, 0.01, 0.05], help="seconds")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "litserve-tuning")
    args = parser.parse_args(argv)

    model, _ = ensure_model(args.model)
    sentences, _ = load_sentences()
    random.Random(0).shuffle(sentences)
    run_dir = ROOT / "benchmarks" / "runs" / "litserve-tuning"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"TORCH_THREADS": str(args.torch_threads), "LOG_LEVEL": "WARNING", "BACKEND": args.backend}
    rows = []
    for size in args.batch_sizes:
        for timeout in args.timeouts:
            with litserve_system(model, run_dir, env, max_batch_size=size, batch_timeout_s=timeout) as peer:
                warm_up(peer.url, sentences)
                r = run_locust(peer.url, args.users, args.warmup, args.duration, run_dir, f"ls_b{size}_t{timeout}")
            rows.append({"max_batch_size": size, "batch_timeout_s": timeout, **r.as_dict()})
            print(f"  max_batch_size={size:<3d} batch_timeout={timeout:<6g}: {r.rps:6.1f} req/s, "
                  f"p50 {r.p50_ms:5.0f} ms, p99 {r.p99_ms:5.0f} ms, failures {r.failures}", flush=True)
    best = max(rows, key=lambda r: (r["rps"], -r["p99_ms"]))
    lines = [f"# LitServe tuning: {args.users} users, backend {args.backend}, {args.duration:g} s per point", "",
             "| max_batch_size | batch_timeout s | RPS | p50 ms | p99 ms | failures |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['max_batch_size']} | {r['batch_timeout_s']:g} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['failures']} |" for r in rows]
    lines += ["", f"Best: max_batch_size={best['max_batch_size']}, batch_timeout={best['batch_timeout_s']:g} s."]
    save_report(args.out, {"rows": rows, "best": best, "users": args.users, "backend": args.backend},
                "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
