"""The Hugging Face predictor: a sequence classifier's tokenizer here, its forward pass in a runtime
(engine.runtimes) for the configured ``BACKEND``, ``auto`` resolved at start (engine.autotune)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from common.model_card import ModelCard
from common.options import Options, QueryLike, default_function
from common.protocol import Prediction
from engine.autotune.choice import Choice
from engine.autotune.probe import DEFAULT_BATCH_TOKENS, ProbePolicy, decide
from engine.cpu import cpu_bf16_support
from engine.model_source import OFFLINE_HINT, resolve_model
from engine.predictor import OnePass
from engine.runtimes import BACKENDS, ModelLoadError, RuntimeFactory, first_line
from engine.runtimes.torch_runtime import resolve_device
from engine.scoring import Scorer
from engine.settings import ModelSettings
from engine.tokenizing import Encoding, Tokenizer

log = logging.getLogger(__name__)

# Set in the config.json of models written by ``engine.offline.make_model``: their weights are random.
RANDOM_WEIGHTS_FLAG = "sentimentalyzer_random_weights"


class TransformersPredictor(OnePass):
    """A Hugging Face sequence classifier: its tokenizer here, its forward pass in a runtime."""

    def __init__(self, settings: ModelSettings, *, probe: ProbePolicy | None = None) -> None:
        """``probe``: how BACKEND=auto times candidates (the caller's batch policy); by default one window of
        64 texts within the default token budget."""
        if settings.backend not in (*BACKENDS, "auto"):
            raise ModelLoadError(f"BACKEND={settings.backend} is not a model backend "
                                 f"(one of auto, {', '.join(BACKENDS)})")
        from transformers import AutoConfig, AutoTokenizer

        # Tokenizers' own thread pool competes with the runtime's for the same cores and warns after fork.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        started = time.perf_counter()
        source = resolve_model(settings.model, settings.model_revision)
        try:
            hf_tokenizer = AutoTokenizer.from_pretrained(source.path)
            config = AutoConfig.from_pretrained(source.path)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load model {settings.model!r}: {first_line(exc)}. {OFFLINE_HINT}") from exc
        model_max = min(getattr(hf_tokenizer, "model_max_length", 512) or 512,
                        getattr(config, "max_position_embeddings", 512))
        self.max_length = min(settings.max_sequence_tokens or model_max, model_max)
        self.encoder = Tokenizer(hf_tokenizer, self.max_length)
        self.name = settings.model
        id2label = {int(i): str(label) for i, label in config.id2label.items()}
        problem_type = getattr(config, "problem_type", None)
        self.scorer = Scorer(id2label, default_function(problem_type, len(id2label)))
        self.random_weights = bool(getattr(config, RANDOM_WEIGHTS_FLAG, False))
        self.tokenize_s = 0.0  # cumulative, for profiling
        self.forward_s = 0.0
        opener = RuntimeFactory(source, settings.device, settings.torch_threads,
                                Path(settings.export_cache_dir).expanduser(), self.encoder.input_names)
        self.choice: Choice | None = None
        backend = settings.backend
        self.max_batch_tokens = DEFAULT_BATCH_TOKENS
        if backend == "auto" and resolve_device(settings.device).startswith("cuda"):
            backend = "torch"  # fp16 on the GPU; the probe compares CPU runtimes against fp32 PyTorch
            log.info("BACKEND=auto on a CUDA device: torch (fp16)")
        elif backend == "auto":
            self.choice = decide(source, self.encoder, opener, probe or ProbePolicy(64, None),
                                 device=settings.device, threads=settings.torch_threads, cache_dir=opener.cache_dir,
                                 isolate=True)
            backend, self.max_batch_tokens = self.choice.backend, self.choice.max_batch_tokens
        self.runtime = opener(backend)
        if backend == "torch-bf16" and self.runtime.device.startswith("cpu") and not cpu_bf16_support():
            log.warning("BACKEND=torch-bf16 on a CPU without bf16 matrix instructions (AMX / AVX512-BF16): "
                        "expect it to be slower than fp32; use BACKEND=torch or torch-int8 here")
        self.backend = backend
        self.device = self.runtime.device
        self.card = ModelCard(model=settings.model, fingerprint=source.answers_fingerprint,
                              labels=tuple(self.scorer.labels), max_tokens=self.max_length,
                              default_function=self.scorer.default_function, backend=backend,
                              problem_type=problem_type, segment_ids=self.encoder.takes_type_ids,
                              revision=source.commit, precision=self.runtime.precision,
                              device_type=self.device.split(":", 1)[0])
        if self.random_weights:
            log.warning(
                "MODEL %s HAS RANDOM WEIGHTS (offline benchmark model): its labels and scores are "
                "meaningless. Use a trained model for real answers.",
                settings.model,
            )
        at = f" ({source.hub_model} at hub commit {source.commit})" if source.commit else ""
        if settings.model_revision:
            at = f" at revision {settings.model_revision}" + (f" (commit {source.commit})" if source.commit else "")
        log.info("loaded %s%s on %s (backend %s, %s, %d threads, max %d tokens) in %.1fs", settings.model, at,
                 self.device, self.backend, self.runtime.precision, settings.torch_threads,
                 self.max_length, time.perf_counter() - started)

    def tokenize(self, queries: Sequence[QueryLike]) -> list[Encoding]:
        started = time.perf_counter()
        encodings = self.encoder.encode(queries)
        self.tokenize_s += time.perf_counter() - started
        return encodings

    def run(self, encodings: Sequence[Encoding], options: Sequence[Options]) -> list[list[Prediction]]:
        if not encodings:
            return []
        started = time.perf_counter()
        ranked = self.scorer.rank(self.runtime.logits(self.encoder.pad(encodings)), options)
        self.forward_s += time.perf_counter() - started
        return ranked

    def warm_up(self, batch_size: int) -> None:
        """Run the first passes before announcing readiness: they pay for lazy initialisation."""
        started = time.perf_counter()
        sample = "a warm-up sentence of ordinary length for the first forward passes"
        self.predict([sample])
        self.predict([sample] * max(1, batch_size))
        log.info("warm-up done in %.2fs", time.perf_counter() - started)
