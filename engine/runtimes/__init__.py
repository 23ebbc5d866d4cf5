"""Runtimes: what runs a forward pass over padded token arrays and returns logits. One interface, several
backends (the ``BACKEND`` setting); ``engine.hf_predictor`` puts a tokenizer and one runtime together.

The bottom layer of ``engine``: it imports nothing else of it (a test checks), so a backend is this interface, its
entry in ``BACKENDS`` and one module.

Every backend is **exact** or **approximate**. Exact ones compute in fp32 like the PyTorch reference and must
give its answers (labels equal, scores within 1e-4: measured by ``benchmarks/agreement.py`` and at start-up by
``BACKEND=auto``, never assumed from documentation); approximate ones trade precision for speed and are only
used when asked for by name or accepted by ``PRECISION`` (faithful: within bounds of PyTorch fp32; fastest).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from engine.runtimes.base import ModelFiles, ModelLoadError, Runtime, first_line

__all__ = ["BACKENDS", "REFERENCE", "BackendSpec", "ModelFiles", "ModelLoadError", "Runtime", "RuntimeFactory",
           "first_line", "installed", "missing_packages", "not_installed_note", "open_runtime"]


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    family: str  # "torch", "onnxruntime", "openvino": the module that implements it
    full_precision: bool  # fp32 compute: a candidate for exact answers (still measured)
    requires: str  # the Python package it runs on
    extra: str | None = None  # the package extra that installs it (`sentimentalyzer[onnx]`); None: a core dependency
    also_requires: tuple[str, ...] = ()  # more packages it needs: the ONNX-based ones export with `onnx`

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.requires, *self.also_requires)

    def install_hint(self) -> str:
        """How to add what it needs (the extra names the exact versions pyproject.toml pins)."""
        return f"pip install 'sentimentalyzer[{self.extra}]'" if self.extra else "pip install sentimentalyzer"


# The fast runtimes are extras of the package: `[onnx]`, `[openvino]`, or `[all]` (with tracing). A plain
# `pip install sentimentalyzer` runs PyTorch only, and BACKEND=auto measures what is installed.
BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("torch", "torch", True, "torch"),  # the reference: fp32 on CPU (fp16 on CUDA)
    BackendSpec("onnxruntime", "onnxruntime", True, "onnxruntime", "onnx", ("onnx",)),
    BackendSpec("openvino", "openvino", True, "openvino", "openvino", ("onnx",)),
    BackendSpec("torch-bf16", "torch", False, "torch"),
    BackendSpec("torch-int8", "torch", False, "torch"),
    BackendSpec("openvino-bf16", "openvino", False, "openvino", "openvino", ("onnx",)),
)}
REFERENCE = "torch"


def missing_packages(backend: str) -> list[str]:
    """The packages ``backend`` needs that are not installed (empty: it can run)."""
    return [package for package in BACKENDS[backend].packages if importlib.util.find_spec(package) is None]


def installed(backend: str) -> bool:
    return not missing_packages(backend)


def not_installed_note(backends: list[str]) -> str:
    """One line naming the backends that are not installed and the extras that add them, e.g. ``onnxruntime
    (pip install 'sentimentalyzer[onnx]'); openvino (pip install 'sentimentalyzer[openvino]'); or every fast
    runtime: pip install 'sentimentalyzer[all]'``."""
    by_hint: dict[str, list[str]] = {}
    for backend in backends:
        by_hint.setdefault(BACKENDS[backend].install_hint(), []).append(backend)
    parts = [f"{', '.join(names)} ({hint})" for hint, names in by_hint.items()]
    if len(by_hint) > 1:
        parts.append("or every fast runtime: pip install 'sentimentalyzer[all]'")
    return "; ".join(parts)


def open_runtime(backend: str, source: ModelFiles, *, device: str, threads: int, cache_dir: Path,
                 input_names: tuple[str, ...]) -> Runtime:
    """The runtime for ``backend`` on ``source``; ONNX-based ones load the cached export (exporting it first)."""
    spec = BACKENDS[backend]
    missing = missing_packages(backend)
    if missing:
        raise ModelLoadError(f"BACKEND={backend} needs {' and '.join(missing)}, not installed: "
                             f"{spec.install_hint()} (or 'sentimentalyzer[all]'; in a clone, scripts/setup), "
                             "or choose another BACKEND, e.g. torch")
    if spec.family == "torch":
        from engine.runtimes.torch_runtime import TorchRuntime

        return TorchRuntime(source, backend, device, threads)
    from engine.runtimes.onnx_export import exported_onnx

    graph = exported_onnx(source, cache_dir, input_names)
    if spec.family == "onnxruntime":
        from engine.runtimes.ort_runtime import OrtRuntime

        return OrtRuntime(graph, backend, device, threads)
    from engine.runtimes.openvino_runtime import OpenVinoRuntime

    return OpenVinoRuntime(graph, backend, device, threads)


@dataclass(frozen=True, slots=True)
class RuntimeFactory:
    """Opens a runtime for a backend on one model and device: what BACKEND=auto's probe calls per candidate (a
    picklable value, so the probe can run in a child process)."""

    source: ModelFiles
    device: str
    threads: int
    cache_dir: Path
    input_names: tuple[str, ...]

    def __call__(self, backend: str) -> Runtime:
        return open_runtime(backend, self.source, device=self.device, threads=self.threads,
                            cache_dir=self.cache_dir, input_names=self.input_names)
