"""From a pass's logits to each text's answer: the function its options name (softmax, sigmoid or none) and its
``top_k`` labels, best first — the Hugging Face ``text-classification`` pipeline's post-processing, row by row, so
that one pass can serve texts that asked for different things.

Scores are computed in float32 with the pipeline's own formulas, so an answer equals the pipeline's (and, for the
default options, the service's answers before options existed, bit for bit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from common.options import NONE, SIGMOID, SOFTMAX, Options
from common.protocol import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Over the labels, in float32 like the PyTorch reference's ``logits.float().softmax(-1)``."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


APPLY = {SOFTMAX: softmax, SIGMOID: sigmoid, NONE: lambda logits: logits}


class Scorer:
    """Ranks the labels of one model (its ``id2label``) for each row of logits."""

    def __init__(self, id2label: Mapping[int, str], default_function: str) -> None:
        self.labels = [id2label[i] for i in range(len(id2label))]
        self.default_function = default_function

    def rank(self, logits: np.ndarray, options: Sequence[Options]) -> list[list[Prediction]]:
        """One ranked list per row: its ``top_k`` labels (all with ``top_k=None``) by descending score. Equal scores
        keep the labels' order, as the pipeline's stable sort does."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape != (len(options), len(self.labels)):
            raise ValueError(f"logits of shape {logits.shape} for {len(options)} texts and {len(self.labels)} labels")
        scores = self._scores(logits, [o.function or self.default_function for o in options])
        ranked = []
        for row, opts in zip(scores, options):
            if opts.top_k == 1:
                best = int(row.argmax())
                ranked.append([Prediction(self.labels[best], float(row[best]))])
            else:
                order = np.argsort(-row, kind="stable")[:opts.top_k]
                ranked.append([Prediction(self.labels[i], float(row[i])) for i in order])
        return ranked

    @staticmethod
    def _scores(logits: np.ndarray, functions: list[str]) -> np.ndarray:
        first = functions[0] if functions else SOFTMAX
        if all(f == first for f in functions):  # the common case: one vectorized call for the pass
            return APPLY[first](logits)
        scores = np.empty_like(logits)
        for function in set(functions):
            rows = [i for i, f in enumerate(functions) if f == function]
            scores[rows] = APPLY[function](logits[rows])
        return scores
