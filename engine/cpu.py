"""What this machine's CPU is and which instruction sets it has (Linux /proc/cpuinfo): the backend choice keys
its decision by it, the bf16 backends warn by it, the benchmarks record it."""

from __future__ import annotations

import os
import platform
from functools import cache


@cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags


def cpu_model() -> str:
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags; empty where unknown (not Linux)."""
    return _cpuinfo()[1]


def cpu_bf16_support() -> str:
    """The CPU's bf16 matrix instruction sets, '' if none or unknown. bf16 weights only pay off where oneDNN can
    use them (AMX tiles or AVX512-BF16); elsewhere bf16 is emulated and slower than fp32."""
    return " ".join(flag for flag in ("amx_bf16", "avx512_bf16") if flag in cpu_flags())


def cpu_seconds_busy() -> tuple[float, float] | None:
    """The machine's CPU time so far (Linux /proc/stat, all CPUs): (busy, total) seconds; None where unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(fields)
    return (total - fields[3] - fields[4]) / tick, total / tick


class OthersLoad:
    """How much of the machine's CPUs other processes used while this block ran (``share``: 0 to 1; None where
    unknown): a measurement taken while they did says more of them than of what it measured."""

    def __enter__(self) -> OthersLoad:
        self.share: float | None = None
        self._machine, self._own = cpu_seconds_busy(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        machine = cpu_seconds_busy()
        if self._machine is None or machine is None or machine[1] <= self._machine[1]:
            return
        own = sum(os.times()[:2]) - self._own  # this process's threads, user and system
        others = (machine[0] - self._machine[0]) - own
        self.share = min(1.0, max(0.0, others / (machine[1] - self._machine[1])))
