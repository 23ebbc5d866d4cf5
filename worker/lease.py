"""How long a worker's hold on a window lasts without progress: its lease.

The pop takes a lease on the window and every publish extends it, so the lease is renewed by the batch loop
itself, never by a side thread: a loop that freezes (SIGSTOP, a stuck driver, a hung forward pass) stops
renewing even while its heartbeat thread goes on. Once the lease is gone, the reaper gives the window to other
workers (worker/recovery.py).

The term must outlast the slowest legitimate step between two renewals — one forward pass, plus planning for the
first — or healthy windows would be taken back and run twice; it must also be short, because the texts of a
frozen window wait that long (plus a reaper period) before running elsewhere, inside REQUEST_TIMEOUT_S.
So: a floor (WORK_LEASE_S), raised to a multiple of the slowest pass this worker ran recently.
"""

from __future__ import annotations

from collections import deque

# A pass may take this many times the slowest recent one before its window is taken back: CPU contention from a
# neighbour (two workers on two cores) or a longer text than usual slow a pass down, a frozen process stops it.
SLOWEST_PASS_MULTIPLE = 4.0
RECENT_PASSES = 64


class LeaseTerm:
    def __init__(self, floor_s: float, *, multiple: float = SLOWEST_PASS_MULTIPLE, recent: int = RECENT_PASSES) -> None:
        if floor_s <= 0:
            raise ValueError("the lease floor must be positive")
        self._floor_s = floor_s
        self._multiple = multiple
        self._recent: deque[float] = deque(maxlen=recent)

    def observe(self, pass_s: float) -> None:
        """A forward pass (and what came with it between two renewals) took ``pass_s`` seconds."""
        self._recent.append(pass_s)

    @property
    def seconds(self) -> float:
        slowest = max(self._recent, default=0.0)
        return max(self._floor_s, self._multiple * slowest)
