"""A predictor that costs time but no CPU, to measure the queueing system beyond this machine's cores.

``BACKEND=simulated``: each forward pass sleeps ``SIMULATED_BATCH_MS + SIMULATED_TEXT_MS x texts`` (the
``a + b·n`` cost model of a batched accelerator) and answers without a model. Sleeping leaves the cores to the
API, Redis and the load generator, so 8 such workers on a 2-core machine behave like 8 accelerators: what
limits throughput is the queue, the dispatch and the HTTP layer, which is what the scale-out benchmark
measures. With both costs 0 it is a no-op: the ceiling of the API + Redis path itself.

Answers are deterministic and clearly fake: label ``SIMULATED``, score a function of the text (so tests can
check that every reply went to the right text). No torch, no tokenizer: such a worker starts in a second.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.model_card import ModelCard
from common.options import SIGMOID, Options, QueryLike
from common.protocol import Prediction
from engine.predictor import OnePass

SIMULATED_LABEL = "SIMULATED"
SIMULATED_MAX_TOKENS = 512


def simulated_score(text: str) -> float:
    """The score the simulated predictor gives ``text``: in [0, 1), stable across processes."""
    return (zlib.crc32(text.encode()) % 10_000) / 10_000


class SimulatedPredictor(OnePass):
    backend = "simulated"
    device = "none"
    max_batch_tokens = 512

    def __init__(self, batch_ms: float, text_ms: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if batch_ms < 0 or text_ms < 0:
            raise ValueError("simulated costs must be >= 0")
        self.batch_s = batch_ms / 1000
        self.text_s = text_ms / 1000
        self._sleep = sleep
        self.name = f"simulated(a={batch_ms:g}ms, b={text_ms:g}ms/text)"
        # One label: its score is the text's, whatever function is asked for; top_k above 1 is refused.
        self.card = ModelCard(model=self.name, fingerprint="simulated", labels=(SIMULATED_LABEL,),
                              max_tokens=SIMULATED_MAX_TOKENS, default_function=SIGMOID, backend=self.backend)
        self.tokenize_s = 0.0  # nothing is tokenized; kept for the heartbeat's profile
        self.forward_s = 0.0

    def cost_s(self, texts: int) -> float:
        return self.batch_s + self.text_s * texts

    def tokenize(self, queries: Sequence[QueryLike]) -> list[SimulatedEncoding]:
        return [SimulatedEncoding(q.text, q.text_pair) for q in queries]

    def run(self, encodings: Sequence[SimulatedEncoding], options: Sequence[Options]) -> list[list[Prediction]]:
        if not encodings:
            return []
        cost = self.cost_s(len(encodings))
        if cost > 0:
            self._sleep(cost)
        self.forward_s += cost
        return [[Prediction(SIMULATED_LABEL, simulated_score(e.text))] for e in encodings]

    def warm_up(self, batch_size: int) -> None:
        """Nothing to warm up (same interface as the real predictor)."""


@dataclass(frozen=True, slots=True)
class SimulatedEncoding:
    """A text as the simulated predictor carries it: the text itself, sized in words + [CLS]/[SEP] (close
    enough to WordPiece on plain English for batch planning)."""

    text: str
    text_pair: str | None = None

    def __len__(self) -> int:
        return len(self.text.split()) + (len(self.text_pair.split()) + 1 if self.text_pair is not None else 0) + 2
