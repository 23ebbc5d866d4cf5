"""Histograms of forward passes, kept in Redis so that any API process can expose the whole cluster's.

Workers observe each pass at its batch boundary, in the same MULTI/EXEC as its replies: HINCRBY of the bucket
the value falls in, plus its sum (the count is the buckets' total). The API turns each hash into a Prometheus histogram at scrape time
(cumulative buckets). In Redis the buckets are *not* cumulative, so they read naturally:
``redis-cli HGETALL sentimentalyzer:stats:hist:batch_texts`` → ``le=16 → 830`` passes held 9–16 texts.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

SUM_FIELD = "sum"
INF_FIELD = "le=+Inf"


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    name: str  # the Redis key suffix and, prefixed with ``sentimentalyzer_``, the Prometheus name
    help: str
    buckets: tuple[float, ...]  # upper bounds, increasing; +Inf is implicit

    def field(self, value: float) -> str:
        """The hash field of the bucket ``value`` falls in (the first upper bound >= value)."""
        i = bisect.bisect_left(self.buckets, value)
        return INF_FIELD if i == len(self.buckets) else bucket_field(self.buckets[i])


def bucket_field(bound: float) -> str:
    return f"le={bound:g}"


BATCH_TEXTS = HistogramSpec("batch_texts", "Texts per forward pass", (1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256, 512))
BATCH_PADDED_TOKENS = HistogramSpec(
    "batch_padded_tokens", "Tokens per forward pass, padding included (longest text x texts): what a pass costs",
    (16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096, 8192, 16384, 32768))
BATCH_PADDING_RATIO = HistogramSpec(
    "batch_padding_ratio", "Share of a forward pass's tokens that are padding (0: none wasted)",
    (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8))
BATCH_INFERENCE_SECONDS = HistogramSpec(
    "batch_inference_seconds", "Tokenization + forward pass of one batch, in seconds",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

BATCH_HISTOGRAMS = (BATCH_TEXTS, BATCH_PADDED_TOKENS, BATCH_PADDING_RATIO, BATCH_INFERENCE_SECONDS)
BATCH_HISTOGRAM_NAMES = tuple(spec.name for spec in BATCH_HISTOGRAMS)


def batch_observations(size: int, tokens: int, padded_tokens: int, inference_s: float) -> list[tuple[HistogramSpec, float]]:
    """What one forward pass adds to each histogram. Token figures exist only when the worker measured token
    lengths (MAX_BATCH_TOKENS > 0); without them the token histograms are left alone rather than fed zeros."""
    if size <= 0:
        return []
    observed: list[tuple[HistogramSpec, float]] = [(BATCH_TEXTS, size), (BATCH_INFERENCE_SECONDS, inference_s)]
    if padded_tokens > 0:
        observed += [(BATCH_PADDED_TOKENS, padded_tokens),
                     (BATCH_PADDING_RATIO, (padded_tokens - tokens) / padded_tokens)]
    return observed


def cumulative_buckets(spec: HistogramSpec, counts: Mapping[str, float]) -> list[tuple[float, int]]:
    """Prometheus's cumulative (upper bound, count) pairs from a histogram's hash (per-bucket counts; other
    fields such as the sum are ignored); the last is +Inf, i.e. the count."""
    out, running = [], 0
    for bound in spec.buckets:
        running += int(counts.get(bucket_field(bound), 0))
        out.append((bound, running))
    out.append((float("inf"), running + int(counts.get(INF_FIELD, 0))))
    return out
