"""``BACKEND=auto``: measure the installed backends on the loaded model and pick the fastest exact one. Backends
whose packages are not installed (the ``[onnx]`` / ``[openvino]`` extras) are not measured, and the start says which
and how to add them.

Each candidate is loaded, checked against PyTorch fp32 on fixed sentences (labels equal, probabilities within
1e-4: exact), and timed on windows of those sentences run the way the worker runs them (grouped into passes by
token length within the token budget), in rounds until the figures are stable (engine.autotune.timing). The
winner's token budget is tuned the same way when MAX_BATCH_TOKENS is not set. The decision is cached per (model
and tokenizer content, CPU and its flags, threads, batch policy, precision, versions of the runtimes and of the
export), so later starts load only the chosen backend. Concurrent first starts take turns on a lock: one measures, the others read
its decision.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock

from common.logs import current_setup, setup_logging
from common.options import Query
from engine.autotune.choice import (
    EXACT,
    FAITHFUL,
    Choice,
    DecisionCache,
    Measured,
    Precision,
    best_budget,
    choose,
    gain_note,
    table_lines,
)
from engine.autotune.probe_texts import PROBE_TEXTS
from engine.autotune.timing import time_in_rounds
from engine.batching import plan_batches
from engine.cpu import cpu_flags, cpu_model
from engine.model_source import ModelSource
from engine.runtimes import BACKENDS, REFERENCE, ModelLoadError, Runtime, installed, not_installed_note
from engine.runtimes.onnx_export import EXPORT_FORMAT
from engine.scoring import softmax
from engine.tokenizing import Encoding, Tokenizer

if TYPE_CHECKING:
    from engine.settings import ModelSettings

log = logging.getLogger(__name__)

DEFAULT_BATCH_TOKENS = 512
BUDGETS = (256, 512, 1024)
AGREEMENT_PASS = 8  # texts per pass in the agreement check: padded passes, like real ones


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    window: int  # texts per window: the worker's MAX_BATCH_SIZE (1 for the naive server)
    max_batch_tokens: int | None  # set: measured with it; None: the winner's budget is tuned
    precision: Precision = Precision()
    seconds: float = 1.5  # timing per candidate and budget over the first rounds (less for small models)

    @classmethod
    def of(cls, settings: ModelSettings, window: int, max_batch_tokens: int | None) -> ProbePolicy:
        """The policy a model process's settings ask for (PRECISION and its bounds)."""
        if settings.backend_allow_approximate:
            log.warning("BACKEND_ALLOW_APPROXIMATE=true is deprecated: it means PRECISION=fastest (any backend, "
                        "whatever it answers); set PRECISION=faithful (bf16 where it agrees with fp32) or fastest")
        return cls(window, max_batch_tokens, Precision(settings.effective_precision, settings.faithful_max_label_flips,
                                                       settings.faithful_max_prob_diff))


OpenRuntime = Callable[[str], Runtime]


def decide(source: ModelSource, tokenizer: Tokenizer, open_runtime: OpenRuntime, policy: ProbePolicy, *,
           device: str, threads: int, cache_dir: Path, isolate: bool = False) -> Choice:
    """The backend (and token budget) to run. ``isolate``: measure in a child process, so that the candidates'
    weights and runtimes never stay in this one (the caller loads only the winner) and a runtime that crashes
    on the model cannot take the caller down; ``open_runtime`` must then be picklable."""
    parts = decision_inputs(source, tokenizer, policy, device=device, threads=threads)
    missing = not_installed(policy)
    if missing:
        log.warning("BACKEND=auto: not installed, so not measured: %s", not_installed_note(missing))
    cache = DecisionCache(cache_dir / "choices")
    key = cache.key(parts)
    cache.directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache.path(key).with_suffix(".lock"))):
        cached = cache.load(key)
        if cached is not None and installed(cached.backend):
            log.info("BACKEND=auto: %s, token budget %d (decided earlier: %s; delete it to measure again)",
                     cached.backend, cached.max_batch_tokens, cached.from_cache)
            return cached
        log.info("BACKEND=auto: measuring the installed backends on %s (first start with this model, CPU and "
                 "settings)", source.ref)
        choice = measure_in_child(source, tokenizer, open_runtime, policy) if isolate else measure(
            tokenizer, open_runtime, policy)
        path = cache.save(key, choice, parts)
    log.info("BACKEND=auto measured the installed backends (decision saved in %s):\n  %s", path,
             "\n  ".join(table_lines(choice)))
    if choice.host_busy:
        log.warning("BACKEND=auto measured while other processes used %.0f%% of the CPUs: its figures may be off "
                    "(how far its rounds spread is in the table); delete %s to measure again on a quieter host",
                    100 * (choice.others_cpu_share or 0.0), path)
    if policy.precision.mode == EXACT:
        note = gain_note(choice, policy.precision, replace(policy.precision, mode=FAITHFUL))
        if note:
            log.info("BACKEND=auto: %s; answers of PRECISION=exact are PyTorch fp32's (docs/backends.md)", note)
    return choice


def not_installed(policy: ProbePolicy) -> list[str]:
    """The backends that would compete under ``policy`` but are not installed (their package extra is not)."""
    return [b for b, spec in BACKENDS.items()
            if (spec.full_precision or policy.precision.mode != EXACT) and not installed(b)]


def measure_in_child(source: ModelSource, tokenizer: Tokenizer, open_runtime: OpenRuntime,
                     policy: ProbePolicy) -> Choice:
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads and runtimes
    # The child logs as this process does (LOG_FORMAT=json: JSON lines), not through Python's bare fallback.
    with ProcessPoolExecutor(1, mp_context=context, initializer=setup_logging, initargs=current_setup()) as pool:
        try:
            return pool.submit(measure, tokenizer, open_runtime, policy).result()
        except BrokenProcessPool as exc:
            raise ModelLoadError(f"BACKEND=auto: the process measuring the backends on {source.ref!r} died (a "
                                 "runtime crashed on this model); set BACKEND to one that runs it, e.g. torch") from exc


def measure(tokenizer: Tokenizer, open_runtime: OpenRuntime, policy: ProbePolicy) -> Choice:
    """Check and time every installed backend ``open_runtime`` opens (it knows the model) on the probe texts."""
    encodings = tokenizer.encode([Query(text) for text in PROBE_TEXTS])
    agreement_passes = [encodings[i:i + AGREEMENT_PASS] for i in range(0, len(encodings), AGREEMENT_PASS)]
    budget = DEFAULT_BATCH_TOKENS if policy.max_batch_tokens is None else policy.max_batch_tokens
    window = passes(encodings, policy, budget)
    # Approximate backends are measured at PRECISION=exact too, never chosen: the start says what they would gain.
    candidates = [b for b in BACKENDS if installed(b)]
    reference: np.ndarray | None = None
    table: list[Measured] = []
    runtimes: dict[str, Runtime] = {}  # all stay loaded until the choice: this runs in a child that then exits
    for backend in [REFERENCE] + [b for b in candidates if b != REFERENCE]:
        entry = Measured(backend, BACKENDS[backend].full_precision)
        table.append(entry)
        try:
            runtime = open_runtime(backend)
            probs = np.concatenate([softmax(runtime.logits(tokenizer.pad(p))) for p in agreement_passes])
            if reference is None:
                reference = probs
            entry.label_flips = int((probs.argmax(-1) != reference.argmax(-1)).sum())
            entry.max_prob_diff = float(np.abs(probs - reference).max())
            warm(runtime, tokenizer, window)
        except (ModelLoadError, RuntimeError, ValueError, OSError) as exc:
            if backend == REFERENCE:
                raise
            entry.error = str(exc).splitlines()[0][:200]
            log.warning("BACKEND=auto: %s cannot run this model: %s", backend, entry.error)
            continue
        runtimes[backend] = runtime
    timed = time_in_rounds({b: partial(throughput, r, tokenizer, window, policy.window) for b, r in runtimes.items()},
                           policy.seconds)
    for entry in table:
        if entry.backend in runtimes:
            entry.runs, entry.sentences_per_s = timed.runs[entry.backend], timed.median(entry.backend)
    choice = Choice(choose(table, policy.precision).backend, budget, table, others_cpu_share=timed.others_cpu_share)
    chosen = runtimes[choice.backend]
    if policy.max_batch_tokens is None and policy.window > 1:
        tuned = time_in_rounds({b: partial(throughput, chosen, tokenizer, passes(encodings, policy, b), policy.window)
                                for b in BUDGETS}, policy.seconds)
        choice.budgets = {b: tuned.median(b) for b in BUDGETS}
        choice.max_batch_tokens = best_budget(choice.budgets, DEFAULT_BATCH_TOKENS)
        if tuned.others_cpu_share is not None:
            choice.others_cpu_share = max(choice.others_cpu_share or 0.0, tuned.others_cpu_share)
    return choice


# A round lasts its share of ProbePolicy.seconds, or less for a small model: once it has run this many windows
# and this long, its rate is known well enough.
ENOUGH_ROUND_WINDOWS = 7
ENOUGH_ROUND_S = 0.1


def passes(encodings: list[Encoding], policy: ProbePolicy, budget: int) -> list[list[Encoding]]:
    """One window of the probe texts (the worker's MAX_BATCH_SIZE of them), split into passes as the worker splits
    it within ``budget`` padded tokens."""
    window = [encodings[i % len(encodings)] for i in range(policy.window)]
    return [[window[i] for i in batch] for batch in plan_batches([len(e) for e in window], budget)]


def warm(runtime: Runtime, tokenizer: Tokenizer, window: list[list[Encoding]]) -> None:
    """Run each pass of ``window`` once: first runs of new shapes pay for allocation and kernel selection, and a
    runtime that cannot run these shapes fails here, before any timing."""
    for batch in window:
        runtime.logits(tokenizer.pad(batch))


def throughput(runtime: Runtime, tokenizer: Tokenizer, window: list[list[Encoding]], size: int,
               seconds: float) -> float:
    """Sentences/s over repeats of ``window`` (its passes; ``size`` texts in all) for about ``seconds``."""
    warm(runtime, tokenizer, window)
    done, windows, started = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds and not (
            windows >= ENOUGH_ROUND_WINDOWS and elapsed >= ENOUGH_ROUND_S):
        for batch in window:
            runtime.logits(tokenizer.pad(batch))
        done, windows = done + size, windows + 1
    return done / (time.perf_counter() - started)


def decision_inputs(source: ModelSource, tokenizer: Tokenizer, policy: ProbePolicy, *, device: str,
                    threads: int) -> dict[str, object]:
    """Everything a decision depends on: a change in any of them measures again (a candidate that failed, too: a
    newer export may export a model an older one could not)."""
    return {
        "model": source.answers_fingerprint, "max_length": tokenizer.max_length, "inputs": list(tokenizer.input_names),
        "export": EXPORT_FORMAT, "device": device, "threads": threads,
        "cpu": cpu_identity(), "window": policy.window, "max_batch_tokens": policy.max_batch_tokens,
        "precision": asdict(policy.precision),
        "versions": {package: package_version(package) for package in ("torch", "onnxruntime", "openvino", "transformers",
                                                               "tokenizers")},
    }


def cpu_identity() -> str:
    """The CPU model and the instruction sets that change which runtime is fastest."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return f"{cpu_model()} [{' '.join(f for f in wanted if f in cpu_flags())}]"


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""
