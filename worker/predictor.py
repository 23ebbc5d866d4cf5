"""Predictors: the interface the worker, the naive server and the benchmarks call, and the real model behind
it (loading from a hub id or local directory, device and precision choice, batched prediction)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Protocol

from common.protocol import Prediction
from common.settings import ModelSettings, WorkerSettings

log = logging.getLogger(__name__)

# Set in the config.json of models written by ``worker.make_model``: their weights are random.
RANDOM_WEIGHTS_FLAG = "sentimentalyzer_random_weights"

OFFLINE_HINT = (
    "If this machine cannot reach the Hugging Face Hub, set MODEL to a local model directory "
    "(one saved with `save_pretrained`), or create the offline benchmark model with "
    "`python -m worker.make_model bench models/bench` and set MODEL=models/bench "
    "(same size as DistilBERT-SST-2, random weights: meaningless labels)."
)


TORCH_BACKENDS = ("torch", "torch-bf16", "torch-int8")


class Predictor(Protocol):
    """Everything callers use of a predictor (``TransformersPredictor``, ``SimulatedPredictor``, test fakes)."""

    name: str  # what it serves: a model id or directory (heartbeat, logs)
    device: str  # e.g. "cpu", "cuda:0"
    backend: str  # the BACKEND setting it runs
    tokenize_s: float  # cumulative seconds spent tokenizing, for the worker's profile
    forward_s: float  # cumulative seconds spent in forward passes

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One forward pass over ``texts`` (padded to the longest), one prediction per text in order."""
        ...

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in a forward pass (special tokens and truncation included)."""
        ...

    def warm_up(self, batch_size: int) -> None:
        """Run the first passes before the worker announces itself: they pay for lazy initialisation."""
        ...


class ModelLoadError(RuntimeError):
    """The configured model could not be loaded. The message names the fix."""


def load_predictor(settings: WorkerSettings) -> Predictor:
    """The worker's predictor for ``BACKEND``: a real model, or the simulated cost model (no torch import)."""
    if settings.backend == "simulated":
        from worker.simulated import SIMULATED_LABEL, SimulatedPredictor

        log.warning("BACKEND=simulated: no model; every pass sleeps %.1f + %.1f ms/text and answers %r",
                    settings.simulated_batch_ms, settings.simulated_text_ms, SIMULATED_LABEL)
        return SimulatedPredictor(settings.simulated_batch_ms, settings.simulated_text_ms)
    return TransformersPredictor(settings)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"DEVICE={requested} but torch sees no CUDA device (torch {torch.__version__})")
    return requested


class TransformersPredictor:
    """A Hugging Face sequence classifier. ``predict`` runs one padded forward pass over its texts."""

    def __init__(self, settings: ModelSettings) -> None:
        if settings.backend not in TORCH_BACKENDS:
            raise ModelLoadError(f"BACKEND={settings.backend} is not a model backend (one of {', '.join(TORCH_BACKENDS)})")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # Tokenizers' own thread pool competes with torch's for the same cores and warns after fork.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.device = resolve_device(settings.device)
        if settings.backend == "torch-bf16":
            self.dtype = torch.bfloat16
            if self.device.startswith("cpu") and not cpu_bf16_support():
                log.warning("BACKEND=torch-bf16 on a CPU without bf16 matrix instructions (AMX / AVX512-BF16): "
                            "expect it to be slower than fp32; use BACKEND=torch or torch-int8 here")
        else:
            self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        started = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(settings.model)
            model = AutoModelForSequenceClassification.from_pretrained(settings.model, dtype=self.dtype)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise ModelLoadError(f"cannot load model {settings.model!r}: {_first_line(exc)}. {OFFLINE_HINT}") from exc
        self.model = model.to(self.device).eval()
        self.backend = settings.backend
        if settings.backend == "torch-int8":
            self.model = quantize_int8(self.model, self.device)
        self.name = settings.model
        config = self.model.config
        self.id2label = {int(i): str(label) for i, label in config.id2label.items()}
        model_max = min(getattr(self.tokenizer, "model_max_length", 512) or 512, getattr(config, "max_position_embeddings", 512))
        self.max_length = min(settings.max_sequence_tokens or model_max, model_max)
        self.random_weights = bool(getattr(config, RANDOM_WEIGHTS_FLAG, False))
        self.tokenize_s = 0.0  # cumulative, for profiling
        self.forward_s = 0.0
        if self.random_weights:
            log.warning(
                "MODEL %s HAS RANDOM WEIGHTS (offline benchmark model): its labels and scores are "
                "meaningless. Use a trained model for real answers.",
                settings.model,
            )
        log.info(
            "loaded %s on %s (%s, %s, torch threads %d, max %d tokens) in %.1fs",
            settings.model, self.device, settings.backend, str(self.dtype).removeprefix("torch."),
            torch.get_num_threads(), self.max_length, time.perf_counter() - started,
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        import torch

        if not texts:
            return []
        started = time.perf_counter()
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        tokenized = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        probs = logits.float().softmax(dim=-1)
        scores, ids = probs.max(dim=-1)
        self.tokenize_s += tokenized - started
        self.forward_s += time.perf_counter() - tokenized
        return [
            Prediction(label=self.id2label[int(i)], score=float(s))
            for s, i in zip(scores.tolist(), ids.tolist())
        ]

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        started = time.perf_counter()
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        self.tokenize_s += time.perf_counter() - started
        return [len(x) for x in ids]

    def warm_up(self, batch_size: int) -> None:
        """Run the first passes before announcing readiness: they pay for lazy initialisation."""
        started = time.perf_counter()
        sample = "a warm-up sentence of ordinary length for the first forward passes"
        self.predict([sample])
        self.predict([sample] * max(1, batch_size))
        log.info("warm-up done in %.2fs", time.perf_counter() - started)


def cpu_bf16_support() -> str:
    """The CPU's bf16 matrix instruction sets (Linux /proc/cpuinfo), '' if none or unknown. bf16 weights only pay
    off where oneDNN can use them (AMX tiles or AVX512-BF16); elsewhere bf16 is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    return " ".join(flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags)


def quantize_int8(model, device: str):
    """Dynamic int8 quantization of the Linear layers (weights int8 per output channel, activations quantized
    per batch): the bulk of a transformer's compute. Per-channel weights keep answers closer to fp32 than
    per-tensor ones (measured on SST-2 with MiniLM: 97.7 % vs 96.1 % label agreement). Eager-mode quantization
    is deprecated in favour of torchao, but it is what this torch build ships and needs no calibration data."""
    import warnings

    import torch

    if not device.startswith("cpu"):
        raise ModelLoadError(f"BACKEND=torch-int8 runs on the CPU only (DEVICE resolved to {device}); "
                             "use BACKEND=torch (fp16) on GPUs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig

        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
