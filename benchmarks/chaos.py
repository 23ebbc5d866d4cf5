"""``python -m benchmarks.chaos``: load against Redis + API + workers while a scheduler SIGKILLs, freezes
(SIGSTOP/SIGCONT), gracefully restarts workers and restarts Redis (empty, as after a crash), all with default
settings. Every request is accounted for: answered correctly, or a documented fast error — 503 while Redis is
down (or its clients' waits were cut by the restart), 429 under overload — never a wrong answer, a 500, a 504 or
a hang.

Workers run ``BACKEND=simulated`` by default (a 20 ms + 1 ms/text pass, slept: the queueing system under test,
not the model; its score is a function of the text, so every answer is checked against its own text), or a real
model (``--model``), whose answers are checked against the same model run in-process on each text alone.

    python -m benchmarks.chaos                 # 180 s, random events (seeded), results in benchmarks/results/
    python -m benchmarks.chaos --quick         # 14 s, one event of each kind (the test suite runs this)
    python -m benchmarks.chaos --model ../shared/models/minilm-sst2 --workers 2 --clients 64 --seconds 40 \
        --schedule sigkill@12 --name chaos-minilm-sigkill   # one scenario, a real model, answers checked
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.chaos_cluster import Chaos, Judge
from benchmarks.environment import cpu_model, git_commit
from benchmarks.report import save_report
from engine.simulated import SIMULATED_LABEL, simulated_score
from harness.corpus import load_sentences

RESULTS = Path(__file__).resolve().parent / "results"
SIMULATED_ENV = dict(BACKEND="simulated", SIMULATED_BATCH_MS="20", SIMULATED_TEXT_MS="1", LOG_LEVEL="INFO")
# A real model's answer to a text batched among others equals its answer alone to ~1e-7 in fp32.
SCORE_TOLERANCE = 1e-4


def random_schedule(seconds: float, rng: random.Random) -> list[tuple[float, str]]:
    """An event every 3-8 s until 20 s before the end (the last ones drain), kinds at random."""
    schedule, at = [], 5.0
    while at < seconds - 20:
        schedule.append((at, rng.choice(["sigkill", "sigkill", "sigstop", "restart", "redis"])))
        at += rng.uniform(3, 8)
    return schedule


QUICK_SECONDS = 14.0
# One event of each kind, none overlapping another; the kill and the freeze each strike a worker holding work
# (Chaos: holding_victims). The freeze lasts 6.5 s: past the longest lease (a third of REQUEST_TIMEOUT_S, 3.3 s, where
# the first passes ran slow on a busy machine; WORK_LEASE_S, 2 s, otherwise) plus a reaper run (HEARTBEAT_INTERVAL_S,
# 1 s), with 2 s to spare, so that its window is taken back as a stalled one's. The kill comes after the frozen
# worker resumed (killed while frozen, its window would be taken back as a dead one's instead); the restarts follow,
# and the last 2.5 s run on the restarted Redis.
QUICK_SCHEDULE = [(1.5, "sigstop:6.5"), (8.5, "sigkill"), (10.0, "restart"), (11.5, "redis")]


def recoveries(logs: Path) -> Counter[str]:
    """What the workers' logs say they took back from others (worker/recovery.py's messages)."""
    found: Counter[str] = Counter()
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "is gone (no connection to Redis)" in line:
                found["windows of killed workers re-queued"] += 1
            elif "stalled holding" in line:
                found["windows of frozen workers re-queued"] += 1
            elif "held its window past its lease" in line:
                found["resumed workers that dropped a window taken back"] += 1
    return found


def settings_note(args: argparse.Namespace) -> str:
    if args.model is None:
        return "defaults (BACKEND=simulated, 20 ms + 1 ms/text)"
    return f"defaults (model {args.model}, torch fp32, TORCH_THREADS=1)"


def simulated_judge(text: str, label: str, score: float) -> bool:
    return (label, score) == (SIMULATED_LABEL, simulated_score(text))


def model_judge(model: Path, sentences: list[str]) -> Judge:
    """Each text's answer computed in-process, one text at a time (the service's must match it)."""
    from engine.hf_predictor import TransformersPredictor
    from engine.settings import ModelSettings

    predictor = TransformersPredictor(ModelSettings(model=str(model), torch_threads=1))
    expected = {text: predictor.predict([text])[0] for text in sentences}

    def right(text: str, label: str, score: float) -> bool:
        want = expected[text]
        return label == want.label and abs(score - want.score) <= SCORE_TOLERANCE

    return right


def parse_schedule(spec: str) -> list[tuple[float, str]]:
    """``"sigkill@12,sigstop:15@12"``: events at seconds from the start."""
    events = []
    for part in filter(None, spec.split(",")):
        kind, _, at = part.partition("@")
        events.append((float(at), kind.strip()))
    return sorted(events)


def report(chaos: Chaos, args: argparse.Namespace, seconds: float) -> dict:
    counts = chaos.counted + chaos.worker_counts()
    return {
        "cpu": cpu_model(), "commit": git_commit(), "seconds": seconds, "workers": args.workers,
        "clients": args.clients, "seed": args.seed, "settings": settings_note(args),
        "events": dict(chaos.events), "outcomes": dict(chaos.outcomes), "requests": sum(chaos.outcomes.values()),
        "texts_answered": chaos.texts_answered, "worker_counts": dict(counts),
        # Texts run beyond those answered: re-runs of taken-back windows whose first answer also went out (the API
        # keeps the first), plus texts whose clients got a 503 when Redis restarted.
        "texts_run_beyond_answered": counts["texts"] - chaos.texts_answered,
        "recoveries": dict(recoveries(chaos.workdir)), "unacceptable": chaos.bad, "ok": not chaos.bad,
    }


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(result["outcomes"].items()))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["worker_counts"].items()))
    recovered = ", ".join(f"{k}: {v}" for k, v in sorted(result["recoveries"].items())) or "none"
    events = ", ".join(f"{k} {v}" for k, v in sorted(result["events"].items()))
    return (f"# Chaos soak ({result['seconds']:.0f} s)\n\nCPU: {result['cpu']}; commit {result['commit']}; "
            f"{result['workers']} workers, {result['clients']} closed-loop clients, seed {result['seed']}; "
            f"{result['settings']}.\n\nEvents: {events}.\n\n| outcome | requests |\n|---|---|\n{rows}\n\n"
            f"Texts answered: {result['texts_answered']}. Worker counters (summed over Redis lifetimes): {counts}; "
            f"texts run beyond those answered: {result['texts_run_beyond_answered']}.\n\n"
            f"Recoveries (from the workers' logs): {recovered}.\n\n"
            f"Unacceptable outcomes: {len(result['unacceptable'])}.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s, one event of each kind")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a real model directory (torch fp32) instead of simulated workers")
    parser.add_argument("--schedule", help="fixed events instead of random ones, e.g. 'sigkill@12' or "
                                           "'sigstop:15@12' (kinds: sigkill, sigstop[:seconds], restart, redis)")
    parser.add_argument("--name", help="result file name (default chaos, or chaos-quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where <name>.{json,md} go")
    args = parser.parse_args(argv)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    rng = random.Random(args.seed)
    if args.schedule:
        schedule = parse_schedule(args.schedule)
    else:
        schedule = QUICK_SCHEDULE if args.quick else random_schedule(seconds, rng)
    sentences, _ = load_sentences()
    if args.model is None:
        env, right = SIMULATED_ENV, simulated_judge
    else:
        env = dict(MODEL=str(args.model), TORCH_THREADS="1", LOG_LEVEL="INFO")
        right = model_judge(args.model, sentences)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        chaos = Chaos(Path(tmp), env, workers=args.workers, clients=args.clients, seed=args.seed, right=right,
                      holding_victims=args.quick)
        try:
            asyncio.run(chaos.run(seconds, schedule, sentences))
            result = report(chaos, args, seconds)
        finally:
            chaos.stop()
    name = args.name or ("chaos-quick" if args.quick else "chaos")
    save_report(args.out / name, result, markdown(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
