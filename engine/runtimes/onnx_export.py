"""The model exported to ONNX, once, into a cache directory: what ONNX Runtime and OpenVINO both load.

An entry is keyed by the model's content fingerprint, the exporting torch version and the export settings, so
a changed model or torch makes a new entry and an old one is never used for it. Several workers starting at
once take turns on a file lock, and the entry is written to a temporary directory and renamed into place: no
process ever reads a half-written export (the rename alone guarantees it where locks don't work, e.g. on some
network file systems). Each entry's manifest holds the sha256 of its graph; an entry that does not match (a
disk error, a killed copy) is rebuilt, loudly.

Optimum's exporters would do this, but they pin transformers below the version we run (optimum-onnx 0.1:
<4.58, optimum-intel 2.2: <5.6), so the export is ``torch.onnx.export`` with the TorchScript tracer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from engine.runtimes.base import ModelFiles, ModelLoadError, first_line, forward_inputs

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_FORMAT = 2  # bump when the export's code changes what it writes (2: inputs by name, only those forward takes)
GRAPH = "model.onnx"
MANIFEST = "manifest.json"
# An export must reproduce the PyTorch model it came from on shapes other than the one it was traced with.
EXPORT_TOLERANCE = 1e-4


def entry_key(source: ModelFiles) -> str:
    return f"{source.fingerprint[:20]}-torch{version('torch')}-opset{OPSET}-v{EXPORT_FORMAT}"


def exported_onnx(source: ModelFiles, cache_dir: Path, input_names: tuple[str, ...]) -> Path:
    """The cached ONNX graph of ``source``, exported first if the cache has no valid entry. ``input_names``: what
    the tokenizer emits; the graph takes those the model's ``forward`` accepts (the runtimes feed it by name)."""
    root = cache_dir / "onnx"
    entry = root / entry_key(source)
    if _valid(entry):
        return entry / GRAPH
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{entry.name}.lock")):
        if _valid(entry):  # another process exported it while this one waited
            return entry / GRAPH
        if entry.exists():
            log.warning("export cache entry %s is incomplete or corrupt: rebuilding it", entry)
            shutil.rmtree(entry)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{entry.name}."))
        try:
            _export(source, staging, input_names)
            staging.chmod(0o755)  # mkdtemp makes it private; workers running as other users read it too
            os.rename(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return entry / GRAPH


def _valid(entry: Path) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        graph = entry / GRAPH
        if graph.stat().st_size != manifest["bytes"]:
            return False
        with graph.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == manifest["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _export(source: ModelFiles, into: Path, input_names: tuple[str, ...]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    log.info("exporting %s to ONNX (opset %d) into %s: first start with this model and torch version",
             source.ref, OPSET, into.parent)
    fix = ("set BACKEND=torch to serve it with PyTorch, or report the model's architecture: its graph does not "
           "export with torch.onnx")
    model = AutoModelForSequenceClassification.from_pretrained(source.path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    # Traced with a padded batch: the graph keeps the attention-mask path (a batch without padding could let
    # the model's code skip it, and the trace would bake that in).
    example = tokenizer(["a short one", "a longer example sentence, so that the first one is padded"],
                        padding=True, return_tensors="pt")
    names = tuple(name for name in input_names if name in forward_inputs(model))
    axes = {name: {0: "texts", 1: "tokens"} for name in names} | {"logits": {0: "texts"}}
    graph = into / GRAPH
    try:
        # By name: a model's forward lists its parameters in its own order (DistilBERT's third is head_mask or
        # inputs_embeds, BERT's token_type_ids), so a positional tuple would put an input in another's place.
        kwargs = {name: example[name] for name in names}
        with warnings.catch_warnings():
            # The tracer warns about the model's Python-level checks on tensors; _verify below checks on other
            # shapes that the graph did not bake in what it saw.
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (), str(graph), kwargs=kwargs, input_names=list(names), output_names=["logits"],
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        _verify(model, tokenizer, graph, names)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ModelLoadError(f"could not export model {source.ref!r} to ONNX: {first_line(exc)}; {fix}") from exc
    data = graph.read_bytes()
    manifest = {"model": source.ref, "fingerprint": source.fingerprint, "torch": version("torch"), "opset": OPSET,
                "format": EXPORT_FORMAT, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "export_s": round(time.perf_counter() - started, 2)}
    (into / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for path in (graph, into / MANIFEST):
        with path.open("rb") as f:
            os.fsync(f.fileno())
    log.info("exported %s in %.1f s (%d MB)", source.ref, manifest["export_s"], len(data) >> 20)


def _verify(model, tokenizer, graph: Path, input_names: tuple[str, ...]) -> None:
    """The exported graph against the model on batch shapes it was not traced with (one text; three with
    padding). Needs ONNX Runtime; without it the graph is checked when a backend first loads it."""
    import numpy as np
    import torch

    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for texts in (["one text alone, no padding at all"], ["short", "a bit longer than that", "the longest of the "
                                                          "three texts in this check, by a few tokens"]):
        encoded = tokenizer(texts, padding=True, return_tensors="np")
        inputs = {name: encoded[name].astype(np.int64) for name in input_names}
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
        got = session.run(["logits"], inputs)[0]
        if float(np.abs(got - expected).max()) > EXPORT_TOLERANCE:
            raise ValueError(f"the exported graph differs from the model by {np.abs(got - expected).max():.2g} "
                             f"on {len(texts)} text(s)")
