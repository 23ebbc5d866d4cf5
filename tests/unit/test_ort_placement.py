"""Where ONNX Runtime runs for a DEVICE (engine/runtimes/ort_runtime.py placement): the CUDA provider and its
device id, or a refusal that names the fix when this onnxruntime has no CUDA. Pure, so tested without a GPU."""

import pytest

from engine.runtimes.base import ModelLoadError
from engine.runtimes.ort_runtime import placement

WITH_CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_the_cpu_runs_on_the_cpu_provider_alone():
    """Only the CPU provider: ORT's default (every provider it has) would add Azure's remote one, or a GPU."""
    assert placement("cpu", WITH_CUDA, "onnxruntime") == (["CPUExecutionProvider"], "cpu")


@pytest.mark.parametrize("device,index", [("cuda", 0), ("cuda:0", 0), ("cuda:1", 1), ("cuda:12", 12)])
def test_a_cuda_device_runs_on_the_cuda_provider_with_its_index(device, index):
    providers, reported = placement(device, WITH_CUDA, "onnxruntime")
    assert providers == [("CUDAExecutionProvider", {"device_id": index})]
    assert reported == f"cuda:{index}"  # what the card and /info say: a plain "cuda" is the first GPU


def test_cuda_without_the_cuda_provider_is_refused_with_the_package_that_has_it():
    with pytest.raises(ModelLoadError) as info:
        placement("cuda:1", ["AzureExecutionProvider", "CPUExecutionProvider"], "onnxruntime")
    assert str(info.value) == ("DEVICE=cuda:1 with BACKEND=onnxruntime needs the onnxruntime-gpu package (this "
                               "onnxruntime has no CUDA provider); or use BACKEND=torch")
