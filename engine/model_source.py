"""Where a model's files are (a local directory, or a hub id resolved to its snapshot in the Hugging Face
cache) and a fingerprint of their content: what the export cache and the backend choice are keyed by."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from engine.runtimes import ModelLoadError, first_line

log = logging.getLogger(__name__)

# The files that make the model's graph and weights; tokenizer files don't change the exported graph.
WEIGHT_PATTERNS = ("config.json", "*.safetensors", "pytorch_model*.bin")
# The files that make its tokenizer: with the weights, what decides the answers a worker gives.
TOKENIZER_PATTERNS = ("tokenizer*.json", "vocab*", "merges.txt", "special_tokens_map.json", "*.model")
# What a hub snapshot needs for the tokenizer, the config and the PyTorch weights (not TF, Flax, ONNX copies).
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]


OFFLINE_HINT = (
    "If this machine cannot reach the Hugging Face Hub, set MODEL to a local model directory "
    "(one saved with `save_pretrained`), or create the offline benchmark model with "
    "`python -m engine.offline.make_model bench models/bench` and set MODEL=models/bench "
    "(same size as DistilBERT-SST-2, random weights: meaningless labels)."
)


@dataclass(frozen=True)
class ModelSource:
    ref: str  # MODEL as given: a hub id or a directory
    path: Path  # the local directory holding its files
    revision: str | None = None  # MODEL_REVISION as given (a branch, tag or commit); None: the default branch

    @property
    def commit(self) -> str:
        """The hub commit the files are of: a snapshot of the Hugging Face cache is a directory named by it (also
        behind a link to one, as compose's model-init makes); empty for any other directory."""
        snapshot = self.path.resolve()
        return snapshot.name if _hub_repo(snapshot) else ""

    @property
    def hub_model(self) -> str:
        """The hub id the files were downloaded as (from the cache's layout); empty for any other directory."""
        return _hub_repo(self.path.resolve())

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the names and contents of config and weights (hashed once per process: ~0.3 s for
        DistilBERT's 268 MB)."""
        return _hash_files(self.path, WEIGHT_PATTERNS)

    @cached_property
    def answers_fingerprint(self) -> str:
        """The weights' fingerprint and the tokenizer's files together: two copies with it answer alike (what the
        model card, /info and the response cache name a model by)."""
        return hashlib.sha256(f"{self.fingerprint}:{_hash_files(self.path, TOKENIZER_PATTERNS)}".encode()).hexdigest()


def _hub_repo(snapshot: Path) -> str:
    """``org/name`` for a directory ``.../models--org--name/snapshots/<commit>`` of the Hugging Face cache."""
    repo = snapshot.parent.parent.name
    if snapshot.parent.name != "snapshots" or not repo.startswith("models--"):
        return ""
    return repo.removeprefix("models--").replace("--", "/")


def _hash_files(directory: Path, patterns: tuple[str, ...]) -> str:
    """sha256 over the names and contents of the files matching ``patterns``."""
    digest = hashlib.sha256()
    files = sorted({f for pattern in patterns for f in directory.glob(pattern) if f.is_file()})
    for f in files:
        with f.open("rb") as handle:
            digest.update(f.name.encode() + b"\0" + hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def is_local(model: str) -> bool:
    """MODEL names a directory (it exists, or it is written as a path), not a hub id."""
    return Path(model).expanduser().is_dir() or model.startswith(("/", ".", "~"))


def revision_refusal(model: str, revision: str | None) -> str | None:
    """Why MODEL_REVISION cannot be honoured for MODEL (None: it can)."""
    if revision and is_local(model):
        return (f"MODEL_REVISION={revision} pins a Hugging Face Hub revision, but MODEL={model} is a local directory, "
                "used as it is: unset MODEL_REVISION, or set MODEL to a hub id (e.g. "
                "MODEL=distilbert-base-uncased-finetuned-sst-2-english)")
    return None


def resolve_model(model: str, revision: str | None = None) -> ModelSource:
    """A directory as it is; anything else is a hub id, fetched into (or found in) the Hugging Face cache at
    ``revision`` (a branch, tag or commit; None: the default branch)."""
    refusal = revision_refusal(model, revision)
    if refusal:
        raise ModelLoadError(refusal)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"cannot load model {model!r}: the directory has no config.json. {OFFLINE_HINT}")
        return ModelSource(model, path)
    if model.startswith(("/", ".", "~")):
        raise ModelLoadError(f"cannot load model {model!r}: no such directory. {OFFLINE_HINT}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    at = f" at revision {revision!r}" if revision else ""
    try:
        snapshot = snapshot_download(model, revision=revision, allow_patterns=HUB_PATTERNS)
    except (OSError, ValueError, HFValidationError) as exc:
        raise ModelLoadError(f"cannot load model {model!r}{at}: {first_line(exc)}. {OFFLINE_HINT}") from exc
    source = ModelSource(model, Path(snapshot), revision)
    log.info("model %s%s: hub commit %s (%s)", model, at, source.commit or "?", source.path)
    return source
