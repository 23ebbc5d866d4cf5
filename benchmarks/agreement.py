"""Backends side by side: agreement with the PyTorch reference on SST-2 dev (a trained model) and speed
in-process (the bench model, the worker's batch policy).

    python -m benchmarks.agreement [--model ../shared/models/minilm-sst2] [--speed-model models/bench]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

from benchmarks.ceiling import arrival_order, grouped_by_length, measure
from benchmarks.environment import cpu_model
from benchmarks.report import save_report
from common.protocol import Prediction
from common.settings import ModelSettings
from harness.corpus import read_sst2, sst2_path
from harness.processes import ROOT
from worker.predictor import TransformersPredictor, cpu_bf16_support

REFERENCE = "torch"
BACKENDS = (REFERENCE, "torch-bf16", "torch-int8")
DEFAULT_TRAINED = ROOT.parent / "shared" / "models" / "minilm-sst2"


def p_positive(prediction: Prediction) -> float:
    return prediction.score if prediction.label == "POSITIVE" else 1.0 - prediction.score


def agreement(model: str, rows: list[tuple[str, int]], threads: int) -> dict:
    sentences = [s for s, _ in rows]
    answers = {}
    for backend in BACKENDS:
        predictor = TransformersPredictor(ModelSettings(model=model, backend=backend, torch_threads=threads))
        answers[backend] = [p for i in range(0, len(sentences), 32) for p in predictor.predict(sentences[i:i + 32])]
    reference = answers[REFERENCE]

    def accuracy(predictions: list[Prediction]) -> float:
        return sum((p.label == "POSITIVE") == bool(y) for p, (_, y) in zip(predictions, rows)) / len(rows)

    out: dict = {"sentences": len(rows), "accuracy": {REFERENCE: accuracy(reference)}, "backends": {}}
    for backend in BACKENDS[1:]:
        fast = answers[backend]
        deltas = [abs(p_positive(a) - p_positive(b)) for a, b in zip(reference, fast)]
        out["accuracy"][backend] = accuracy(fast)
        out["backends"][backend] = {
            "label_agreement": sum(a.label == b.label for a, b in zip(reference, fast)) / len(rows),
            "max_abs_p_positive_diff": max(deltas),
            "mean_abs_p_positive_diff": statistics.fmean(deltas),
        }
    return out


def speed(model: str, sentences: list[str], threads: int, repeats: int) -> dict:
    out = {}
    for backend in BACKENDS:
        predictor = TransformersPredictor(ModelSettings(model=model, backend=backend, torch_threads=threads))
        predictor.warm_up(64)
        out[backend] = {
            "batch_1": measure(predictor, sentences[:160], arrival_order(1), repeats)["sentences_per_s"],
            "grouped_w64_t512": measure(predictor, sentences[:512], grouped_by_length(64, 512), repeats)["sentences_per_s"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_TRAINED, help="a trained SST-2 classifier")
    parser.add_argument("--speed-model", default=str(ROOT / "models" / "bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backends")
    args = parser.parse_args(argv)
    if not sst2_path().is_file() or not (args.model / "config.json").is_file():
        print(f"needs SST-2 dev ({sst2_path()}) and a trained model ({args.model})", file=sys.stderr)
        return 2
    rows = read_sst2(sst2_path())
    sentences = [s for s, _ in rows]
    random.Random(0).shuffle(sentences)
    if not Path(args.speed_model).exists():
        from worker.make_model import main as make_model

        make_model(["bench", args.speed_model, "--if-missing"])
    result = {"agreement_model": str(args.model.name), "speed_model": Path(args.speed_model).name,
              "threads": args.threads, "agreement": agreement(str(args.model), rows, args.threads),
              "speed": speed(args.speed_model, sentences, args.threads, args.repeats)}
    a, s = result["agreement"], result["speed"]
    lines = [
        f"# Backends: agreement on SST-2 dev ({a['sentences']} sentences, {result['agreement_model']}) and speed "
        f"({result['speed_model']}, {args.threads} threads, in-process, median of {args.repeats})", "",
        "| backend | accuracy | label agreement with torch | max / mean abs diff of P(positive) | batch 1 /s | "
        "grouped w64 t512 /s |", "|---|---|---|---|---|---|",
        f"| {REFERENCE} (reference) | {a['accuracy'][REFERENCE]:.4f} | — | — | {s[REFERENCE]['batch_1']:.1f} | "
        f"{s[REFERENCE]['grouped_w64_t512']:.1f} |",
    ]
    for backend, b in a["backends"].items():
        lines.append(
            f"| {backend} | {a['accuracy'][backend]:.4f} | {100 * b['label_agreement']:.2f} % | "
            f"{b['max_abs_p_positive_diff']:.4f} / {b['mean_abs_p_positive_diff']:.4f} | {s[backend]['batch_1']:.1f} | "
            f"{s[backend]['grouped_w64_t512']:.1f} |")
    lines += ["", f"CPU: {cpu_model()}; bf16 matrix instructions: {cpu_bf16_support() or 'none'}."]
    save_report(args.out, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
