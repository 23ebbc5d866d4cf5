"""What a worker counts and times, defined once.

``WorkerCounts`` fields are, by the same names: the cluster-wide ``stats`` hash in Redis (workers HINCRBY what
each publish adds), the per-worker totals in its heartbeat hash, and ``sentimentalyzer_worker_<name>_total``
on the API's ``/metrics``. ``PhaseTimes`` fields are the heartbeat's cumulative seconds per phase and the
benchmarks' worker profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields


def _counter(help_text: str) -> int:
    return field(default=0, metadata={"help": help_text})


@dataclass(slots=True)
class WorkerCounts:
    batches: int = _counter("Forward passes run")
    texts: int = _counter("Texts answered by a forward pass")
    tokens: int = _counter("Real tokens in forward passes (counted when MAX_BATCH_TOKENS > 0)")
    padded_tokens: int = _counter("Tokens in forward passes including padding (counted when MAX_BATCH_TOKENS > 0)")
    expired: int = _counter("Texts dropped unanswered because their deadline had passed (the client got 504)")
    malformed: int = _counter("Queue messages that could not be decoded")
    failed: int = _counter("Texts answered with an inference error")
    invalid: int = _counter("Texts refused unrun: over the token limit with truncate=false, or top_k above the "
                            "model's labels (the client got 422)")
    cancelled: int = _counter("Texts skipped unrun because their client hung up")
    reclaimed: int = _counter("Texts of a window this worker held past its lease, taken back and given to others "
                              "(it stalled; its late answers are ignored)")

    # Both run per published pass: plain attribute loops (dataclasses.asdict deep-copies, ~10x the cost).
    def add(self, other: WorkerCounts) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def nonzero(self) -> dict[str, int]:
        return {name: value for name in COUNTERS if (value := getattr(self, name))}


COUNTERS = tuple(f.name for f in fields(WorkerCounts))
COUNTER_HELP = {f.name: f.metadata["help"] for f in fields(WorkerCounts)}


def _phase(help_text: str, part_of: str | None = None) -> float:
    return field(default=0.0, metadata={"help": help_text, "part_of": part_of})


@dataclass(slots=True)
class PhaseTimes:
    """Cumulative seconds a worker spent per phase. ``tokenize_s`` and ``forward_s`` are the predictor's own
    split of ``infer_s`` (part of it); the other phases add up to the worker's whole time."""

    pop_s: float = _phase("waiting for work + Redis pop")
    decode_s: float = _phase("msgpack decode")
    infer_s: float = _phase("planning passes + tokenization + forward passes")
    tokenize_s: float = _phase("tokenization", part_of="infer_s")
    forward_s: float = _phase("forward pass", part_of="infer_s")
    publish_s: float = _phase("reply encode + Redis publish")

    def measure(self, phase: str) -> _Timer:
        """``with times.measure("pop_s"):`` adds the time the block takes to that phase (also when it raises)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r} (one of {', '.join(PHASES)})")
        return _Timer(self, phase)


class _Timer:
    # A plain class, not @contextmanager: the worker times several blocks per window, and a generator-based
    # context manager costs several times as much.
    __slots__ = ("_times", "_phase", "_started")

    def __init__(self, times: PhaseTimes, phase: str) -> None:
        self._times = times
        self._phase = phase
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        setattr(self._times, self._phase, getattr(self._times, self._phase) + time.perf_counter() - self._started)


PHASES = tuple(f.name for f in fields(PhaseTimes))
PHASE_HELP = {f.name: f.metadata["help"] for f in fields(PhaseTimes)}
TOP_PHASES = tuple(f.name for f in fields(PhaseTimes) if f.metadata["part_of"] is None)  # they add up to the whole
LEAF_PHASES = tuple(name for name in PHASES if name not in {f.metadata["part_of"] for f in fields(PhaseTimes)})
