"""Model loading (hub id or directory), the offline models, and the failure message."""

import json

import pytest

from common.settings import ModelSettings
from tests.helpers import MINILM
from worker.make_model import build
from worker.make_model import main as make_model_main
from worker.predictor import ModelLoadError, TransformersPredictor


def test_tiny_model_loads_with_labels_from_its_config(tiny_model, tiny_predictor):
    assert tiny_predictor.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert tiny_predictor.random_weights is True
    predictions = tiny_predictor.predict(["good", "bad movie"])
    assert [p.label in ("NEGATIVE", "POSITIVE") for p in predictions] == [True, True]
    assert all(0.5 <= p.score <= 1.0 for p in predictions)  # top-1 of a 2-way softmax


def test_truncation_to_the_configured_token_limit(tiny_model):
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), max_sequence_tokens=16))
    assert predictor.max_length == 16
    long_text = "word " * 2000  # far past 512 tokens: truncated, not an error
    assert predictor.predict([long_text])[0].label in ("NEGATIVE", "POSITIVE")


def test_unloadable_model_fails_with_a_message_naming_the_fix():
    # (A hub id on a machine without the hub: tests/e2e/test_processes.py, in a process with HF_HUB_OFFLINE.)
    model = "/nonexistent/model/dir"
    with pytest.raises(ModelLoadError) as info:
        TransformersPredictor(ModelSettings(model=model))
    message = str(info.value)
    assert model in message and "python -m worker.make_model bench" in message and "local model directory" in message


def test_bench_model_has_distilbert_sst2_architecture(tmp_path):
    out = build("bench", tmp_path / "bench")
    config = json.loads((out / "config.json").read_text())
    assert (config["dim"], config["n_layers"], config["n_heads"], config["hidden_dim"]) == (768, 6, 12, 3072)
    assert config["vocab_size"] == 30522 and config["max_position_embeddings"] == 512
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["sentimentalyzer_random_weights"] is True
    assert "RANDOM WEIGHTS" in (out / "README.md").read_text()
    predictor = TransformersPredictor(ModelSettings(model=str(out), torch_threads=1))
    params = sum(p.numel() for p in predictor.model.parameters())
    assert 66_000_000 < params < 67_500_000  # distilbert-base-uncased-finetuned-sst-2-english: 66,955,010
    if (MINILM / "tokenizer.json").is_file():  # same uncased WordPiece vocab as the real checkpoints
        from transformers import AutoTokenizer

        text = "An unflinching, beautifully-acted drama; its 2nd half drags."
        assert predictor.tokenizer(text)["input_ids"] == AutoTokenizer.from_pretrained(MINILM)(text)["input_ids"]


def test_make_model_is_idempotent_with_if_missing(tmp_path, capsys):
    assert make_model_main(["tiny", str(tmp_path / "m")]) == 0
    before = (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns
    assert make_model_main(["tiny", str(tmp_path / "m"), "--if-missing"]) == 0
    assert (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns == before
    assert make_model_main(["tiny", str(tmp_path / "m")]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def test_trained_model_agrees_with_its_published_accuracy(shared_minilm):
    from tests.helpers import load_sst2_dev

    predictor = TransformersPredictor(ModelSettings(model=str(shared_minilm)))
    rows = load_sst2_dev()[:200]
    predictions = predictor.predict([s for s, _ in rows])
    accuracy = sum((p.label.upper() in ("POSITIVE", "LABEL_1")) == bool(y) for p, (_, y) in zip(predictions, rows))
    assert accuracy / len(rows) > 0.8


def test_int8_backend_quantizes_linear_layers_and_answers(tiny_model):
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), backend="torch-int8"))
    assert predictor.backend == "torch-int8"
    assert "quantized" in type(predictor.model.distilbert.transformer.layer[0].ffn.lin1).__module__
    predictions = predictor.predict(["good", "a rather long and winding sentence about a film"])
    assert [p.label in ("NEGATIVE", "POSITIVE") for p in predictions] == [True, True]


def test_bf16_backend_runs_the_model_in_bfloat16_and_answers_like_fp32(tiny_model):
    import torch

    reference = TransformersPredictor(ModelSettings(model=str(tiny_model), device="cpu"))
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), device="cpu", backend="torch-bf16"))
    assert predictor.model.dtype == torch.bfloat16
    texts = ["good", "a rather long and winding sentence about a film", "bad"]
    for fast, exact in zip(predictor.predict(texts), reference.predict(texts)):
        assert isinstance(fast.score, float) and abs(fast.score - exact.score) < 0.02
