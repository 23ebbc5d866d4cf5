"""The batch loop: plain code behind two narrow interfaces, a request queue and a predictor.

It knows nothing of Redis or torch, so it is unit-tested with fakes and run for N batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.protocol import (
    ErrorCode,
    Prediction,
    ProtocolError,
    Reply,
    WorkError,
    WorkItem,
    decode_item,
)
from worker.batching import plan_batches

log = logging.getLogger(__name__)


class RequestQueue(Protocol):
    def pop(self, max_items: int, block_s: float) -> list[bytes]:
        """Take up to ``max_items`` raw messages from the head of the queue in one atomic step, recording them
        as held by this worker. If the queue is empty, block up to ``block_s`` seconds for the first arrival
        (0: don't block)."""
        ...

    def publish(self, replies: Sequence[Reply], stats: "BatchStats", done: Sequence[bytes]) -> None:
        """Deliver replies, record the batch's counters and release ``done`` (messages this worker held and
        has now dealt with), in one round trip."""
        ...


class Predictor(Protocol):
    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One forward pass over ``texts`` (padded to the longest)."""
        ...

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in a forward pass (special tokens and truncation included)."""
        ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int  # texts taken from the queue at once (the window); a forward pass holds at most this many
    max_batch_wait_s: float = 0.0
    idle_block_s: float = 1.0
    max_batch_tokens: int = 0  # padded-token budget of one forward pass; 0: the whole window, arrival order


@dataclass(slots=True)
class BatchStats:
    """Counters of one batch, published with its replies."""

    size: int = 0  # texts in the forward pass
    tokens: int = 0  # real tokens in the forward pass
    padded_tokens: int = 0  # tokens including padding (longest x size): what the pass costs
    expired: int = 0  # items past their deadline, dropped unanswered (the API already answered 504)
    malformed: int = 0  # messages that could not be decoded
    failed: int = 0  # items answered with an inference error
    inference_ms: float = 0.0


@dataclass(slots=True)
class Held:
    """A message this worker has popped: the decoded item, the raw bytes (to release it), its token length."""

    item: WorkItem
    raw: bytes
    tokens: int = 0


def _failed(item: WorkItem) -> Reply:
    return Reply(item.request_id, item.index,
                 error=WorkError(ErrorCode.INFERENCE_FAILED, "the model failed on the batch holding this text"))


@dataclass(slots=True)
class LoopCounters:
    batches: int = 0
    texts: int = 0
    expired: int = 0
    malformed: int = 0
    failed: int = 0
    last_batch_size: int = 0
    # Where the worker's time goes (cumulative seconds), for profiling from the heartbeat hash.
    pop_s: float = 0.0  # waiting for work + the Redis pop round trips
    decode_s: float = 0.0  # msgpack decoding and validation
    infer_s: float = 0.0  # tokenization + forward pass
    publish_s: float = 0.0  # encoding replies + the Redis publish round trip


class BatchLoop:
    def __init__(
        self,
        queue: RequestQueue,
        predictor: Predictor,
        policy: BatchPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._predictor = predictor
        self._policy = policy
        self._clock = clock
        self._stop = threading.Event()
        self.counters = LoopCounters()

    def request_stop(self) -> None:
        """Stop popping; the batch in hand (if any) is still run and published. Safe from signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_batches: int | None = None) -> int:
        """Run batches until stopped (or ``max_batches`` non-empty batches ran). Returns batches run."""
        ran = 0
        while not self._stop.is_set() and (max_batches is None or ran < max_batches):
            if self.run_once():
                ran += 1
        return ran

    def run_once(self) -> bool:
        """Collect one window (blocking while the queue is empty), run it as one or more forward passes,
        publish each. False if nothing came."""
        c = self.counters
        t0 = time.perf_counter()
        raw = self._queue.pop(self._policy.max_batch_size, self._policy.idle_block_s)
        t1 = time.perf_counter()
        c.pop_s += t1 - t0
        if not raw:
            return False
        stats = BatchStats()
        replies: list[Reply] = []
        done: list[bytes] = []  # held messages dealt with, released with the next publish
        held = self._decode(raw, stats, replies, done)
        c.decode_s += time.perf_counter() - t1
        held = self._fill(held, len(raw), stats, replies, done)
        picked_up = self._clock()
        t2 = time.perf_counter()
        passes = self._plan(held, stats, replies, done)
        c.infer_s += time.perf_counter() - t2
        # Each forward pass is published as soon as it is done; the window's malformed/failed answers and
        # counters go out with the first publish.
        for batch in passes or [[]]:
            now = self._clock()
            live = [h for h in batch if h.item.deadline > now]
            stats.expired += len(batch) - len(live)
            done.extend(h.raw for h in batch)
            t2 = time.perf_counter()
            replies.extend(self._infer(live, picked_up, stats))
            t3 = time.perf_counter()
            if done or replies:
                self._queue.publish(replies, stats, done)
            c.infer_s += t3 - t2
            c.publish_s += time.perf_counter() - t3
            self._count(stats)
            stats, replies, done = BatchStats(), [], []
        return True

    def _plan(self, held: list[Held], stats: BatchStats, replies: list[Reply], done: list[bytes]) -> list[list[Held]]:
        """Split the window into forward passes within the padded-token budget (see worker.batching)."""
        if not held:
            return []
        if self._policy.max_batch_tokens <= 0:
            return [held]  # the window (at most max_batch_size texts) in arrival order
        try:
            lengths = self._predictor.token_lengths([h.item.text for h in held])
        except Exception:
            log.exception("tokenization failed for a window of %d texts", len(held))
            stats.failed += len(held)
            replies.extend(_failed(h.item) for h in held)
            done.extend(h.raw for h in held)
            return []
        for h, length in zip(held, lengths):
            h.tokens = length
        plan = plan_batches(lengths, self._policy.max_batch_tokens)
        # A window never exceeds max_batch_size, but a budget that allows more texts than that must not either.
        return [[held[i] for i in batch[start:start + self._policy.max_batch_size]]
                for batch in plan for start in range(0, len(batch), self._policy.max_batch_size)]

    def _fill(self, held: list[Held], taken: int, stats: BatchStats, replies: list[Reply],
              done: list[bytes]) -> list[Held]:
        """Wait for more items while the window is not full and the oldest item's wait budget lasts.

        The budget counts from the oldest item's enqueue time (clamped to now against clock skew), so a
        request never waits longer than ``max_batch_wait_s`` in total for batch-mates. Each wait is a
        blocking pop that returns on the first arrival: no sleeping, no polling.
        """
        wait = self._policy.max_batch_wait_s
        while wait > 0 and taken < self._policy.max_batch_size and held and not self._stop.is_set():
            now = self._clock()
            oldest = min(min(h.item.enqueued_at for h in held), now)
            remaining = oldest + wait - now
            if remaining <= 0:
                break
            more = self._queue.pop(self._policy.max_batch_size - taken, remaining)
            if not more:
                break
            taken += len(more)
            held.extend(self._decode(more, stats, replies, done))
        return held

    def _decode(self, raw: Sequence[bytes], stats: BatchStats, replies: list[Reply], done: list[bytes]) -> list[Held]:
        held = []
        for message in raw:
            try:
                held.append(Held(decode_item(message), message))
            except ProtocolError as exc:
                stats.malformed += 1
                done.append(message)
                size = len(message) if isinstance(message, (bytes, bytearray)) else -1
                log.warning("skipping malformed message (%d bytes): %s", size, exc)
                if exc.request_id is not None and exc.index is not None:
                    error = WorkError(ErrorCode.MALFORMED, f"the worker could not read this item: {exc}")
                    replies.append(Reply(exc.request_id, exc.index, error=error))
        return held

    def _infer(self, held: list[Held], picked_up: float, stats: BatchStats) -> list[Reply]:
        if not held:
            return []
        started = time.perf_counter()
        try:
            predictions = self._predictor.predict([h.item.text for h in held])
            if len(predictions) != len(held):
                raise RuntimeError(f"predictor returned {len(predictions)} results for {len(held)} texts")
        except Exception:
            # The batch fails, the worker does not: every client of the batch is told, the loop goes on.
            log.exception("inference failed for a batch of %d texts", len(held))
            stats.failed += len(held)
            return [_failed(h.item) for h in held]
        stats.inference_ms = (time.perf_counter() - started) * 1000
        stats.size = len(held)
        stats.tokens = sum(h.tokens for h in held)
        stats.padded_tokens = max(h.tokens for h in held) * len(held)
        return [
            Reply(
                h.item.request_id,
                h.item.index,
                prediction=prediction,
                queue_ms=max(0.0, (picked_up - h.item.enqueued_at) * 1000),
                inference_ms=stats.inference_ms,
            )
            for h, prediction in zip(held, predictions)
        ]

    def _count(self, stats: BatchStats) -> None:
        c = self.counters
        if stats.size:
            c.batches += 1
            c.texts += stats.size
            c.last_batch_size = stats.size
        c.expired += stats.expired
        c.malformed += stats.malformed
        c.failed += stats.failed
