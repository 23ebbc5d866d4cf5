"""Repeated warnings, rate-limited: the same warning (same logger, same message template) at most once per interval;
the next one that passes says how many were held back ("(and 37 more like it in 10 s)").

A warning that fires per request or per pass while something is wrong (Redis away, expired texts under overload)
would otherwise write thousands of identical lines a second: the log's cost and its noise grow with the load,
exactly when it is read. Errors are never held back: each names what failed (a pass's request ids, say), and they
are rare by design; a flood of them is the bug to see.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

REPEAT_INTERVAL_S = 10.0
# Distinct warnings remembered at once; beyond, the ones whose interval has passed are forgotten (messages built
# with f-strings make every line distinct, so this bounds the memory, not the limiting).
MAX_REMEMBERED = 1024


class RepeatLimiter(logging.Filter):
    """A handler's filter (it sees every record the handler writes, whichever logger made it). Thread-safe: the
    worker logs from its batch loop and its heartbeat thread."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, template) -> [when one last passed, how many were held back since]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, record.msg if isinstance(record.msg, str) else str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                return False
            self._seen[key] = [now, 0]
            if len(self._seen) > MAX_REMEMBERED:
                self._forget(now)
        if seen is not None and seen[1]:
            held_back = int(seen[1])
            # Appended to the template (no % in it): the message's own arguments still fill it.
            record.msg = f"{key[1]} (and {held_back} more like it in {now - seen[0]:.0f} s)"
            record.repeats_suppressed = held_back  # a field of its own in JSON lines
        return True

    def _forget(self, now: float) -> None:
        self._seen = {key: seen for key, seen in self._seen.items() if now - seen[0] < self.interval_s or seen[1]}
        if len(self._seen) > MAX_REMEMBERED:  # a flood of distinct ones within one interval: start afresh
            self._seen.clear()
