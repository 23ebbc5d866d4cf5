"""What a client may ask (common/options.py): the values it may take, the model's default function, what a model
refuses; and how a pass's logits become each text's answer (engine/scoring.py), checked against the Hugging Face
pipeline's own formulas."""

import numpy as np
import pytest

from common.options import (
    MAX_TOP_K,
    NONE,
    SIGMOID,
    SOFTMAX,
    Options,
    default_function,
    refusal,
)
from common.protocol import Prediction
from engine.scoring import Scorer


@pytest.mark.parametrize("fields", [dict(top_k=0), dict(top_k=-1), dict(top_k=True), dict(top_k=1.0),
                                    dict(function="relu"), dict(function=""), dict(truncate=1),
                                    dict(truncation_side="middle"), dict(truncation_side="Left")])
def test_options_refuse_values_no_worker_could_apply(fields):
    with pytest.raises(ValueError):
        Options(**fields)


def test_top_k_is_bounded_and_the_bound_itself_allowed():
    """As many labels as one reply may carry (common/protocol.py MAX_LABELS): refused beyond, before anything is
    queued."""
    assert Options(top_k=MAX_TOP_K).top_k == MAX_TOP_K
    with pytest.raises(ValueError) as info:
        Options(top_k=MAX_TOP_K + 1)
    assert str(info.value) == f"top_k must be at most {MAX_TOP_K}, got {MAX_TOP_K + 1}"


@pytest.mark.parametrize("problem_type,labels,function", [
    (None, 2, SOFTMAX), ("single_label_classification", 2, SOFTMAX), (None, 1, SIGMOID),
    ("multi_label_classification", 5, SIGMOID), ("regression", 1, NONE), ("regression", 3, NONE),
    ("single_label_classification", 1, SIGMOID),  # the pipeline checks one output before single_label
])
def test_the_default_function_follows_the_pipelines_rules(problem_type, labels, function):
    assert default_function(problem_type, labels) == function


def test_a_model_refuses_top_k_beyond_its_labels_and_untruncated_texts_beyond_its_limit():
    assert refusal(Options(top_k=2), 600, max_tokens=512, num_labels=2) is None  # truncated: any length
    assert refusal(Options(top_k=3), 5, max_tokens=512, num_labels=2) == "top_k is 3 but the model has 2 label(s)"
    assert refusal(Options(top_k=None), 5, max_tokens=512, num_labels=2) is None
    assert refusal(Options(truncate=False), 512, max_tokens=512, num_labels=2) is None  # exactly at the limit
    assert refusal(Options(truncate=False), 513, max_tokens=512, num_labels=2) == (
        "the text is 513 tokens long and the model takes at most 512; send truncate=true to cut it")


# The pipeline's post-processing (transformers.pipelines.text_classification), restated for one row of logits.
def pipeline_answer(row: np.ndarray, labels: list[str], function: str, top_k: int | None) -> list[Prediction]:
    if function == SOFTMAX:
        scores = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    elif function == SIGMOID:
        scores = 1.0 / (1.0 + np.exp(-row))
    else:
        scores = row
    ranked = sorted(({"label": labels[i], "score": s.item()} for i, s in enumerate(scores)),
                    key=lambda x: x["score"], reverse=True)
    return [Prediction(d["label"], d["score"]) for d in ranked[:top_k]]


LABELS = ["anger", "joy", "fear", "love"]


def test_one_pass_answers_each_text_as_its_own_options_say():
    logits = np.array([[0.5, 2.0, -1.0, 2.0], [3.0, -2.0, 0.0, 1.0], [-0.5, 0.25, 4.0, 1.0], [1.0, 1.0, 1.0, 1.0]],
                      dtype=np.float32)
    options = [Options(), Options(top_k=None, function=SIGMOID), Options(top_k=2, function=NONE),
               Options(top_k=3)]
    ranked = Scorer(dict(enumerate(LABELS)), SOFTMAX).rank(logits, options)
    assert ranked[0] == [pipeline_answer(logits[0], LABELS, SOFTMAX, 1)[0]]  # ties: the first label, as argmax
    assert ranked[0][0].label == "joy"
    assert ranked[1] == pipeline_answer(logits[1], LABELS, SIGMOID, None)
    assert ranked[2] == pipeline_answer(logits[2], LABELS, NONE, 2) == [Prediction("fear", 4.0),
                                                                         Prediction("love", 1.0)]
    assert ranked[3] == pipeline_answer(logits[3], LABELS, SOFTMAX, 3)  # all equal: label order kept
    assert [p.label for p in ranked[3]] == ["anger", "joy", "fear"]


def test_the_default_options_give_the_softmax_top_label_bit_for_bit():
    """What the service answered before options existed: softmax in float32, the top label's probability."""
    logits = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ranked = Scorer({0: "NEGATIVE", 1: "POSITIVE"}, SOFTMAX).rank(logits, [Options()] * 16)
    ids = probs.argmax(-1)
    assert [r[0] for r in ranked] == [Prediction(["NEGATIVE", "POSITIVE"][i], float(probs[row, i]))
                                      for row, i in enumerate(ids)]


def test_a_model_without_a_function_named_gets_its_default():
    ranked = Scorer({0: "LABEL_0"}, SIGMOID).rank(np.array([[0.0], [2.0]], dtype=np.float32), [Options()] * 2)
    assert [r[0].score for r in ranked] == [0.5, pytest.approx(1 / (1 + np.exp(-2.0)))]


def test_logits_of_the_wrong_shape_are_an_error_not_a_misrouted_answer():
    with pytest.raises(ValueError):
        Scorer(dict(enumerate(LABELS)), SOFTMAX).rank(np.zeros((2, 3), dtype=np.float32), [Options()] * 2)


def test_scores_are_computed_in_float32_whatever_the_runtimes_logits_are():
    """Runtimes hand over float32, float64 or bfloat16-derived logits; computed in float32 they give one answer for one
    set of logits (what the response cache and the exact tier's comparisons count on)."""
    logits = np.random.default_rng(1).normal(size=(8, 4))  # float64
    scorer = Scorer(dict(enumerate(LABELS)), SOFTMAX)
    options = [Options(top_k=None, function=f) for f in (SOFTMAX, SIGMOID)] * 4
    assert scorer.rank(logits, options) == scorer.rank(logits.astype(np.float32), options)


def test_an_empty_pass_ranks_to_nothing():
    assert Scorer(dict(enumerate(LABELS)), SOFTMAX).rank(np.zeros((0, 4), dtype=np.float32), []) == []


def test_tied_scores_keep_the_labels_order_among_many_labels_as_the_pipelines_stable_sort():
    """Past a few labels numpy's default sort is not stable: ties would come out in an arbitrary order."""
    labels = {i: f"L{i}" for i in range(200)}
    logits = np.array([[0.5] * 100 + [0.7] * 100], dtype=np.float32)
    [ranked] = Scorer(labels, NONE).rank(logits, [Options(top_k=5)])
    assert [p.label for p in ranked] == ["L100", "L101", "L102", "L103", "L104"]


def test_logits_of_the_wrong_shape_say_which_shape_for_how_many_texts_and_labels():
    with pytest.raises(ValueError) as info:
        Scorer(dict(enumerate(LABELS)), SOFTMAX).rank(np.zeros((2, 3), dtype=np.float32), [Options()] * 2)
    assert str(info.value) == "logits of shape (2, 3) for 2 texts and 4 labels"
