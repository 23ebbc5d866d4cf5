"""How long a worker's hold on a window lasts without progress: its lease.

The pop takes a lease on the window and every publish extends it, so the lease is renewed by the batch loop
itself, never by a side thread: a loop that freezes (SIGSTOP, a stuck driver, a hung forward pass) stops
renewing even while its heartbeat thread goes on. Once the lease is gone, the reaper gives the window to other
workers (worker/recovery.py).

The term must outlast the slowest legitimate step between two renewals — one forward pass, plus planning for the
first — or healthy windows would be taken back and run twice; it must also be short, because the texts of a
frozen window wait that long (plus a reaper period) before running elsewhere, inside REQUEST_TIMEOUT_S.
So: a floor (WORK_LEASE_S), raised to a multiple of the slowest pass this worker ran recently, and held below a
share of the requests' own time budget (deadline - enqueue time, which every work item carries) so that a
frozen window's texts are taken back, re-run and answered before their deadline.

Only passes whose publish found the window still this worker's are observed (``BatchLoop``): a pass that
outlived its lease and was taken back is a freeze, not a measure of how long passes take. Otherwise a 6 s
SIGSTOP would raise the lease to 24 s, and a second freeze would never be taken back in time.
"""

from __future__ import annotations

from collections import deque

# A pass may take this many times the slowest recent one before its window is taken back: CPU contention from a
# neighbour (two workers on two cores) or a longer text than usual slow a pass down, a frozen process stops it.
SLOWEST_PASS_MULTIPLE = 4.0
RECENT_PASSES = 64
# The lease stays within this share of the requests' time budget (REQUEST_TIMEOUT_S): taken back after it plus a
# reaper period (HEARTBEAT_INTERVAL_S), a frozen window's texts still have most of their budget to run elsewhere.
BUDGET_SHARE = 1 / 3


class LeaseTerm:
    def __init__(self, floor_s: float, *, multiple: float = SLOWEST_PASS_MULTIPLE, recent: int = RECENT_PASSES,
                 budget_share: float = BUDGET_SHARE) -> None:
        if floor_s <= 0:
            raise ValueError("the lease floor must be positive")
        self._floor_s = floor_s
        self._multiple = multiple
        self._budget_share = budget_share
        self._recent: deque[float] = deque(maxlen=recent)
        self._ceiling_s = float("inf")  # until a window says what its requests' budget is

    def observe(self, pass_s: float) -> None:
        """A forward pass (and what came with it between two renewals) took ``pass_s`` seconds, and its publish
        found the window still held."""
        self._recent.append(pass_s)

    def bound(self, budget_s: float) -> None:
        """The requests in hand may take ``budget_s`` seconds in all (their deadline - their enqueue time)."""
        self._ceiling_s = self._budget_share * budget_s

    @property
    def wanted_s(self) -> float:
        """What the recent passes alone ask for: a multiple of the slowest."""
        return self._multiple * max(self._recent, default=0.0)

    @property
    def ceiling_s(self) -> float:
        return max(self._floor_s, self._ceiling_s)

    def seconds_after(self, pass_s: float) -> float:
        """The term if a pass of ``pass_s`` seconds were observed (a publish's lease: it covers the next pass)."""
        return max(self._floor_s, min(max(self.wanted_s, self._multiple * pass_s), self._ceiling_s))

    @property
    def seconds(self) -> float:
        return max(self._floor_s, min(self.wanted_s, self._ceiling_s))
