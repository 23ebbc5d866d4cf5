"""Test helpers: the process harness the launcher and the benchmarks use too (harness/), and where ../shared is."""

from __future__ import annotations

from harness.corpus import read_sst2
from harness.processes import ROOT, Process, RedisServer, free_port, python_env, wait_until

SHARED = ROOT.parent / "shared"
SST2_DEV = SHARED / "data" / "sst2" / "dev.tsv"
MINILM = SHARED / "models" / "minilm-sst2"

__all__ = ["ROOT", "SHARED", "SST2_DEV", "MINILM", "Process", "RedisServer", "free_port", "python_env", "wait_until",
           "load_sst2_dev"]


def load_sst2_dev() -> list[tuple[str, int]]:
    return read_sst2(SST2_DEV)
