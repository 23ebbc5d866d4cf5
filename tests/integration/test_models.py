"""Model loading (hub id or directory), the offline models, and the failure message."""

import json

import pytest

from engine.hf_predictor import TransformersPredictor
from engine.offline.make_model import build
from engine.offline.make_model import main as make_model_main
from engine.runtimes import ModelLoadError
from engine.settings import ModelSettings
from tests.answers import SCORE_TOLERANCE, assert_discriminating, expected_answers, same_answer
from tests.helpers import MINILM, sentences

pytestmark = pytest.mark.model


def test_tiny_model_loads_with_labels_from_its_config_and_answers_by_its_rule(tiny_predictor):
    assert tiny_predictor.card.labels == ("NEGATIVE", "POSITIVE") and tiny_predictor.card.default_function == "softmax"
    assert tiny_predictor.random_weights is True  # not a sentiment model: the loud warning stays
    texts = ["good", "a great and funny film", "bad movie", "dull , tedious and predictable", "the plot"]
    predictions = tiny_predictor.predict(texts)
    assert [p.label for p in predictions][:4] == ["POSITIVE", "POSITIVE", "NEGATIVE", "NEGATIVE"]
    assert all(p.score > 0.75 for p in predictions[:4])  # clear-cut by its rule
    assert predictions[4].score < 0.7  # no sentiment word: close to a tie


def test_tiny_model_tells_texts_and_padding_apart(tiny_predictor):
    """What every correctness check relies on: different texts get clearly different answers, one text gets the
    same answer alone or padded in a pass, and a pass that ignored the attention mask would be caught."""
    import torch

    texts = sentences(120, seed=3)
    expected = expected_answers(tiny_predictor, texts)
    assert_discriminating(expected)
    scores = [p.score for p in expected.values()]
    assert min(scores) < 0.65 and max(scores) > 0.9  # spread over the range, not a cluster
    texts = list(expected)
    for text, together in zip(texts, tiny_predictor.predict(texts)):  # one pass, padded to the longest
        assert same_answer(together.label, together.score, expected[text]), text
    encoded = tiny_predictor.encoder.hf(texts, padding=True, return_tensors="pt")
    padded = encoded["attention_mask"].sum(-1) < encoded["attention_mask"].shape[1]
    with torch.inference_mode():
        unmasked = tiny_predictor.runtime.model(input_ids=encoded["input_ids"]).logits.softmax(-1).max(-1).values
    changed = [abs(float(u) - expected[t].score) > 100 * SCORE_TOLERANCE for t, u, p in zip(texts, unmasked, padded) if p]
    assert sum(changed) > 0.9 * len(changed)


def test_truncation_to_the_configured_token_limit(tiny_model):
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), max_sequence_tokens=16))
    assert predictor.max_length == 16
    long_text = "awful " * 3 + "great " * 2000  # far past 512 tokens: truncated, not an error
    kept = "awful " * 3 + "great " * 11  # what fits in 16 tokens with [CLS] and [SEP]
    answer, = predictor.predict([long_text])
    assert same_answer(answer.label, answer.score, predictor.predict([kept])[0])
    assert not same_answer(answer.label, answer.score, predictor.predict(["awful " * 3 + "great " * 10])[0])


def test_unloadable_model_fails_with_a_message_naming_the_fix():
    # (A hub id on a machine without the hub: tests/e2e/test_processes.py, in a process with HF_HUB_OFFLINE.)
    model = "/nonexistent/model/dir"
    with pytest.raises(ModelLoadError) as info:
        TransformersPredictor(ModelSettings(model=model))
    message = str(info.value)
    assert model in message and "python -m engine.offline.make_model bench" in message and "local model directory" in message


def test_bench_model_has_distilbert_sst2_architecture(tmp_path):
    out = build("bench", tmp_path / "bench")
    config = json.loads((out / "config.json").read_text())
    assert (config["dim"], config["n_layers"], config["n_heads"], config["hidden_dim"]) == (768, 6, 12, 3072)
    assert config["vocab_size"] == 30522 and config["max_position_embeddings"] == 512
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["sentimentalyzer_random_weights"] is True
    assert "RANDOM WEIGHTS" in (out / "README.md").read_text()
    predictor = TransformersPredictor(ModelSettings(model=str(out), torch_threads=1))
    params = sum(p.numel() for p in predictor.runtime.model.parameters())
    assert 66_000_000 < params < 67_500_000  # distilbert-base-uncased-finetuned-sst-2-english: 66,955,010
    if (MINILM / "tokenizer.json").is_file():  # same uncased WordPiece vocab as the real checkpoints
        from transformers import AutoTokenizer

        text = "An unflinching, beautifully-acted drama; its 2nd half drags."
        assert predictor.encoder.hf(text)["input_ids"] == AutoTokenizer.from_pretrained(MINILM)(text)["input_ids"]


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


def test_int8_backend_quantizes_linear_layers_and_answers_close_to_fp32(tiny_model, tiny_predictor):
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), backend="torch-int8"))
    assert predictor.backend == "torch-int8"
    assert "quantized" in type(predictor.runtime.model.distilbert.transformer.layer[0].ffn.lin1).__module__
    expected = expected_answers(tiny_predictor, sentences(60, seed=5))
    got = predictor.predict(list(expected))
    clear = [(g, e) for g, e in zip(got, expected.values()) if e.score > 0.6]  # labels near a tie may flip
    assert len(clear) > 15 and all(g.label == e.label for g, e in clear)
    differences = sorted(abs(g.score - e.score) for g, e in clear)
    assert 0 < differences[len(differences) // 2] < 0.01  # quantized: close, not identical


# bf16 keeps 8 bits of mantissa: up to 1.8e-3 seen on the tiny model (Intel AMX and AMD AVX512-BF16). Near the
# limit of what a top-1 score can resolve: a misrouted answer would pass for ~3 % of text pairs.
BF16_TOLERANCE = 2.5e-3


def test_bf16_backend_runs_the_model_in_bfloat16_and_answers_like_fp32(tiny_model, tiny_predictor):
    import torch

    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), device="cpu", backend="torch-bf16"))
    assert predictor.runtime.model.dtype == torch.bfloat16
    expected = expected_answers(tiny_predictor, sentences(60, seed=5))
    assert_discriminating(expected, BF16_TOLERANCE, max_confusable=0.03)
    got = predictor.predict(list(expected))
    for fast, exact in zip(got, expected.values()):
        assert isinstance(fast.score, float) and same_answer(fast.label, fast.score, exact, BF16_TOLERANCE)
    assert any(fast.score != exact.score for fast, exact in zip(got, expected.values()))
