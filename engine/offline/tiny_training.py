"""The tiny test model's task: synthetic sentences with a rule a 2-layer model learns in seconds.

A test model whose answers are all alike cannot tell one text's answer from another's, nor a padded pass from
an unpadded one. So ``make_model tiny`` trains its model briefly on sentences drawn from its own vocabulary:
the probability of POSITIVE rises with the balance of ``POSITIVE_WORDS`` over ``NEGATIVE_WORDS``, relative to
the sentence's length. Labels follow the sign of the balance, and scores spread over (0.5, 1) with how
clear-cut a sentence is, so different texts get measurably different answers. Trained with padding masked,
the model answers very differently if a pass ever drops the attention mask.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

POSITIVE_WORDS = tuple("good great best better fun funny charming moving beautiful brilliant wonderful love loved "
                       "enjoy".split())
NEGATIVE_WORDS = tuple("bad worst worse boring dull awful terrible mess waste hate hated tedious flat "
                       "predictable".split())

STEPS = 150  # ~2 s on 2 cores; accuracy on fresh sentences is 1.0 by then
BATCH = 64
MAX_WORDS = 16
SHARPNESS = 2.5


def balance(words: Sequence[str]) -> int:
    return sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)


def positive_probability(words: Sequence[str]) -> float:
    """The rule the model learns: P(POSITIVE), 0.5 for a balanced sentence."""
    return 1 / (1 + math.exp(-SHARPNESS * balance(words) / math.sqrt(len(words))))


def sentences(rng: random.Random, neutral: Sequence[str], n: int) -> list[list[str]]:
    """``n`` sentences of 1..MAX_WORDS words, 20 % positive words, 20 % negative, the rest neutral."""
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(1, MAX_WORDS)):
            draw = rng.random()
            pool = POSITIVE_WORDS if draw < 0.2 else NEGATIVE_WORDS if draw < 0.4 else neutral
            words.append(rng.choice(pool))
        out.append(words)
    return out


def train(model, tokenizer, vocabulary: Sequence[str], *, seed: int, steps: int = STEPS) -> float:
    """Train ``model`` (two labels: NEGATIVE, POSITIVE) in place on the rule, with soft targets; returns its
    label accuracy on fresh unbalanced sentences."""
    import torch

    rng = random.Random(seed)
    neutral = [w for w in vocabulary if w.isalpha() and len(w) > 1 and w not in POSITIVE_WORDS + NEGATIVE_WORDS]

    def batch(n: int):
        drawn = sentences(rng, neutral, n)
        encoded = tokenizer([" ".join(words) for words in drawn], padding=True, return_tensors="pt")
        positive = torch.tensor([positive_probability(words) for words in drawn])
        return encoded, torch.stack([1 - positive, positive], dim=-1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        encoded, targets = batch(BATCH)
        loss = -(targets * model(**encoded).logits.log_softmax(-1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    encoded, targets = batch(512)
    with torch.inference_mode():
        predicted = model(**encoded).logits.argmax(-1)
    decided = targets[:, 1] != 0.5
    return float((predicted == targets.argmax(-1))[decided].float().mean())
