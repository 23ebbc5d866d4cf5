"""The batch loop: plain code behind two narrow interfaces, a request queue and a predictor.

It knows nothing of Redis or torch, so it is unit-tested with fakes and run for N batches. One turn of the loop
takes a window from the queue (``collect``), splits it into forward passes (``plan``), and runs and publishes
each pass as soon as it is done (``run_pass``); see ``worker.window`` for what a window holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from common.counters import PhaseTimes, WorkerCounts
from engine.batching import plan_batches
from engine.predictor import Predictor
from worker.lease import SLOWEST_PASS_MULTIPLE, LeaseTerm
from worker.window import Held, Outbox, Popped, Window, request_ids

log = logging.getLogger(__name__)


def _requests(held: Sequence[Held]) -> tuple[str, dict[str, object]]:
    """The requests of ``held`` for a log line: in its text, and as the ``request_ids`` field (LOG_FORMAT=json)."""
    ids = request_ids(held)
    return ", ".join(ids), {"request_ids": ids}


class RequestQueue(Protocol):
    def pop(self, max_items: int, block_s: float, *, lease_s: float, suspect_allowed: bool = True) -> Popped:
        """Take up to ``max_items`` raw messages from the head of the queue in one atomic step, recording them
        as held by this worker for ``lease_s`` (renewed by each publish). If the queue is empty, block up to
        ``block_s`` seconds for the first arrival (0: don't block). A suspect (a message a dead worker held)
        comes alone, and only if ``suspect_allowed``."""
        ...

    def publish(self, outbox: Outbox) -> bool:
        """Deliver the replies, release the messages dealt with, extend the lease to ``outbox.lease_s`` and add
        the counts, in one round trip. False if what it released was no longer held by this worker (taken back
        after its lease ran out)."""
        ...


class PassObserver(Protocol):
    def record(self, held: Sequence[Held], *, started_ns: int, ended_ns: int, picked_up: float, tokenize_s: float,
               failed: bool) -> None:
        """A forward pass over ``held`` ran (worker/tracing.py: its span)."""
        ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int  # texts taken from the queue at once (the window); a forward pass holds at most this many
    max_batch_wait_s: float = 0.0
    idle_block_s: float = 1.0
    max_batch_tokens: int = 0  # padded-token budget of one forward pass; 0: the whole window, arrival order
    lease_floor_s: float = 2.0  # least time a window may go without progress before others take it back


class BatchLoop:
    def __init__(
        self,
        queue: RequestQueue,
        predictor: Predictor,
        policy: BatchPolicy,
        *,
        clock: Callable[[], float] = time.time,
        observer: PassObserver | None = None,
    ) -> None:
        """``observer``: told of every forward pass (tracing); None: nothing extra per pass."""
        self._queue = queue
        self._predictor = predictor
        self._answers = predictor.card.answers  # what every reply says answered it
        self.policy = policy
        self._clock = clock
        self._observer = observer
        self._stop = threading.Event()
        self.totals = WorkerCounts()  # everything this worker published
        self.last_batch_size = 0
        self._phases = PhaseTimes()
        self.lease = LeaseTerm(policy.lease_floor_s)
        self.last_progress = clock()  # when the loop last finished a step (unix s): the heartbeat shows it

    def request_stop(self) -> None:
        """Stop popping; the window in hand (if any) is still run and published. Safe from signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def profile(self) -> PhaseTimes:
        """Cumulative seconds per phase, the predictor's own split of inference included."""
        return replace(self._phases, tokenize_s=self._predictor.tokenize_s, forward_s=self._predictor.forward_s)

    def run(self, max_batches: int | None = None) -> int:
        """Run windows until stopped (or ``max_batches`` non-empty ones ran). Returns windows run."""
        ran = 0
        while not self._stop.is_set() and (max_batches is None or ran < max_batches):
            if self.run_once():
                ran += 1
        return ran

    def run_once(self) -> bool:
        """Collect one window (blocking while the queue is empty), run it as one or more forward passes,
        publish each. False if nothing came."""
        window = self._collect()
        if window is None:
            return False
        picked_up = self._clock()
        batches = self._plan(window)
        for i, batch in enumerate(batches):
            if not self._run_pass(window, batch, picked_up, holding=i < len(batches) - 1):
                self._give_up(window, [h for later in batches[i + 1:] for h in later])
                return True
        if window.outbox:  # no pass ran (all malformed, or planning failed): their answers still go out
            self._publish(window.take_outbox(), lease_s=0.0)
        return True

    def _give_up(self, window: Window, unrun: list[Held]) -> None:
        """The window was taken back while this worker stalled: other workers run what is left of it."""
        ids, extra = _requests(unrun)
        log.warning("this worker held its window past its lease (%.1f s) and it was given to other workers; "
                    "dropping its %d unrun text(s) of requests %s", self.lease.seconds, len(unrun), ids, extra=extra)
        window.outbox.counts.reclaimed += len(unrun)
        self._publish(window.take_outbox(), lease_s=0.0)

    def _collect(self) -> Window | None:
        """Pop a window; with MAX_BATCH_WAIT_MS, wait for more while it is not full and the oldest item's wait
        budget lasts.

        The budget counts from the oldest item's enqueue time (clamped to now against clock skew), so a request
        never waits longer than ``max_batch_wait_s`` in total for batch-mates. Each wait is a blocking pop that
        returns on the first arrival: no sleeping, no polling.
        """
        size, wait = self.policy.max_batch_size, self.policy.max_batch_wait_s
        with self._phases.measure("pop_s"):
            popped = self._queue.pop(size, self.policy.idle_block_s, lease_s=self.lease.seconds)
        self.last_progress = self._clock()
        if not popped:
            return None
        window = Window()
        with self._phases.measure("decode_s"):
            window.add(popped)
        if window.held:
            self.lease.bound(min(h.item.deadline - h.item.enqueued_at for h in window.held))
        while wait > 0 and window.taken < size and window.held and not self._stop.is_set():
            now = self._clock()
            remaining = min(window.oldest_enqueued_at(), now) + wait - now
            if remaining <= 0:
                break
            with self._phases.measure("pop_s"):
                # No suspect joins a window being filled: it runs alone, in a window of its own.
                popped = self._queue.pop(size - window.taken, remaining, lease_s=self.lease.seconds,
                                         suspect_allowed=False)
            if not popped:
                break
            with self._phases.measure("decode_s"):
                window.add(popped)
        return window

    def _plan(self, window: Window) -> list[list[Held]]:
        """Tokenize the window once, refuse what the model cannot answer as asked, then split the rest into forward
        passes within the padded-token budget (see engine.batching); the passes run on these encodings."""
        held = window.held
        if not held:
            return []
        with self._phases.measure("infer_s"):
            started = time.perf_counter()
            try:
                encodings = self._predictor.tokenize([h.item for h in held])
                if len(encodings) != len(held):
                    raise RuntimeError(f"tokenizer returned {len(encodings)} encodings for {len(held)} texts")
            except Exception:
                ids, extra = _requests(held)
                log.exception("tokenization failed for a window of %d texts of requests %s", len(held), ids,
                              extra=extra)
                window.fail(held)
                window.release(held)
                return []
            window.tokenize_s = time.perf_counter() - started
        card = self._predictor.card
        runnable = []
        for h, encoding in zip(held, encodings):
            h.encoding = encoding
            reason = card.refusal(h.item.options, len(encoding))
            if reason is None:
                runnable.append(h)
            else:
                window.refuse(h, reason)
        if self.policy.max_batch_tokens <= 0 or not runnable:
            return [runnable] if runnable else []  # the window (at most max_batch_size texts) in arrival order
        return [[runnable[i] for i in batch] for batch in plan_batches([h.tokens for h in runnable],
                                                                        self.policy.max_batch_tokens)]

    def _run_pass(self, window: Window, batch: list[Held], picked_up: float, *, holding: bool) -> bool:
        """Run and publish one pass (``holding``: more passes of the window follow). False if the window turned out
        to be no longer this worker's."""
        started = time.perf_counter()
        window.release(batch)
        now = self._clock()
        live = window.drop_expired(batch, now)
        if len(live) < len(batch):  # under overload, every pass: the log's repeat limit keeps this to a line per 10 s
            ids, extra = _requests([h for h in batch if h.item.deadline <= now])
            log.warning("dropped %d text(s) past their deadline (their clients had a 504) of requests %s",
                        len(batch) - len(live), ids, extra=extra)
        if live:
            with self._phases.measure("infer_s"):
                self._infer(window, live, picked_up)
        pass_s = time.perf_counter() - started
        held = self._publish(window.take_outbox(), lease_s=self.lease.seconds_after(pass_s) if holding else 0.0)
        # Only a pass whose window was still held counts: one taken back outlived its lease, a freeze rather than
        # how long passes take (worker/lease.py).
        if held:
            self.lease.observe(pass_s)
            if self.lease.wanted_s > self.lease.ceiling_s:
                log.warning("passes take up to %.2f s; the work lease is held at %.2f s, a third of the requests' "
                            "time budget, so a slower pass is taken for a freeze and its window runs again "
                            "elsewhere: raise REQUEST_TIMEOUT_S or lower MAX_BATCH_TOKENS / MAX_BATCH_SIZE",
                            self.lease.wanted_s / SLOWEST_PASS_MULTIPLE, self.lease.ceiling_s)
        return held

    def _infer(self, window: Window, held: list[Held], picked_up: float) -> None:
        started = time.perf_counter()
        started_ns = time.time_ns() if self._observer is not None else 0
        failed = False
        try:
            ranked = self._predictor.run([h.encoding for h in held], [h.item.options for h in held])
            if len(ranked) != len(held) or not all(ranked):
                raise RuntimeError(f"predictor returned {len(ranked)} results for {len(held)} texts")
        except Exception:
            # The pass fails, the worker does not: every client of the pass is told, the loop goes on.
            ids, extra = _requests(held)
            log.exception("inference failed for a batch of %d texts of requests %s", len(held), ids, extra=extra)
            window.fail(held)
            failed = True
        else:
            inference_s = time.perf_counter() - started
            window.answer(held, ranked, picked_up=picked_up, inference_s=inference_s, model=self._answers)
            if log.isEnabledFor(logging.DEBUG):  # the ids are gathered only for a line that is written
                ids, extra = _requests(held)
                log.debug("pass of %d texts in %.1f ms for requests %s", len(held), inference_s * 1000, ids,
                          extra={**extra, "texts": len(held), "inference_ms": round(inference_s * 1000, 1)})
        if self._observer is not None:
            self._observer.record(held, started_ns=started_ns, ended_ns=time.time_ns(), picked_up=picked_up,
                                  tokenize_s=window.tokenize_s, failed=failed)

    def _publish(self, outbox: Outbox, *, lease_s: float) -> bool:
        """``lease_s``: how long the hold on what is still held lasts (0: nothing is)."""
        outbox.lease_s = lease_s
        with self._phases.measure("publish_s"):
            held = self._queue.publish(outbox)
        self.last_progress = self._clock()
        self.totals.add(outbox.counts)
        if outbox.counts.texts:
            self.last_batch_size = outbox.counts.texts
        return held
