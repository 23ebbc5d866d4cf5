"""The ONNX export (engine/runtimes/onnx_export.py) on the tiny model: one cache entry shared by concurrent starters,
rebuilt when corrupt, its own entry for a changed model, a manifest and log lines that say what was exported, an
fp32 graph whatever the checkpoint's dtype, and a failure that names the fix."""

import hashlib
import json
import logging
import multiprocessing
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

from engine.model_source import resolve_model
from engine.runtimes import ModelLoadError
from engine.runtimes.onnx_export import EXPORT_FORMAT, MANIFEST, OPSET, exported_onnx

pytestmark = pytest.mark.model

INPUTS = ("input_ids", "attention_mask")
LOGGER = "engine.runtimes.onnx_export"


def export_in_another_process(model: str, cache: str, queue) -> None:
    logging.basicConfig(level=logging.INFO)
    queue.put(str(exported_onnx(resolve_model(model), Path(cache), INPUTS)))


def test_the_export_is_cached_shared_by_concurrent_starters_and_rebuilt_when_corrupt(tiny_model, tmp_path, caplog):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    starters = [ctx.Process(target=export_in_another_process, args=(str(tiny_model), str(tmp_path), queue))
                for _ in range(2)]
    for p in starters:
        p.start()
    for p in starters:
        p.join(120)
        assert p.exitcode == 0
    first, second = queue.get(timeout=5), queue.get(timeout=5)
    assert first == second  # one entry, written once; no temporary directory left behind
    entries = [p.name for p in (tmp_path / "onnx").iterdir() if p.is_dir()]
    assert len(entries) == 1 and not entries[0].startswith(".")
    assert entries[0].startswith(f"{resolve_model(str(tiny_model)).fingerprint[:20]}-torch")  # readable in ls
    graph = Path(first)
    assert graph.parent.stat().st_mode & 0o777 == 0o755  # readable by workers running as other users, not writable
    manifest = json.loads((graph.parent / MANIFEST).read_text())
    assert manifest["bytes"] == graph.stat().st_size and manifest["model"] == str(tiny_model)

    written = graph.stat().st_mtime_ns
    assert exported_onnx(resolve_model(str(tiny_model)), tmp_path, INPUTS) == graph
    assert graph.stat().st_mtime_ns == written  # reused, not exported again

    graph.write_bytes(graph.read_bytes()[:1000])  # a torn copy
    with caplog.at_level(logging.WARNING, logger="engine.runtimes.onnx_export"):
        assert exported_onnx(resolve_model(str(tiny_model)), tmp_path, INPUTS) == graph
    assert f"export cache entry {graph.parent} is incomplete or corrupt: rebuilding it" in caplog.messages
    assert graph.stat().st_size == manifest["bytes"]


def test_a_changed_model_gets_an_export_of_its_own(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    config = json.loads((copy / "config.json").read_text())
    config["id2label"] = {"0": "NEG", "1": "POS"}
    (copy / "config.json").write_text(json.dumps(config))
    original = exported_onnx(resolve_model(str(tiny_model)), tmp_path / "cache", INPUTS)
    changed = exported_onnx(resolve_model(str(copy)), tmp_path / "cache", INPUTS)
    assert original.parent != changed.parent


def test_a_failed_export_names_the_model_and_the_fix_and_leaves_no_entry(tiny_model, tmp_path, monkeypatch):
    import torch

    def unsupported(*args, **kwargs):  # what the exporter says of an architecture it cannot trace
        raise torch.onnx.errors.OnnxExporterError("Unsupported: ONNX export of operator aten::made_up")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ModelLoadError) as info:
        exported_onnx(resolve_model(str(tiny_model)), tmp_path, INPUTS)
    assert str(tiny_model) in str(info.value) and "BACKEND=torch" in str(info.value)
    assert [p for p in (tmp_path / "onnx").iterdir() if p.is_dir()] == []




def test_an_export_says_what_it_holds_in_its_manifest_and_its_log(tiny_model, tmp_path, caplog):
    """The manifest is what an operator (and the cache check) reads of an entry: which model and weights, which torch
    and opset made it, how big, its digest and what the export cost; the log says the same at the cold start."""
    import onnx

    source = resolve_model(str(tiny_model))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        graph = exported_onnx(source, tmp_path, INPUTS)
    data = graph.read_bytes()
    manifest = json.loads((graph.parent / MANIFEST).read_text())
    export_s = manifest.pop("export_s")
    assert manifest == {"model": str(tiny_model), "fingerprint": source.fingerprint, "torch": version("torch"),
                        "opset": OPSET, "format": EXPORT_FORMAT, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
    assert isinstance(export_s, float) and 0 < export_s < 300 and round(export_s, 2) == export_s
    [default_domain] = [o.version for o in onnx.load(str(graph)).opset_import if o.domain in ("", "ai.onnx")]
    assert default_domain == OPSET  # the manifest's opset is the graph's

    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages[0] == (f"exporting {tiny_model} to ONNX (opset {OPSET}) into {tmp_path / 'onnx'}: first start "
                           "with this model and torch version")
    done = re.fullmatch(rf"exported {re.escape(str(tiny_model))} in ([0-9.]+) s \(([0-9]+) MB\)", messages[-1])
    assert done and float(done[1]) == round(export_s, 1) and int(done[2]) == len(data) // 2**20


def test_a_checkpoint_stored_in_fp16_exports_an_fp32_graph(tiny_model, tmp_path):
    """Hub checkpoints are often saved in half precision; the exact backends run the graph in fp32 (loaded in the
    checkpoint's own dtype, the graph would compute in fp16 and its answers drift from PyTorch fp32)."""
    import onnx
    from transformers import AutoModelForSequenceClassification

    half = tmp_path / "half"
    shutil.copytree(tiny_model, half)
    AutoModelForSequenceClassification.from_pretrained(tiny_model).half().save_pretrained(half)
    assert json.loads((half / "config.json").read_text())["dtype"] == "float16"
    graph = onnx.load(str(exported_onnx(resolve_model(str(half)), tmp_path / "cache", INPUTS)))
    float_types = {t.data_type for t in graph.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT,
                                                                                   onnx.TensorProto.FLOAT16)}
    assert float_types == {onnx.TensorProto.FLOAT}
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_an_export_that_does_not_reproduce_the_model_is_refused_with_by_how_much(tiny_model, tmp_path, monkeypatch):
    """The graph is checked against the model on an unpadded text and a padded batch; a difference past the
    tolerance fails the export (here every difference does: a tolerance below zero), saying how far off it was."""
    from engine.runtimes import onnx_export

    monkeypatch.setattr(onnx_export, "EXPORT_TOLERANCE", -1.0)
    with pytest.raises(ModelLoadError) as info:
        exported_onnx(resolve_model(str(tiny_model)), tmp_path, INPUTS)
    found = re.fullmatch(rf"could not export model '{re.escape(str(tiny_model))}' to ONNX: the exported graph differs "
                         r"from the model by (\S+) on 1 text\(s\); set BACKEND=torch to serve it with PyTorch, or "
                         r"report the model's architecture: its graph does not export with torch\.onnx", str(info.value))
    assert found, str(info.value)
    assert 0 <= float(found[1]) < 1e-4  # the real difference, rounded: an export this close passes the real check
    assert [p for p in (tmp_path / "onnx").iterdir() if p.is_dir()] == []


def test_the_graph_declares_dynamic_batch_and_token_axes_and_the_outputs_batch_is_the_inputs(tiny_model, tmp_path):
    """What a reader of the graph (a runtime planning shapes, Netron, a Triton config) sees: any number of texts of
    any length in, one row of logits per text out."""
    import onnx

    graph = onnx.load(str(exported_onnx(resolve_model(str(tiny_model)), tmp_path, INPUTS))).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in graph.input}
    [(batch, tokens)] = {tuple(d) for d in inputs.values()}  # every input: the same two axes
    assert set(inputs) == set(INPUTS) and isinstance(batch, str) and isinstance(tokens, str) and batch != tokens
    [logits] = graph.output
    assert logits.name == "logits" and dims(logits) == [batch, 2]  # the tiny model's two labels
