"""A batch window: the messages a worker popped at once, from the pop until every one of them is released.

Every popped message ends in exactly one publish's ``done`` list (released from the worker's in-flight list):
decoded ones when their forward pass is published, malformed ones with the first publish. What goes out with
the next publish — replies, released messages, counts — gathers in the window's ``outbox``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field

from common.counters import WorkerCounts
from common.protocol import ErrorCode, Prediction, ProtocolError, Reply, WorkError, WorkItem, decode_item

log = logging.getLogger(__name__)


def request_ids(held: Sequence[Held]) -> list[str]:
    """The requests ``held`` belong to, each once, in order, named as the API's access log names them: the client's
    X-Request-ID if it sent one, else the id they were queued under."""
    return list(dict.fromkeys(h.item.client_request_id or h.item.request_id for h in held))


@dataclass(slots=True)
class Held:
    """A message this worker has popped: the decoded item, the raw bytes (to release it), and its text's
    encoding from the predictor (tokenized once per window, before its passes are planned)."""

    item: WorkItem
    raw: bytes
    encoding: Sized = ()

    @property
    def tokens(self) -> int:
        return len(self.encoding)


@dataclass(slots=True)
class Popped:
    """What one pop took from the queue: the messages now held, and how many texts it skipped because their
    client had hung up (taken off the queue, never held, never run)."""

    messages: list[bytes] = field(default_factory=list)
    cancelled: int = 0

    def __bool__(self) -> bool:
        return bool(self.messages or self.cancelled)


@dataclass(slots=True)
class Outbox:
    """What one publish sends in one round trip: replies, the held messages now dealt with, and their counts."""

    replies: list[Reply] = field(default_factory=list)
    done: list[bytes] = field(default_factory=list)
    counts: WorkerCounts = field(default_factory=WorkerCounts)
    inference_s: float = 0.0  # the forward pass this publish answers, if any
    lease_s: float = 0.0  # how long the worker's hold on what it still holds lasts after this publish; 0: holds nothing

    def __bool__(self) -> bool:
        return bool(self.replies or self.done or self.counts.nonzero())


class Window:
    def __init__(self) -> None:
        self.held: list[Held] = []
        self.taken = 0  # messages popped into this window, decodable or not
        self.outbox = Outbox()
        self.tokenize_s = 0.0  # its one tokenization, which its passes share (a pass span's attribute)

    def add(self, popped: Popped) -> None:
        """Decode freshly popped messages. A malformed one is counted, released, and answered when its request id
        and index could be read."""
        self.taken += len(popped.messages) + popped.cancelled
        self.outbox.counts.cancelled += popped.cancelled
        for message in popped.messages:
            try:
                self.held.append(Held(decode_item(message), message))
            except ProtocolError as exc:
                size = len(message) if isinstance(message, (bytes, bytearray)) else -1
                log.warning("skipping malformed message (%d bytes): %s", size, exc)
                self.outbox.counts.malformed += 1
                self.outbox.done.append(message)
                if exc.request_id is not None and exc.index is not None:
                    error = WorkError(ErrorCode.MALFORMED, f"the worker could not read this item: {exc}")
                    self.outbox.replies.append(Reply(exc.request_id, exc.index, error=error))

    def oldest_enqueued_at(self) -> float:
        return min(h.item.enqueued_at for h in self.held)

    def release(self, held: Sequence[Held]) -> None:
        """``held`` is dealt with: released from the in-flight list with the next publish."""
        self.outbox.done.extend(h.raw for h in held)

    def drop_expired(self, held: Sequence[Held], now: float) -> list[Held]:
        """The items still within their deadline. The others are counted and not answered: the API has already
        answered their client with 504."""
        live = [h for h in held if h.item.deadline > now]
        self.outbox.counts.expired += len(held) - len(live)
        return live

    def fail(self, held: Sequence[Held], reason: str = "the model failed on the batch holding this text") -> None:
        """Answer ``held`` with an inference error."""
        self.outbox.counts.failed += len(held)
        error = WorkError(ErrorCode.INFERENCE_FAILED, reason)
        self.outbox.replies.extend(Reply(h.item.request_id, h.item.index, error=error) for h in held)

    def refuse(self, held: Held, reason: str) -> None:
        """Answer ``held`` with why the model cannot answer it as asked (its client gets a 422), and release it."""
        self.outbox.counts.invalid += 1
        error = WorkError(ErrorCode.INVALID_INPUT, reason)
        self.outbox.replies.append(Reply(held.item.request_id, held.item.index, error=error))
        self.release([held])

    def answer(self, held: Sequence[Held], ranked: Sequence[list[Prediction]], *, picked_up: float,
               inference_s: float, model: str) -> None:
        """Answer one forward pass over ``held`` (picked up from the queue at ``picked_up``, unix seconds) with each
        text's ranked labels, computed by ``model`` (its card's ``answers``)."""
        counts = self.outbox.counts
        counts.batches += 1
        counts.texts += len(held)
        counts.tokens += sum(h.tokens for h in held)
        counts.padded_tokens += max(h.tokens for h in held) * len(held)
        self.outbox.inference_s = inference_s
        inference_ms = inference_s * 1000
        replies = [
            Reply(h.item.request_id, h.item.index, predictions=labels,
                  queue_ms=max(0.0, (picked_up - h.item.enqueued_at) * 1000), inference_ms=inference_ms, model=model)
            for h, labels in zip(held, ranked, strict=True)
        ]
        finite = [all(math.isfinite(p.score) for p in labels) for labels in ranked]
        if all(finite):  # the common case stays cheap
            self.outbox.replies += replies
            return
        # NaN or infinity (fp16/bf16 overflow): not an answer. Told at once as a failure, never published as one.
        bad = [h for h, ok in zip(held, finite) if not ok]
        self.outbox.replies += [r for r, ok in zip(replies, finite) if ok]
        counts.texts -= len(bad)
        self.fail(bad, "the model produced a non-finite score for this text (numeric overflow in the forward pass)")

    def take_outbox(self) -> Outbox:
        outbox, self.outbox = self.outbox, Outbox()
        return outbox
