"""The in-process ceiling: the model loop alone (no HTTP, no Redis), same model, threads and texts."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

from common.options import DEFAULT_OPTIONS, Query
from engine.batching import plan_batches
from engine.hf_predictor import TransformersPredictor
from engine.settings import ModelSettings
from engine.tokenizing import Encoding

Policy = Callable[[Sequence[str], TransformersPredictor], list[list[Encoding]]]


def arrival_order(size: int) -> Policy:
    """Consecutive chunks of ``size`` texts, each padded to its longest (the worker with MAX_BATCH_TOKENS=0)."""
    def batches(texts: Sequence[str], p: TransformersPredictor) -> list[list[Encoding]]:
        out: list[list[Encoding]] = []
        for i in range(0, len(texts), size):
            out.append(p.tokenize([Query(t) for t in texts[i:i + size]]))
        return out
    return batches


def grouped_by_length(window: int, max_tokens: int) -> Policy:
    """Windows of ``window`` texts, tokenized once and split by the worker's own planner (engine.batching)."""
    def batches(texts: Sequence[str], p: TransformersPredictor) -> list[list[Encoding]]:
        out: list[list[Encoding]] = []
        for start in range(0, len(texts), window):
            encodings = p.tokenize([Query(t) for t in texts[start:start + window]])
            for batch in plan_batches([len(e) for e in encodings], max_tokens):
                out.append([encodings[i] for i in batch])
        return out
    return batches


def measure(predictor: TransformersPredictor, texts: Sequence[str], policy: Policy, repeats: int) -> dict:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        batches = policy(texts, predictor)  # tokenizing (once, as the worker does) counts
        for batch in batches:
            predictor.run(batch, [DEFAULT_OPTIONS] * len(batch))
        rates.append(len(texts) / (time.perf_counter() - started))
    return {"sentences_per_s": statistics.median(rates), "runs": rates, "texts": len(texts),
            "mean_batch": len(texts) / len(policy(texts, predictor))}


def measure_ceiling(model: str, texts: Sequence[str], *, torch_threads: int, max_batch_size: int,
                    max_batch_tokens: int, repeats: int, n_batch1: int, n_batched: int, backend: str = "torch",
                    export_cache_dir: str | None = None, worker_policy_only: bool = False) -> dict:
    """Sentences/s in-process for batch 1, arrival-order batches and the worker's own policy (``worker_policy_only``:
    that one alone)."""
    cache = {"export_cache_dir": export_cache_dir} if export_cache_dir else {}
    predictor = TransformersPredictor(ModelSettings(model=model, device="cpu", torch_threads=torch_threads,
                                                    backend=backend, **cache))
    predictor.warm_up(max_batch_size)
    worker_policy = (f"grouped_w{max_batch_size}_t{max_batch_tokens}" if max_batch_tokens > 0
                     else f"arrival_{max_batch_size}")
    policies: dict[str, tuple[Policy, int]] = {
        "batch_1": (arrival_order(1), n_batch1),
        "arrival_16": (arrival_order(16), n_batched),
        f"arrival_{max_batch_size}": (arrival_order(max_batch_size), n_batched),
    }
    if max_batch_tokens > 0:
        policies[worker_policy] = (grouped_by_length(max_batch_size, max_batch_tokens), n_batched)
    if worker_policy_only:
        policies = {worker_policy: policies[worker_policy]}
    results = {name: measure(predictor, texts[:n], policy, repeats) for name, (policy, n) in policies.items()}
    del predictor
    gc.collect()
    return {"policies": results, "worker_policy": worker_policy}


def merge(before: dict, after: dict) -> dict:
    """One ceiling from measurements taken before and after the load runs: the median of all runs, so that the
    machine's drift over the benchmark (a shared VM's speed wanders by 10-20 %) weighs on both sides alike."""
    policies = {}
    for name, first in before["policies"].items():
        second = after["policies"][name]
        runs = first["runs"] + second["runs"]
        policies[name] = {**first, "runs": runs, "sentences_per_s": statistics.median(runs),
                          "before": first["sentences_per_s"], "after": second["sentences_per_s"]}
    return {"policies": policies, "worker_policy": before["worker_policy"]}
