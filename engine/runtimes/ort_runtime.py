"""ONNX Runtime (``BACKEND=onnxruntime``): the exported fp32 graph, ORT's graph optimizations, exact answers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.runtimes.base import ModelLoadError

log = logging.getLogger(__name__)


class OrtRuntime:
    def __init__(self, graph: Path, backend: str, device: str, threads: int) -> None:
        import onnxruntime as ort

        self.backend = backend
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError(f"DEVICE={device} with BACKEND={backend} needs the onnxruntime-gpu package "
                                     "(this onnxruntime has no CUDA provider); or use BACKEND=torch")
            providers = [("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)})]
            self.device = device if ":" in device else "cuda:0"
        else:
            providers = ["CPUExecutionProvider"]
            self.device = "cpu"
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
