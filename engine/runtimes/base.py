"""What every runtime shares: the interface, the model files it loads, the error it raises. Each backend's module
imports this one only (engine.runtimes, the registry, imports the backends)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ModelLoadError(RuntimeError):
    """The configured model could not be loaded. The message names the fix."""


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only: what an error message quotes of a library's."""
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


def forward_inputs(model: Any) -> frozenset[str]:
    """The inputs the model's ``forward`` names as parameters. A tokenizer may emit more than its model takes (a
    DistilBERT saved with a BERT tokenizer emits ``token_type_ids``): such an input must reach the model neither by
    position (into another parameter's place) nor through its ``**kwargs`` (which are for other things)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(name for name, p in inspect.signature(model.forward).parameters.items() if p.kind in kinds)


class ModelFiles(Protocol):
    """A model's files as a runtime needs them (engine.model_source.ModelSource is one)."""

    ref: str  # MODEL as given: a hub id or a directory (for messages)
    path: Path  # the local directory holding config, weights and tokenizer

    @property
    def fingerprint(self) -> str:
        """sha256 over config and weights: what the export cache is keyed by."""
        ...


class Runtime(Protocol):
    backend: str  # the BACKEND it implements
    device: str  # "cpu", "cuda:0"
    precision: str  # how it computes, e.g. "float32", "float16" (BACKEND=torch on CUDA), "int8": answers differ

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One forward pass: int64 arrays (texts, tokens) in, float32 logits (texts, labels) out."""
        ...
