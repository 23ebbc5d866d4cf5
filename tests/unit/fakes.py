"""Fakes for the batch loop's two interfaces: no Redis, no torch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from common.model_card import ModelCard
from common.options import DEFAULT_OPTIONS, Options, QueryLike
from common.protocol import Prediction, Reply, WorkItem, encode_item, new_request_id
from engine.predictor import OnePass
from worker.window import Outbox, Popped


class FakeQueue:
    """A list of raw messages. ``arrivals`` maps a pop call number to messages that arrive just before it
    (to model traffic arriving while the worker waits)."""

    def __init__(self, messages: Sequence[bytes] = (), arrivals: dict[int, list[bytes]] | None = None) -> None:
        self.pending = list(messages)
        self.arrivals = arrivals or {}
        self.pops: list[tuple[int, float]] = []
        self.leases: list[float] = []  # the lease each pop asked for
        self.published: list[Outbox] = []
        self.suspects: set[bytes] = set()  # messages that come alone, and only when a suspect is allowed
        self.reclaim_after: int | None = None  # publishes after which the window is no longer held

    def pop(self, max_items: int, block_s: float, *, lease_s: float, suspect_allowed: bool = True) -> Popped:
        self.pending.extend(self.arrivals.pop(len(self.pops), []))
        self.pops.append((max_items, block_s))
        self.leases.append(lease_s)
        taken = self.pending[:max_items]
        for i, raw in enumerate(taken):
            if raw in self.suspects:
                taken = taken[:i] if i or not suspect_allowed else [raw]
                break
        self.pending = self.pending[len(taken):]
        return Popped(taken)

    def publish(self, outbox: Outbox) -> bool:
        self.published.append(outbox)
        return self.reclaim_after is None or len(self.published) <= self.reclaim_after

    @property
    def replies(self) -> list[Reply]:
        return [r for outbox in self.published for r in outbox.replies]

    @property
    def released(self) -> list[bytes]:
        return [raw for outbox in self.published for raw in outbox.done]


class FakePredictor(OnePass):
    """POSITIVE when the text contains 'good'; the score encodes the text length (NEGATIVE gets the rest). Records
    batch sizes."""

    name = "fake"
    device = "none"
    backend = "fake"
    card = ModelCard(model="fake", fingerprint="fake-model", labels=("NEGATIVE", "POSITIVE"), max_tokens=12,
                     default_function="softmax", backend="fake")

    max_batch_tokens = 512

    def __init__(self, fail_on: str | None = None, pass_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []  # the texts of each forward pass
        self.tokenized: list[list[str]] = []  # the texts of each tokenize call
        self.options: list[list[Options]] = []  # the options of each forward pass
        self.fail_on = fail_on
        self.pass_s = pass_s  # a forward pass takes at least this long
        self.tokenize_s = 0.0
        self.forward_s = 0.0

    def tokenize(self, queries: Sequence[QueryLike]) -> list[FakeEncoding]:
        self.tokenized.append([q.text for q in queries])
        return [FakeEncoding(q.text) for q in queries]

    def run(self, encodings: Sequence[FakeEncoding], options: Sequence[Options]) -> list[list[Prediction]]:
        texts = [e.text for e in encodings]
        self.batches.append(texts)
        self.options.append(list(options))
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise RuntimeError("CUDA out of memory (simulated)")
        time.sleep(self.pass_s)
        return [fake_ranked(t, o) for t, o in zip(texts, options, strict=True)]

    def warm_up(self, batch_size: int) -> None:
        """Nothing to warm up."""


def fake_ranked(text: str, options: Options = DEFAULT_OPTIONS) -> list[Prediction]:
    """The fake model's answer: the 'good' label gets len(text)/1000, the other label the rest, top_k of them."""
    score = len(text) / 1000
    best, other = ("POSITIVE", "NEGATIVE") if "good" in text else ("NEGATIVE", "POSITIVE")
    return [Prediction(best, score), Prediction(other, 1 - score)][:options.top_k or 2]


@dataclass(frozen=True, slots=True)
class FakeEncoding:
    """A text carried as itself; its length is words + [CLS] and [SEP]."""

    text: str

    def __len__(self) -> int:
        return len(self.text.split()) + 2


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def items(texts: Sequence[str], *, now: float = 1000.0, timeout: float = 10.0, request_id: str | None = None,
          enqueued_at: float | None = None, client_request_id: str | None = None) -> list[bytes]:
    rid = request_id or new_request_id()
    at = now if enqueued_at is None else enqueued_at
    return [encode_item(WorkItem(rid, i, t, at + timeout, at, client_request_id=client_request_id))
            for i, t in enumerate(texts)]


class DownRedis:
    """A cache Redis that fails every read and write (the response cache's client)."""

    async def mget(self, names):
        raise redis.ConnectionError("cache Redis is down")

    def pipeline(self, transaction):
        return self

    def set(self, *args, **kwargs):
        return self

    async def execute(self):
        raise redis.ConnectionError("cache Redis is down")
