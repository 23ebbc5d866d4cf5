"""The predictor interface: what the worker, the naive server and the benchmarks call, whatever answers
(``engine.hf_predictor``: a Hugging Face model; ``engine.simulated``: a cost model; tests: fakes)."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Protocol

from common.model_card import ModelCard
from common.options import Options, Query, QueryLike
from common.protocol import Prediction


class Predictor(Protocol):
    """Everything callers use of a predictor (``TransformersPredictor``, ``SimulatedPredictor``, test fakes)."""

    name: str  # what it serves: a model id or directory (heartbeat, logs)
    device: str  # e.g. "cpu", "cuda:0"
    backend: str  # the backend it runs (BACKEND=auto: the one chosen)
    max_batch_tokens: int  # the token budget it runs best with (measured by BACKEND=auto; else the default)
    card: ModelCard  # what it serves: labels, token limit, fingerprint (the heartbeat publishes it)
    tokenize_s: float  # cumulative seconds spent tokenizing, for the worker's profile
    forward_s: float  # cumulative seconds spent in forward passes

    def tokenize(self, queries: Sequence[QueryLike]) -> Sequence[Sized]:
        """Each query's encoding, once: its ``len`` is the tokens it takes in a pass (special tokens and
        truncation included; a query with ``truncate=False`` keeps them all)."""
        ...

    def run(self, encodings: Sequence[Sized], options: Sequence[Options]) -> list[list[Prediction]]:
        """One forward pass over encodings from ``tokenize`` (padded to the longest): each text's ranked labels,
        scored and cut to ``top_k`` as its options say."""
        ...

    def classify(self, queries: Sequence[QueryLike]) -> list[list[Prediction]]:
        """``run(tokenize(queries), their options)``: one pass."""
        ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Each text's top label with the default options, in one pass."""
        ...

    def warm_up(self, batch_size: int) -> None:
        """Run the first passes before the worker announces itself: they pay for lazy initialisation."""
        ...


class OnePass:
    """``classify`` and ``predict`` in terms of a predictor's own ``tokenize`` and ``run``: one forward pass."""

    def classify(self, queries: Sequence[QueryLike]) -> list[list[Prediction]]:
        return self.run(self.tokenize(queries), [q.options for q in queries])  # type: ignore[attr-defined]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [ranked[0] for ranked in self.classify([Query(t) for t in texts])]


def predict_by_length(predictor: Predictor, sentences: list[str], size: int = 32) -> list[Prediction]:
    """Each sentence's top label, in input order, from passes of ``size`` sentences of similar length (shortest
    first), as the worker groups a window: little padding (SST-2 dev's 872 sentences with MiniLM: ~0.6x the time of
    passes in input order). For scoring a corpus offline (benchmarks, tests)."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    answers: list[Prediction | None] = [None] * len(sentences)
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        for i, prediction in zip(chunk, predictor.predict([sentences[i] for i in chunk]), strict=True):
            answers[i] = prediction
    return answers  # type: ignore[return-value]  (every position filled)
