"""Test helpers: the process harness the launcher and the benchmarks use too (harness/), and where ../shared is."""

from __future__ import annotations

import random

from harness.corpus import read_sst2
from harness.processes import ROOT, Process, RedisServer, free_port, python_env, wait_until

SHARED = ROOT.parent / "shared"
SST2_DEV = SHARED / "data" / "sst2" / "dev.tsv"
MINILM = SHARED / "models" / "minilm-sst2"

__all__ = ["ROOT", "SHARED", "SST2_DEV", "MINILM", "Process", "RedisServer", "free_port", "python_env", "wait_until",
           "load_sst2_dev", "sentences", "setting_names"]


def setting_names() -> set[str]:
    """Every environment variable an entry point reads (upper case), for documentation checks."""
    from api.settings import ApiSettings
    from naive.settings import NaiveSettings
    from worker.settings import WorkerSettings

    return {name.upper() for cls in (ApiSettings, WorkerSettings, NaiveSettings) for name in cls.model_fields}


def load_sst2_dev() -> list[tuple[str, int]]:
    return read_sst2(SST2_DEV)


WORDS = ("the film is good bad charming dull and a bit too long but its actors are wonderful terrible "
         "moving boring funny story plot ending music").split()


def sentences(n: int, seed: int = 7) -> list[str]:
    """Texts of 1 to 90 words (short and long, so passes pad), many distinct answers on the tiny model."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 3, 8, 20, 45, 90]))) for _ in range(n)]


def report(scenario: str, **figures: object) -> None:
    """A reliability scenario's figures on one line (``pytest -s`` shows them)."""
    print(f"\n[{scenario}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
