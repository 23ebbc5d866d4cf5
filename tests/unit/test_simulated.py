"""The simulated predictor: its cost model, its answers, and how the worker picks it."""

import pytest

from common.options import Query
from engine.hf_predictor import TransformersPredictor
from engine.runtimes import ModelLoadError
from engine.simulated import SIMULATED_LABEL, SimulatedPredictor, simulated_score
from worker.model import load_predictor
from worker.settings import WorkerSettings


def test_each_pass_sleeps_a_plus_b_times_n_and_answers_every_text_in_order():
    slept: list[float] = []
    predictor = SimulatedPredictor(batch_ms=20, text_ms=1.5, sleep=slept.append)
    texts = ["good film", "bad film", "an ordinary sentence of several words"]
    answers = predictor.predict(texts)
    assert slept == [pytest.approx(0.020 + 3 * 0.0015)]
    assert [a.label for a in answers] == [SIMULATED_LABEL] * 3
    assert [a.score for a in answers] == [simulated_score(t) for t in texts]
    assert len({a.score for a in answers}) == 3  # the score identifies the text: a misrouted reply shows
    assert predictor.forward_s == pytest.approx(0.0245)


def test_no_op_never_sleeps_and_an_empty_pass_costs_nothing():
    slept: list[float] = []
    assert SimulatedPredictor(0, 0, sleep=slept.append).predict(["x", "y"])[1].score == simulated_score("y")
    assert SimulatedPredictor(5, 5, sleep=slept.append).predict([]) == []
    assert slept == []


def test_token_lengths_count_words_plus_special_tokens():
    encodings = SimulatedPredictor(0, 0).tokenize([Query("one two three"), Query(""), Query("a b", "c")])
    assert [len(e) for e in encodings] == [5, 2, 6]  # a pair: both texts and one more separator


def test_negative_costs_are_refused():
    with pytest.raises(ValueError):
        SimulatedPredictor(-1, 0)


def test_backend_simulated_loads_without_a_model_and_is_refused_as_a_model_backend():
    predictor = load_predictor(WorkerSettings(backend="simulated", simulated_batch_ms=7, simulated_text_ms=0.5,
                                              model="/nonexistent"))
    assert isinstance(predictor, SimulatedPredictor)
    assert predictor.cost_s(10) == pytest.approx(0.012)
    with pytest.raises(ModelLoadError, match="not a model backend"):
        TransformersPredictor(WorkerSettings(backend="simulated"))
