"""OpenVINO (``BACKEND=openvino``: fp32, exact; ``openvino-bf16``: the CPU's bf16 units where it has them,
approximate). Reads the same exported ONNX graph as ONNX Runtime."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from engine.runtimes.base import ModelLoadError

log = logging.getLogger(__name__)


class OpenVinoRuntime:
    def __init__(self, graph: Path, backend: str, device: str, threads: int) -> None:
        import openvino as ov

        if device.startswith("cuda"):
            raise ModelLoadError(f"BACKEND={backend} runs on the CPU here (DEVICE={device}); use BACKEND=torch "
                                 "or onnxruntime on NVIDIA GPUs")
        self.backend = backend
        self.device = "cpu"
        # OpenVINO's CPU default is bf16 wherever the CPU has bf16 instructions: fp32 must be asked for.
        self.precision = "bf16" if backend.endswith("-bf16") else "f32"
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        self.compiled = core.compile_model(str(graph), "CPU", config)  # from the path: no ov.Model copy kept
        self.input_names = {port.any_name for port in self.compiled.inputs}
        self.output = self.compiled.output("logits")
        # An infer request is not thread-safe; the compiled model is. The worker runs one pass at a time, the
        # naive server and LitServe call from a thread pool: one request per calling thread.
        self._local = threading.local()

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer({k: v for k, v in inputs.items() if k in self.input_names})
        return np.array(results[self.output], dtype=np.float32)  # a copy: the request reuses its buffers
