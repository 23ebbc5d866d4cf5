"""The runtimes' registry when a backend's packages are missing (engine/runtimes/__init__.py): refused with the
install command that adds them, and load errors that quote a library's first line."""

import sys

import pytest

from engine.model_source import ModelSource
from engine.runtimes import ModelLoadError


@pytest.mark.parametrize("absent,backend,needs,extra", [
    ("onnxruntime", "onnxruntime", "onnxruntime", "onnx"),
    ("onnx", "onnxruntime", "onnx", "onnx"),  # the export needs onnx too
    ("onnx", "openvino", "onnx", "openvino"),
    ("openvino", "openvino-bf16", "openvino", "openvino"),
])
def test_a_backend_whose_extra_is_missing_is_refused_with_the_install_command(tmp_path, monkeypatch, absent, backend,
                                                                              needs, extra):
    from engine.runtimes import installed, missing_packages, open_runtime

    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed: find_spec finds nothing, import fails
    assert not installed(backend) and missing_packages(backend) == [needs]
    assert installed("torch")
    with pytest.raises(ModelLoadError) as info:
        open_runtime(backend, ModelSource("m", tmp_path), device="cpu", threads=1, cache_dir=tmp_path,
                     input_names=("input_ids",))
    assert str(info.value).startswith(f"BACKEND={backend} needs {needs}, not installed: "
                                      f"pip install 'sentimentalyzer[{extra}]'")


def test_a_missing_core_dependency_is_refused_with_the_plain_install_command(tmp_path, monkeypatch):
    """torch is no extra: what repairs a broken install is the package itself, not a `[...]` extra."""
    from engine.runtimes import open_runtime

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelLoadError) as info:
        open_runtime("torch-int8", ModelSource("m", tmp_path), device="cpu", threads=1, cache_dir=tmp_path,
                     input_names=("input_ids",))
    assert str(info.value).startswith("BACKEND=torch-int8 needs torch, not installed: pip install sentimentalyzer (")


def test_the_not_installed_note_offers_the_all_extra_only_when_several_extras_are_missing():
    """With [onnx] installed and [openvino] not, one extra adds what is missing: `[all]` would be a detour."""
    from engine.runtimes import not_installed_note

    assert not_installed_note(["openvino", "openvino-bf16"]) == (
        "openvino, openvino-bf16 (pip install 'sentimentalyzer[openvino]')")


def test_an_error_quotes_the_first_line_of_a_librarys_message_without_its_full_stop():
    """Load errors end in the fix after the library's words: a trailing full stop or traceback lines would cut
    the sentence; an exception without a message is named by its type."""
    from engine.runtimes import first_line

    error = OSError("no exporter for this model in ONNX.\n  File ...")
    assert first_line(error) == "no exporter for this model in ONNX"
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError(" \n")) == "ValueError"


def test_every_missing_package_is_named_with_the_whole_fix(tmp_path, monkeypatch):
    from engine.runtimes import open_runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelLoadError) as info:
        open_runtime("onnxruntime", ModelSource("m", tmp_path), device="cpu", threads=1, cache_dir=tmp_path,
                     input_names=("input_ids",))
    assert str(info.value) == ("BACKEND=onnxruntime needs onnxruntime and onnx, not installed: pip install "
                               "'sentimentalyzer[onnx]' (or 'sentimentalyzer[all]'; in a clone, scripts/setup), or "
                               "choose another BACKEND, e.g. torch")
