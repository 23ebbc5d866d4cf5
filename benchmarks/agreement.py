"""Backends side by side: agreement with the PyTorch fp32 reference on SST-2 dev (a trained model), which
classes each backend **exact** (every label equal, every score within 1e-4) or **approximate**, and speed
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
from engine.autotune.choice import EXACT_TOLERANCE
from engine.cpu import cpu_bf16_support
from engine.hf_predictor import TransformersPredictor
from engine.predictor import predict_by_length
from engine.runtimes import BACKENDS, REFERENCE, installed
from engine.settings import ModelSettings
from harness.corpus import read_sst2, sst2_path
from harness.processes import ROOT

DEFAULT_TRAINED = ROOT.parent / "shared" / "models" / "minilm-sst2"


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if installed(b)]


def p_positive(prediction: Prediction) -> float:
    return prediction.score if prediction.label == "POSITIVE" else 1.0 - prediction.score


def agreement(model: str, rows: list[tuple[str, int]], threads: int, backends: list[str] | None = None) -> dict:
    """Each backend's answers on ``rows`` against the reference's: labels, scores, accuracy, and its class."""
    backends = backends or installed_backends()
    sentences = [s for s, _ in rows]
    answers = {}
    for backend in [REFERENCE] + [b for b in backends if b != REFERENCE]:
        predictor = TransformersPredictor(ModelSettings(model=model, backend=backend, torch_threads=threads,
                                                        device="cpu"))
        answers[backend] = predict_by_length(predictor, sentences)
    reference = answers[REFERENCE]

    def accuracy(predictions: list[Prediction]) -> float:
        return sum((p.label == "POSITIVE") == bool(y) for p, (_, y) in zip(predictions, rows)) / len(rows)

    out: dict = {"sentences": len(rows), "accuracy": {REFERENCE: accuracy(reference)}, "backends": {},
                 "exact_tolerance": EXACT_TOLERANCE}
    for backend in answers:
        if backend == REFERENCE:
            continue
        fast = answers[backend]
        deltas = [abs(p_positive(a) - p_positive(b)) for a, b in zip(reference, fast)]
        labels_equal = sum(a.label == b.label for a, b in zip(reference, fast))
        out["accuracy"][backend] = accuracy(fast)
        out["backends"][backend] = {
            "labels_equal": labels_equal,
            "label_agreement": labels_equal / len(rows),
            "max_abs_p_positive_diff": max(deltas),
            "mean_abs_p_positive_diff": statistics.fmean(deltas),
            "class": "exact" if labels_equal == len(rows) and max(deltas) <= EXACT_TOLERANCE else "approximate",
        }
    return out


def speed(model: str, sentences: list[str], threads: int, repeats: int) -> dict:
    out = {}
    for backend in installed_backends():
        predictor = TransformersPredictor(ModelSettings(model=model, backend=backend, torch_threads=threads,
                                                        device="cpu"))
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
        from engine.offline.make_model import main as make_model

        make_model(["bench", args.speed_model, "--if-missing"])
    result = {"agreement_model": str(args.model.name), "speed_model": Path(args.speed_model).name,
              "threads": args.threads, "agreement": agreement(str(args.model), rows, args.threads),
              "speed": speed(args.speed_model, sentences, args.threads, args.repeats)}
    a, s = result["agreement"], result["speed"]
    lines = [
        f"# Backends: agreement on SST-2 dev ({a['sentences']} sentences, {result['agreement_model']}) and speed "
        f"({result['speed_model']}, {args.threads} threads, in-process, median of {args.repeats})", "",
        "| backend | class | accuracy | labels equal to torch fp32 | max / mean abs diff of P(positive) | "
        "batch 1 /s | grouped w64 t512 /s |", "|---|---|---|---|---|---|---|",
        f"| {REFERENCE} fp32 (reference) | exact | {a['accuracy'][REFERENCE]:.4f} | — | — | "
        f"{s[REFERENCE]['batch_1']:.1f} | {s[REFERENCE]['grouped_w64_t512']:.1f} |",
    ]
    for backend, b in a["backends"].items():
        lines.append(
            f"| {backend} | {b['class']} | {a['accuracy'][backend]:.4f} | {b['labels_equal']}/{a['sentences']} | "
            f"{b['max_abs_p_positive_diff']:.2g} / {b['mean_abs_p_positive_diff']:.2g} | {s[backend]['batch_1']:.1f} | "
            f"{s[backend]['grouped_w64_t512']:.1f} |")
    lines += ["", f"Exact: every label equal to PyTorch fp32 and max |diff| <= {EXACT_TOLERANCE:g}. CPU: {cpu_model()}; "
              f"bf16 matrix instructions: {cpu_bf16_support() or 'none'}."]
    save_report(args.out, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
