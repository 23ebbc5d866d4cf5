"""Realistic request texts: SST-2 dev sentences when available, otherwise a synthetic mix of similar lengths."""

from __future__ import annotations

import os
import random
from pathlib import Path

DEFAULT_SST2_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"

# Word counts of SST-2 dev sentences (median ~19 words, ~25 WordPiece tokens, max ~50 words).
_LENGTHS = [3, 5, 7, 9, 11, 13, 15, 17, 18, 19, 19, 20, 21, 22, 24, 26, 28, 31, 35, 40, 47]
_VOCAB = (
    "the a film movie story of and is it to in that with its as but this for an are by one be on not his "
    "all more than so about like who has what most much too good bad best great funny charming dull boring "
    "tedious moving beautiful brilliant mess characters performance director script comedy drama ending "
    "actors plot never ever little really just well work life time love hate enjoy worth seeing , . ' s"
).split()


def sst2_path() -> Path:
    return Path(os.environ.get("SST2_DEV", DEFAULT_SST2_DEV))


def read_sst2(path: Path) -> list[tuple[str, int]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        header = next(f)
        if not header.startswith("sentence"):
            raise ValueError(f"{path}: expected a 'sentence<TAB>label' header")
        for line in f:
            sentence, label = line.rstrip("\n").rsplit("\t", 1)
            rows.append((sentence, int(label)))
    return rows


def synthetic_sentences(n: int = 872, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_VOCAB) for _ in range(rng.choice(_LENGTHS))) for _ in range(n)]


def load_sentences(path: Path | None = None) -> tuple[list[str], str]:
    """Sentences and where they came from. An explicit path must exist; the default falls back to synthetic."""
    if path is not None:
        return [s for s, _ in read_sst2(path)], str(path)
    default = sst2_path()
    if default.is_file():
        return [s for s, _ in read_sst2(default)], str(default)
    return synthetic_sentences(), "synthetic (SST-2 dev not found)"
