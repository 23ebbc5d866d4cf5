"""ONNX Runtime (``BACKEND=onnxruntime``): the exported fp32 graph, ORT's graph optimizations, exact answers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.runtimes.base import ModelLoadError

log = logging.getLogger(__name__)


def placement(device: str, available: list[str], backend: str) -> tuple[list, str]:
    """ORT's execution providers for DEVICE (given the providers this onnxruntime has) and the device the runtime
    reports. Apart from the session so that the CUDA choice is tested on hosts whose onnxruntime has no CUDA."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"], "cpu"
    if "CUDAExecutionProvider" not in available:
        raise ModelLoadError(f"DEVICE={device} with BACKEND={backend} needs the onnxruntime-gpu package "
                             "(this onnxruntime has no CUDA provider); or use BACKEND=torch")
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index})], f"cuda:{index}"


class OrtRuntime:
    def __init__(self, graph: Path, backend: str, device: str, threads: int) -> None:
        import onnxruntime as ort

        self.backend = backend
        providers, self.device = placement(device, ort.get_available_providers(), backend)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: ORT's default, one per physical core
        options.inter_op_num_threads = 1  # one pass at a time: the batch loop never runs two
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(graph), options, providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.precision = "fp32"

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {k: v for k, v in inputs.items() if k in self.input_names})[0]
