"""Every installed backend on the tiny model, and BACKEND=auto end to end in-process (the ONNX export and its cache:
test_onnx_export.py)."""

import logging

import pytest

from engine.hf_predictor import TransformersPredictor
from engine.model_source import resolve_model
from engine.runtimes import BACKENDS, ModelLoadError, installed, open_runtime
from engine.runtimes.onnx_export import exported_onnx
from engine.settings import ModelSettings
from tests.answers import SCORE_TOLERANCE, assert_discriminating, expected_answers, same_answer
from tests.helpers import sentences
from worker.model import load_predictor
from worker.settings import WorkerSettings

pytestmark = pytest.mark.model

EXACT = [b for b, spec in BACKENDS.items() if spec.full_precision and b != "torch"]
INPUTS = ("input_ids", "attention_mask")


@pytest.mark.parametrize("backend", EXACT)
def test_each_exact_backend_answers_like_torch_fp32_alone_and_padded(backend, tiny_model, tiny_predictor, tmp_path):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), backend=backend, torch_threads=1,
                                                    export_cache_dir=str(tmp_path)))
    assert predictor.backend == backend
    expected = expected_answers(tiny_predictor, sentences(80, seed=11))
    assert_discriminating(expected)
    texts = list(expected)
    alone = [predictor.predict([t])[0] for t in texts]
    together = predictor.predict(texts)  # one pass, padded to the longest
    for text, a, b in zip(texts, alone, together):
        assert same_answer(a.label, a.score, expected[text]) and same_answer(b.label, b.score, expected[text]), text


@pytest.mark.parametrize("backend", EXACT)
def test_each_backend_serves_concurrent_callers(backend, tiny_model, tiny_predictor, tmp_path):
    """The naive server and LitServe call the predictor from a thread pool (an OpenVINO infer request, for one,
    is not thread-safe)."""
    from concurrent.futures import ThreadPoolExecutor

    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model), backend=backend, torch_threads=1,
                                                    export_cache_dir=str(tmp_path)))
    expected = expected_answers(tiny_predictor, sentences(40, seed=13))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: predictor.predict([t])[0], list(expected) * 3))
    for text, got in zip(list(expected) * 3, answers):
        assert same_answer(got.label, got.score, expected[text]), text


def test_auto_picks_an_exact_backend_and_the_next_start_reads_its_decision(tiny_model, tiny_predictor, tmp_path,
                                                                          caplog):
    settings = WorkerSettings(model=str(tiny_model), torch_threads=1, max_batch_size=16,
                              export_cache_dir=str(tmp_path))
    assert settings.backend == "auto" and settings.max_batch_tokens is None  # the defaults
    with caplog.at_level(logging.INFO, logger="engine.autotune.probe"):
        first = load_predictor(settings)
    assert first.backend in BACKENDS and BACKENDS[first.backend].full_precision
    assert first.choice is not None and not first.choice.from_cache
    assert first.max_batch_tokens in (256, 512, 1024)
    assert any("measured the installed backends" in m and "<- chosen" in m for m in caplog.messages)
    expected = expected_answers(tiny_predictor, sentences(30, seed=12))
    for got, want in zip(first.predict(list(expected)), expected.values()):
        assert same_answer(got.label, got.score, want, SCORE_TOLERANCE)

    second = load_predictor(settings)
    assert (second.backend, second.max_batch_tokens) == (first.backend, first.max_batch_tokens)
    assert second.choice.from_cache


@pytest.fixture(scope="module")
def tiny_model_with_a_bert_tokenizer(tiny_model, tmp_path_factory):
    """The tiny DistilBERT saved with a BERT tokenizer of the same vocabulary: the tokenizer also emits
    token_type_ids, which DistilBERT's forward does not take (its third parameter is inputs_embeds)."""
    import shutil

    from transformers import AutoTokenizer, BertTokenizerFast

    copy = tmp_path_factory.mktemp("bert-tokenizer") / "tiny"
    shutil.copytree(tiny_model, copy)
    own = AutoTokenizer.from_pretrained(tiny_model)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (copy / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab=own.get_vocab(), do_lower_case=True, model_max_length=512).save_pretrained(copy)
    return copy


@pytest.mark.parametrize("backend", ["torch", *EXACT])
def test_a_model_whose_tokenizer_emits_an_input_it_does_not_take_is_served_by_every_backend(
        backend, tiny_model_with_a_bert_tokenizer, tiny_predictor, tmp_path):
    """Inputs reach the model by name, only those its forward takes: passed by position, token_type_ids would take
    another parameter's place (the export failed: "You must specify exactly one of input_ids or inputs_embeds")."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    predictor = TransformersPredictor(ModelSettings(model=str(tiny_model_with_a_bert_tokenizer), backend=backend,
                                                    torch_threads=1, export_cache_dir=str(tmp_path)))
    assert "token_type_ids" in predictor.encoder.input_names  # the tokenizer does emit it
    assert predictor.backend == backend
    expected = expected_answers(tiny_predictor, sentences(40, seed=17))  # the same weights, the same token ids
    assert_discriminating(expected)
    texts = list(expected)
    for text, got in zip(texts, predictor.predict(texts)):  # padded
        assert same_answer(got.label, got.score, expected[text]), text
    for text in texts[:5]:  # alone, unpadded
        [got] = predictor.predict([text])
        assert same_answer(got.label, got.score, expected[text]), text
    if backend != "torch":
        import onnx

        [graph] = (tmp_path / "onnx").glob("*/model.onnx")
        assert [i.name for i in onnx.load(str(graph)).graph.input] == list(INPUTS)


def open_tiny(backend, tiny_model, cache_dir, device="cpu"):
    return open_runtime(backend, resolve_model(str(tiny_model)), device=device, threads=1, cache_dir=cache_dir,
                        input_names=INPUTS)


@pytest.mark.parametrize("backend,precision", [
    ("torch", "float32"), ("torch-bf16", "bfloat16"), ("torch-int8", "int8"),
    ("onnxruntime", "fp32"), ("openvino", "f32"), ("openvino-bf16", "bf16"),
])
def test_each_runtime_reports_its_backend_device_and_precision(backend, precision, tiny_model, export_cache_dir):
    """The start-up log line quotes them: where an operator reads whether BACKEND and DEVICE took effect."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    runtime = open_tiny(backend, tiny_model, export_cache_dir)
    assert (runtime.backend, runtime.device, runtime.precision) == (backend, "cpu", precision)


def test_a_workers_card_names_its_precision_and_device_so_the_cache_keeps_their_answers_apart(tiny_model,
                                                                                            tiny_predictor):
    """The card a worker publishes (the response cache's key, common/model_card.py) carries what its runtime
    computes in and on what kind of device: BACKEND=torch is fp16 on CUDA and fp32 on a CPU, whose answers differ."""
    card = tiny_predictor.card
    assert (card.backend, card.precision, card.device_type) == ("torch", "float32", "cpu")
    bf16 = TransformersPredictor(ModelSettings(model=str(tiny_model), backend="torch-bf16", device="cpu",
                                               torch_threads=1)).card
    assert (bf16.precision, bf16.device_type) == ("bfloat16", "cpu") and bf16.answers != card.answers


def test_openvino_runs_on_the_cpu_with_the_threads_asked_for(tiny_model, export_cache_dir):
    """OpenVINO's CPU default is every core: TORCH_THREADS must reach it (and its AUTO device would not take it)."""
    if not installed("openvino"):
        pytest.skip("openvino is not installed")
    compiled = open_tiny("openvino", tiny_model, export_cache_dir).compiled
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_onnxruntime_opens_its_cpu_provider_without_a_complaint_and_with_the_threads_asked_for(tiny_model,
                                                                                              export_cache_dir):
    """ORT falls back to the CPU from a provider it does not know, but warns and prints "EP Error" at start-up; its
    default is a thread per core, where TORCH_THREADS asks for fewer."""
    import warnings

    if not installed("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    exported_onnx(resolve_model(str(tiny_model)), export_cache_dir, INPUTS)  # the export's own warnings: not ORT's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = open_tiny("onnxruntime", tiny_model, export_cache_dir)
    assert runtime.session.get_providers() == ["CPUExecutionProvider"]
    assert runtime.session.get_session_options().intra_op_num_threads == 1
    assert not [str(w.message) for w in caught if "onnxruntime" in w.filename]


def test_a_backend_refuses_a_gpu_it_cannot_use_and_names_the_fix(tiny_model, export_cache_dir):
    import onnxruntime

    from engine.runtimes.torch_runtime import quantize_int8

    if installed("openvino"):
        with pytest.raises(ModelLoadError) as info:
            open_tiny("openvino", tiny_model, export_cache_dir, device="cuda:0")
        assert str(info.value) == ("BACKEND=openvino runs on the CPU here (DEVICE=cuda:0); use BACKEND=torch or "
                                   "onnxruntime on NVIDIA GPUs")
    if installed("onnxruntime") and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ModelLoadError) as info:
            open_tiny("onnxruntime", tiny_model, export_cache_dir, device="cuda:0")
        assert str(info.value) == ("DEVICE=cuda:0 with BACKEND=onnxruntime needs the onnxruntime-gpu package (this "
                                   "onnxruntime has no CUDA provider); or use BACKEND=torch")
    # DEVICE=auto on a CUDA host resolves to the GPU, where dynamic int8 quantization has no kernels.
    with pytest.raises(ModelLoadError) as info:
        quantize_int8(None, "cuda:0")
    assert str(info.value) == ("BACKEND=torch-int8 runs on the CPU only (DEVICE resolved to cuda:0); use "
                               "BACKEND=torch (fp16) on GPUs")


def test_torch_int8_quantizes_every_linear_layer_per_output_channel(tiny_model, export_cache_dir):
    """Per-channel weights, not the per-tensor default: what keeps its answers closest to fp32 (measured on SST-2:
    97.7 % vs 96.1 % label agreement)."""
    import torch

    model = open_tiny("torch-int8", tiny_model, export_cache_dir).model
    assert not [name for name, m in model.named_modules() if type(m) is torch.nn.Linear]  # none left in fp32
    quantized = [m for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantized and {m.weight().qscheme() for m in quantized} == {torch.per_channel_affine}


def test_a_model_without_weights_fails_with_a_message_quoting_why(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "no-weights"
    shutil.copytree(tiny_model, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as info:
        open_tiny("torch", copy, tmp_path)
    assert str(info.value).startswith(f"cannot load model {str(copy)!r}: ") and "model.safetensors" in str(info.value)


@pytest.mark.parametrize("requested,cuda,resolved", [("auto", True, "cuda"), ("auto", False, "cpu"),
                                                     ("cuda:1", True, "cuda:1"), ("cpu", True, "cpu")])
def test_device_resolves_to_what_torch_can_use(monkeypatch, requested, cuda, resolved):
    """DEVICE=auto takes the GPU when torch sees one; a named device is kept (whether torch sees CUDA is faked)."""
    import torch

    from engine.runtimes.torch_runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device(requested) == resolved


def test_a_cuda_device_torch_cannot_see_is_refused_with_the_torch_version(monkeypatch):
    import torch

    from engine.runtimes.torch_runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError) as info:
        resolve_device("cuda:1")
    assert str(info.value) == f"DEVICE=cuda:1 but torch sees no CUDA device (torch {torch.__version__})"
