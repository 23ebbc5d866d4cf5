"""How ``BACKEND=auto`` times its candidates so that its figures can be trusted.

A shared VM's speed wanders by 10-20 % over minutes, and other processes come and go. So the candidates are timed
in turn, round after round (a drift weighs on all of them alike, not on whichever ran last), each candidate's
figure is the median of its rounds, and rounds are added while the three rounds nearest any candidate's median
still spread wider than ``SPREAD_LIMIT`` (so one disturbed round is outvoted by two more, not averaged in). Meanwhile the host's CPU accounting (/proc/stat) tells how much of the CPUs other processes took:
figures measured on a busy host are reported as such.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K")

MIN_ROUNDS = 3
MAX_ROUNDS = 5
SPREAD_LIMIT = 0.10  # spread of the 3 rounds nearest the median: wider, and another round is taken (up to MAX_ROUNDS)
BUSY_SHARE = 0.25  # other processes took more than this share of all CPUs while measuring: the host was busy

# A run: given the seconds it should last, it runs about that long and returns its rate (sentences/s).
Run = Callable[[float], float]


def spread(runs: list[float]) -> float:
    """How far the (up to) three rounds nearest the median lie apart, relative to the median: (fastest - slowest) /
    median; 0 for fewer than two rounds."""
    if len(runs) < 2:
        return 0.0
    middle = statistics.median(runs)
    core = sorted(runs, key=lambda r: abs(r - middle))[:3]
    return (max(core) - min(core)) / middle if middle > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class Timed(Generic[K]):
    runs: dict[K, list[float]]  # each candidate's rate per round, in the order the rounds ran
    others_cpu_share: float | None  # the share of all CPUs other processes used meanwhile; None: not known here

    def median(self, key: K) -> float:
        return statistics.median(self.runs[key])

    @property
    def rounds(self) -> int:
        return max((len(r) for r in self.runs.values()), default=0)

    @property
    def host_busy(self) -> bool:
        return self.others_cpu_share is not None and self.others_cpu_share > BUSY_SHARE


def time_in_rounds(candidates: Mapping[K, Run], seconds: float) -> Timed[K]:
    """Time every candidate in turn, ``seconds`` each in all over MIN_ROUNDS rounds; more rounds (as long each)
    while any candidate's rounds spread wider than SPREAD_LIMIT, up to MAX_ROUNDS."""
    host = HostCpu.now()
    runs: dict[K, list[float]] = {key: [] for key in candidates}
    per_round = seconds / MIN_ROUNDS
    while True:
        for key, run in candidates.items():
            runs[key].append(run(per_round))
        done = len(next(iter(runs.values()), []))
        if done >= MAX_ROUNDS or (done >= MIN_ROUNDS and all(spread(r) <= SPREAD_LIMIT for r in runs.values())):
            return Timed(runs, host.others_share())


@dataclass(frozen=True, slots=True)
class HostCpu:
    """A reading of the host's busy CPU time, this process's own CPU time and the wall clock, to tell afterwards what
    share of all CPUs other processes used in between. No sleeping, no sampling thread: two readings."""

    busy_s: float | None  # all CPUs' busy time since boot (steal included: a hypervisor's take counts as taken)
    cpus: int
    own_s: float
    wall_s: float

    @classmethod
    def now(cls) -> HostCpu:
        busy, cpus = _proc_stat()
        return cls(busy, cpus, time.process_time(), time.monotonic())

    def others_share(self) -> float | None:
        later = HostCpu.now()
        wall = later.wall_s - self.wall_s
        if self.busy_s is None or later.busy_s is None or wall <= 0 or self.cpus <= 0:
            return None
        others = (later.busy_s - self.busy_s) - (later.own_s - self.own_s)
        return min(1.0, max(0.0, others / (wall * self.cpus)))


def _proc_stat(path: Path = Path("/proc/stat")) -> tuple[float | None, int]:
    """(busy seconds of all CPUs since boot, CPU count) from Linux's /proc/stat; (None, 0) elsewhere."""
    try:
        lines = path.read_text().splitlines()
        fields = [int(v) for v in lines[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user and nice]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), cpus
