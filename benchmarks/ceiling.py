"""The in-process ceiling: the model loop alone (no HTTP, no Redis), same model, threads and texts."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

from common.settings import ModelSettings
from worker.predictor import TransformersPredictor

Policy = Callable[[Sequence[str], TransformersPredictor], list[list[str]]]


def arrival_order(size: int) -> Policy:
    """Consecutive chunks of ``size`` texts, padded to the longest in the chunk (what the worker does)."""
    def batches(texts: Sequence[str], _p: TransformersPredictor) -> list[list[str]]:
        return [list(texts[i:i + size]) for i in range(0, len(texts), size)]
    return batches


def grouped_by_length(window: int, max_tokens: int) -> Policy:
    """Windows of ``window`` texts sorted by token length, cut into sub-batches of at most ``max_tokens``
    padded tokens (longest x count). Reference only: the worker does not group yet."""
    def batches(texts: Sequence[str], p: TransformersPredictor) -> list[list[str]]:
        out: list[list[str]] = []
        for start in range(0, len(texts), window):
            chunk = list(texts[start:start + window])
            lengths = [len(ids) for ids in p.tokenizer(chunk, truncation=True, max_length=p.max_length)["input_ids"]]
            current: list[str] = []
            longest = 0
            for length, text in sorted(zip(lengths, chunk), key=lambda pair: pair[0]):
                if current and max(longest, length) * (len(current) + 1) > max_tokens:
                    out.append(current)
                    current, longest = [], 0
                current.append(text)
                longest = max(longest, length)
            if current:
                out.append(current)
        return out
    return batches


def measure(predictor: TransformersPredictor, texts: Sequence[str], policy: Policy, repeats: int) -> dict:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        batches = policy(texts, predictor)  # grouping cost (tokenizing for lengths) counts
        for batch in batches:
            predictor.predict(batch)
        rates.append(len(texts) / (time.perf_counter() - started))
    return {"sentences_per_s": statistics.median(rates), "runs": rates, "texts": len(texts),
            "mean_batch": len(texts) / len(policy(texts, predictor))}


def measure_ceiling(model: str, texts: Sequence[str], *, torch_threads: int, max_batch_size: int, repeats: int,
                    n_batch1: int, n_batched: int) -> dict:
    predictor = TransformersPredictor(ModelSettings(model=model, device="cpu", torch_threads=torch_threads))
    predictor.warm_up(max_batch_size)
    policies: dict[str, tuple[Policy, int]] = {
        "batch_1": (arrival_order(1), n_batch1),
        f"arrival_{max_batch_size}": (arrival_order(max_batch_size), n_batched),
        "grouped_w64_t512": (grouped_by_length(64, 512), n_batched),
    }
    results = {name: measure(predictor, texts[:n], policy, repeats) for name, (policy, n) in policies.items()}
    del predictor
    gc.collect()
    return {"policies": results, "worker_policy": f"arrival_{max_batch_size}"}
