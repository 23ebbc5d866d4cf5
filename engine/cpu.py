"""What this machine's CPU is and which instruction sets it has (Linux /proc/cpuinfo): the backend choice keys
its decision by it, the bf16 backends warn by it, the benchmarks record it."""

from __future__ import annotations

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
