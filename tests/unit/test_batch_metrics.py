"""Batch histograms: bucketing on the worker side, cumulative Prometheus buckets on the API side."""

import math

from common.batch_metrics import (
    BATCH_INFERENCE_SECONDS,
    BATCH_PADDED_TOKENS,
    BATCH_PADDING_RATIO,
    BATCH_TEXTS,
    INF_FIELD,
    batch_observations,
    cumulative_buckets,
)


def test_a_value_lands_in_the_first_bucket_whose_bound_is_not_below_it():
    assert BATCH_TEXTS.field(1) == "le=1"
    assert BATCH_TEXTS.field(3) == "le=4"
    assert BATCH_TEXTS.field(16) == "le=16"
    assert BATCH_TEXTS.field(10_000) == INF_FIELD
    assert BATCH_PADDING_RATIO.field(0.0) == "le=0"
    assert BATCH_PADDING_RATIO.field(0.07) == "le=0.1"


def test_a_pass_is_observed_in_texts_time_padded_tokens_and_padding_ratio():
    observed = dict((spec.name, value) for spec, value in batch_observations(4, tokens=60, padded_tokens=80,
                                                                              inference_s=0.03))
    assert observed == {"batch_texts": 4, "batch_inference_seconds": 0.03, "batch_padded_tokens": 80,
                        "batch_padding_ratio": 0.25}


def test_without_token_lengths_the_token_histograms_are_not_fed_zeros():
    names = {spec.name for spec, _ in batch_observations(8, tokens=0, padded_tokens=0, inference_s=0.1)}
    assert names == {"batch_texts", "batch_inference_seconds"}
    assert batch_observations(0, 0, 0, 0.0) == []


def test_cumulative_buckets_add_up_and_end_with_inf_equal_to_the_count():
    counts = {"le=16": 2, "le=512": 5, INF_FIELD: 1}
    buckets = cumulative_buckets(BATCH_PADDED_TOKENS, counts)
    assert buckets[0] == (16, 2)
    assert dict(buckets)[256] == 2 and dict(buckets)[512] == 7
    assert buckets[-1][0] == math.inf and buckets[-1][1] == 8
    assert [c for _, c in buckets] == sorted(c for _, c in buckets)


def test_the_smallest_pass_is_observed_too():
    observed = dict((spec.name, value) for spec, value in batch_observations(1, 1, 1, 0.002))
    assert observed == {BATCH_TEXTS.name: 1, BATCH_INFERENCE_SECONDS.name: 0.002, BATCH_PADDED_TOKENS.name: 1,
                        BATCH_PADDING_RATIO.name: 0.0}
    assert batch_observations(0, 0, 0, 0.0) == []
