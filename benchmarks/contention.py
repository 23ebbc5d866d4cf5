"""``python -m benchmarks.contention``: what sharing the cores costs the model, in-process.

In the service the worker's forward passes share the machine with the API, Redis and the load generator, which
wake thousands of times a second for a fraction of a millisecond each. This measures a backend's in-process rate at
the worker's policy (windows grouped within a token budget) alone and while a competitor process takes a given
share of one core in short bursts, like those processes do. Each share is measured in alternating rounds (a shared
VM's speed drifts), and the competitor's share is measured, not assumed. A multi-threaded pass loses more than the
CPU it gives up: a thread preempted mid-operation holds up the others at the next synchronisation point.

    python -m benchmarks.contention [--backend torch-bf16] [--shares 0 0.09 0.18] [--burst-ms 0.5] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import random
import statistics
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from benchmarks.__main__ import ensure_model
from benchmarks.ceiling import Policy, grouped_by_length, measure
from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from engine.cpu import cpu_bf16_support
from engine.hf_predictor import TransformersPredictor
from engine.settings import ModelSettings
from harness.corpus import load_sentences
from harness.processes import ROOT, cpu_seconds


def compete(share: float, burst_s: float, ready: Event, stop: Event) -> None:
    """Busy for ``burst_s``, then asleep long enough that the busy part is ``share`` of the time, until ``stop``.
    ``ready``: set once started (a spawned child first imports its parent's main module, which takes CPU too)."""
    idle_s = burst_s * (1 - share) / share
    ready.set()
    while not stop.is_set():
        began = time.perf_counter()
        while time.perf_counter() - began < burst_s:
            pass
        time.sleep(idle_s)


# The competitor's share is measured over at least this long: over a few milliseconds its bursts and sleeps would
# not average out (quick runs with the tiny model take that little).
MIN_MEASURED_S = 1.0


def runs_for(predictor: TransformersPredictor, texts: list[str], policy: Policy, repeats: int) -> list[float]:
    """Sentences/s of at least ``repeats`` runs over ``texts``, and as many more as MIN_MEASURED_S takes."""
    runs: list[float] = []
    began = time.perf_counter()
    while len(runs) < repeats or time.perf_counter() - began < MIN_MEASURED_S:
        runs += measure(predictor, texts, policy, 1)["runs"]
    return runs


def rate_with_competitor(predictor: TransformersPredictor, texts: list[str], window: int, budget: int, share: float,
                         burst_s: float, repeats: int) -> tuple[list[float], float]:
    """Sentences/s of the runs with a competitor at ``share`` of a core (0: none), and the share it took."""
    policy = grouped_by_length(window, budget)
    if share <= 0:
        return runs_for(predictor, texts, policy, repeats), 0.0
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    competitor = spawn.Process(target=compete, args=(share, burst_s, ready, stop))
    competitor.start()
    try:
        if not ready.wait(timeout=120):
            raise RuntimeError("the competitor process did not start")
        time.sleep(0.2)  # in its rhythm
        cpu0, began = cpu_seconds(competitor.pid), time.perf_counter()
        runs = runs_for(predictor, texts, policy, repeats)
        taken = (cpu_seconds(competitor.pid) - cpu0) / (time.perf_counter() - began)
    finally:
        stop.set()
        competitor.join(timeout=10)
    return runs, taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: models/bench)")
    parser.add_argument("--backend", default="torch-bf16")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the worker's default: 2)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-batch-tokens", type=int, default=512)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.09, 0.18],
                        help="the competitor's share of one core; 0: none. The first is what 'of alone' compares "
                             "with")
    parser.add_argument("--burst-ms", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the shares")
    parser.add_argument("--repeats", type=int, default=2, help="runs over the texts per share and round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 texts, one round, one run")
    parser.add_argument("--name", default="contention")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats = 1, 1
    model, model_note = ensure_model(args.model)
    texts, source = load_sentences()
    random.Random(0).shuffle(texts)
    texts = texts[:64] if args.quick else texts
    predictor = TransformersPredictor(ModelSettings(model=model, device="cpu", torch_threads=args.threads,
                                                    backend=args.backend))
    predictor.warm_up(args.max_batch_size)
    measure(predictor, texts, grouped_by_length(args.max_batch_size, args.max_batch_tokens), 1)  # its shapes, once
    runs: dict[float, list[float]] = {share: [] for share in args.shares}
    taken: dict[float, list[float]] = {share: [] for share in args.shares}
    for _ in range(args.rounds):
        for share in args.shares:
            rates, took = rate_with_competitor(predictor, texts, args.max_batch_size, args.max_batch_tokens, share,
                                               args.burst_ms / 1000, args.repeats)
            runs[share] += rates
            taken[share].append(took)
    alone = statistics.median(runs[args.shares[0]])
    rows = [{"share": share, "taken": statistics.median(taken[share]), "sentences_per_s": statistics.median(runs[share]),
             "runs": runs[share], "of_alone": statistics.median(runs[share]) / alone} for share in args.shares]
    result = {"model": model, "model_note": model_note, "texts": source, "backend": args.backend,
              "threads": args.threads, "policy": f"grouped_w{args.max_batch_size}_t{args.max_batch_tokens}",
              "burst_ms": args.burst_ms, "rounds": args.rounds, "repeats": args.repeats, "cpu_model": cpu_model(),
              "bf16": cpu_bf16_support(), "date": dt.datetime.now().isoformat(timespec="seconds"),
              "commit": git_commit(), "rows": rows}
    save_report(args.out / args.name, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [f"# Contention: {result['backend']} in-process at {result['policy']}, {result['threads']} threads, "
             f"beside a competitor in {result['burst_ms']:g} ms bursts", "",
             f"{result['model_note']}; {result['texts']}; {result['cpu_model']} (bf16: {result['bf16'] or 'none'}); "
             f"{result['rounds']} alternating rounds x {result['repeats']} runs, medians; {result['date']}, commit "
             f"`{result['commit']}`.", "",
             "| competitor (target % of one core) | taken (% of one core) | sentences/s | runs | of alone |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {100 * row['share']:.0f} | {100 * row['taken']:.1f} | {row['sentences_per_s']:.1f} | "
                     f"{', '.join(f'{r:.0f}' for r in row['runs'])} | {100 * row['of_alone']:.0f} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
