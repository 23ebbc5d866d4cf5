"""The settings of a process that loads the model (a worker, the naive server, the benchmark peers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from common.settings import EMPTY_IS_UNSET, SETTINGS_CONFIG
from engine.autotune.choice import FAITHFUL_MAX_FLIPS, FAITHFUL_MAX_PROB_DIFF
from engine.model_source import revision_refusal
from engine.runtimes import BACKENDS

# Every value BACKEND takes: `auto` (measure and choose), the runtimes' one list, and the worker's `simulated`.
BACKEND_CHOICES = ("auto", *BACKENDS, "simulated")
BACKEND_PATTERN = f"^({'|'.join(BACKEND_CHOICES)})$"
BACKENDS_HELP = (
    "Exact (PyTorch fp32's answers, measured: docs/backends.md): `torch` (PyTorch eager, the reference; fp16 on "
    "CUDA), `onnxruntime` and `openvino` (the model exported once to ONNX, cached in EXPORT_CACHE_DIR; about 2x "
    "PyTorch on CPUs). Approximate (faster where the CPU has the instructions, scores differ): `torch-bf16`, "
    "`openvino-bf16` (bf16 units: AMX / AVX512-BF16; slower than fp32 without them), `torch-int8` (CPU, Linear "
    "layers dynamically quantized). `simulated` (workers only): no model, each pass sleeps `SIMULATED_BATCH_MS "
    "+ SIMULATED_TEXT_MS` x texts and answers label `SIMULATED`, for measuring the queueing system."
)


def default_cache_dir() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentimentalyzer")


class ModelSettings(BaseSettings):
    """The model and how it runs: what every process that loads it reads."""

    model_config = SETTINGS_CONFIG

    model: str = Field(
        "distilbert-base-uncased-finetuned-sst-2-english",
        description="Hugging Face hub id or local model directory. Offline machines need a local directory, "
        "e.g. the bench model from `python -m engine.offline.make_model bench models/bench`.",
    )
    model_revision: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        pattern=r"^[^\s]+$",
        description="The revision of a hub MODEL to load: a branch, a tag or a commit hash (a commit pins exactly what "
        "every worker serves; a branch moves when the model's authors push). Passed to the Hub download; /info shows "
        "the commit loaded. Unset: the default branch. Refused with a directory MODEL (a directory is used as it is).",
    )
    device: str = Field(
        "auto",
        pattern="^(auto|cpu|cuda(:[0-9]+)?)$",
        description="`auto` picks CUDA (fp16) when available, else CPU (fp32). `cpu`/`cuda` force one.",
    )
    backend: str = Field(
        "torch",
        pattern=BACKEND_PATTERN,
        description="The naive server's default is `torch` (the seed's experiment); `auto` measures the "
        "installed backends and runs the fastest exact one (see the worker's BACKEND). " + BACKENDS_HELP,
    )
    precision: Literal["exact", "faithful", "fastest"] = Field(
        "exact",
        description="BACKEND=auto only: which answers it may serve. `exact`: PyTorch fp32's (every probability "
        "within 1e-4); approximate backends are measured too and the start logs what `faithful` would gain. "
        "`faithful`: an approximate backend (bf16, int8) may win where its probe against PyTorch fp32 shows at most "
        "FAITHFUL_MAX_LABEL_FLIPS label flips and no probability more than FAITHFUL_MAX_PROB_DIFF off: several times "
        "faster on CPUs with bf16 units (AMX / AVX512-BF16), answers close to fp32's. `fastest`: any backend that "
        "runs, whatever it answers (int8 flips labels).",
    )
    faithful_max_label_flips: int = Field(
        FAITHFUL_MAX_FLIPS, ge=0,
        description="PRECISION=faithful: probe texts (of 24) whose label may differ from PyTorch fp32's. 0 refuses any "
        "backend that flipped one; more lets a faster one win at the price of rare flips.",
    )
    faithful_max_prob_diff: float = Field(
        FAITHFUL_MAX_PROB_DIFF, gt=0, le=1,
        description="PRECISION=faithful: how far a probability may be from PyTorch fp32's on the probe texts. bf16 "
        "stays well within 0.02 on DistilBERT-size models; int8 does not.",
    )
    backend_allow_approximate: bool = Field(
        False,
        description="Deprecated: the old name of PRECISION=fastest. True with PRECISION unset means fastest (the "
        "start says so); with PRECISION set to another, the process refuses to start.",
    )
    export_cache_dir: str = Field(
        default_factory=default_cache_dir,
        description="Where ONNX exports and BACKEND=auto's decisions are kept (keyed by the model's content, "
        "torch / runtime versions and CPU). First start: export (~10 s for DistilBERT) and measure; later "
        "starts load from here in seconds. Share it between workers (compose: the models volume).",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="Intra-op threads per model process, for every backend; 0 keeps the runtime's default (all "
        "cores). With several workers on one machine, give each cores/workers threads to avoid oversubscription.",
    )
    max_sequence_tokens: int = Field(
        0,
        ge=0,
        description="Truncate texts to this many tokens; 0 uses the model's own limit (512 for DistilBERT). "
        "Lower bounds the cost of a batch with one very long text, at the price of ignoring its tail.",
    )

    @property
    def effective_precision(self) -> str:
        """PRECISION, or `fastest` where only the deprecated BACKEND_ALLOW_APPROXIMATE=true says so."""
        return "fastest" if self.backend_allow_approximate else self.precision

    @model_validator(mode="after")
    def _one_name_for_precision(self) -> ModelSettings:
        if self.backend_allow_approximate and "precision" in self.model_fields_set and self.precision != "fastest":
            raise ValueError(f"BACKEND_ALLOW_APPROXIMATE=true (the old name of PRECISION=fastest) contradicts "
                             f"PRECISION={self.precision}: unset BACKEND_ALLOW_APPROXIMATE")
        return self

    @model_validator(mode="after")
    def _revision_of_a_hub_model(self) -> ModelSettings:
        refusal = revision_refusal(self.model, self.model_revision)
        if refusal:
            raise ValueError(refusal)
        return self
