"""The pipeline's options, pairs and truncation options through a real worker on a real Redis, against the Hugging
Face ``text-classification`` pipeline's own answers on the same model: the same labels in the same order, scores
within 1e-5. Each window mixes texts that asked for different things and runs as one forward pass."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from common.options import LEFT, NONE, SIGMOID, SOFTMAX, Options, Query
from common.protocol import ErrorCode, WorkItem, encode_item, new_request_id
from engine.hf_predictor import TransformersPredictor
from engine.settings import ModelSettings
from tests.integration.work import replies, worker_queue
from worker.loop import BatchLoop, BatchPolicy

pytestmark = pytest.mark.model

TOLERANCE = 1e-5
TEXTS = ["a good film", "bad and boring", "good good bad", "not good at all , really not", "fine"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tiny_model):
    """Tiny BERT-style classifiers (segment ids: a pair's two texts are told apart) on the tiny model's vocabulary,
    random weights spread wide enough that texts and labels score apart: one per kind of head."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    def build(problem_type: str, labels: list[str]) -> Path:
        out = tmp_path_factory.mktemp(f"bert-{problem_type}")
        torch.manual_seed(0)
        config = BertConfig(vocab_size=209, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, initializer_range=0.6, num_labels=len(labels),
                            problem_type=problem_type, id2label=dict(enumerate(labels)),
                            label2id={label: i for i, label in enumerate(labels)})
        BertForSequenceClassification(config).save_pretrained(out)
        BertTokenizer(tokenizer_file=str(tiny_model / "tokenizer.json")).save_pretrained(out)
        return out

    return {"multi_label_classification": build("multi_label_classification", ["anger", "joy", "fear", "love"]),
            "regression": build("regression", ["rating"])}


def pipeline_answer(pipe, query: Query) -> list[tuple[str, float]]:
    """What the pipeline answers ``query`` with, asked as our options ask (top_k given unless it is the default)."""
    o = query.options
    inputs = query.text if query.text_pair is None else {"text": query.text, "text_pair": query.text_pair}
    kwargs = {} if o.top_k == 1 else {"top_k": o.top_k}
    if o.function is not None:
        kwargs["function_to_apply"] = o.function
    got = pipe(inputs, **kwargs)
    got = got if isinstance(got, list) else [got]
    return [(d["label"], d["score"]) for d in got]


def run_window(setup, predictor, queries: list[Query]) -> list:
    """``queries`` as one request's work items, run by a worker as one window in one forward pass."""
    _, client, keys = setup
    rid, now = new_request_id(), time.time()
    client.rpush(keys.requests, *[encode_item(WorkItem(rid, i, q.text, now + 30, now, q.text_pair, q.options))
                                  for i, q in enumerate(queries)])
    loop = BatchLoop(worker_queue(client, keys, "w-options"), predictor,
                     BatchPolicy(len(queries), 0.0, 0.2, max_batch_tokens=0))  # the whole window in one pass
    assert loop.run(max_batches=1) == 1
    return replies(client, keys, rid), loop


def assert_like_the_pipeline(got, want):
    assert [label for label, _ in got] == [label for label, _ in want]
    assert all(abs(a - b) <= TOLERANCE for (_, a), (_, b) in zip(got, want)), (got, want)


def mixed_queries(num_labels: int) -> list[Query]:
    asks = [Options(), Options(top_k=None), Options(top_k=min(2, num_labels), function=SOFTMAX),
            Options(top_k=None, function=SIGMOID), Options(function=NONE)]
    queries = [Query(text, None, options) for text, options in zip(TEXTS, asks)]
    queries += [Query("a good film", "bad and boring", Options(top_k=None)), Query("bad", "good", Options())]
    return queries


@pytest.mark.parametrize("kind", ["distilbert-softmax", "multi_label_classification", "regression"])
def test_a_mixed_window_answers_each_text_like_the_pipeline(setup, tiny_model, tiny_bert, kind):
    from transformers import pipeline

    path = tiny_model if kind.startswith("distilbert") else tiny_bert[kind]
    predictor = TransformersPredictor(ModelSettings(model=str(path), device="cpu", torch_threads=1))
    assert predictor.card.default_function == {"distilbert-softmax": SOFTMAX, "regression": NONE}.get(kind, SIGMOID)
    pipe = pipeline("text-classification", model=str(path), device="cpu")
    queries = mixed_queries(len(predictor.card.labels))
    got, loop = run_window(setup, predictor, queries)
    assert loop.totals.batches == 1 and loop.totals.texts == len(queries)
    answers = [[(p.label, p.score) for p in r.predictions] for r in got]
    for query, answer in zip(queries, answers):
        assert_like_the_pipeline(answer, pipeline_answer(pipe, query))
    assert len({round(a[0][1], 4) for a in answers[:5]}) > 1  # the texts' answers differ: a swap would show


def test_truncation_from_either_side_and_refusals_in_one_window(setup, tiny_model):
    from transformers import AutoTokenizer, pipeline

    limit = 8
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), device="cpu", torch_threads=1,
                                                    max_sequence_tokens=limit))
    long = "good " * 3 + "bad " * 9  # 12 words + 2 special tokens: cut to 8 keeps the goods (right) or not (left)
    queries = [Query(long, None, Options(top_k=None)), Query(long, None, Options(top_k=None, truncation_side=LEFT)),
               Query(long, None, Options(truncate=False)), Query("good", None, Options(top_k=3)),
               Query("good bad", None, Options(truncate=False))]
    got, loop = run_window(setup, predictor, queries)
    for reply, side in zip(got[:2], ("right", "left")):
        pipe = pipeline("text-classification", model=str(tiny_model), device="cpu",
                        tokenizer=AutoTokenizer.from_pretrained(tiny_model, truncation_side=side))
        expected = pipe(long, truncation=True, max_length=limit, top_k=None)
        assert_like_the_pipeline([(p.label, p.score) for p in reply.predictions],
                                 [(d["label"], d["score"]) for d in expected])
    right, left = ({p.label: p.score for p in reply.predictions}["NEGATIVE"] for reply in got[:2])
    assert left - right > 0.1  # the left cut kept only "bad"s: more negative than the right cut's mix
    assert got[2].error.code == got[3].error.code == ErrorCode.INVALID_INPUT
    assert got[2].error.message == (f"the text is 14 tokens long and the model takes at most {limit}; send "
                                    "truncate=true to cut it")
    assert got[3].error.message == "top_k is 3 but the model has 2 label(s)"
    assert got[4].predictions is not None  # short enough: answered untruncated
    assert loop.totals.invalid == 2 and loop.totals.texts == 3
