"""One clock for deadlines across hosts: Redis's.

A work item's deadline and enqueue time are written by an API host and read by a worker host. Compared on each
host's own clock, a worker whose clock runs 10 s ahead drops every text as expired while looking healthy. So both
sides stamp and compare in Redis's time: each measures its offset to the Redis server's ``TIME`` (to within half a
round trip) and adds it to its own clock. The offset is measured at start and again periodically (clocks drift,
NTP steps them); an offset above ``SKEW_WARNING_S`` is logged, because it means a host's clock is wrong.

Until a first measurement succeeds (Redis away since the start) the clock is the host's own, unchecked: ``synced``
says so, and nothing should stamp a deadline with it (the API measures first, or answers 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

SKEW_WARNING_S = 1.0


class RedisClock:
    """``clock()``: unix seconds as the Redis server counts them (this host's clock plus the measured offset)."""

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self.offset_s = 0.0  # Redis minus this host, as last measured
        self.synced = False  # an offset has been measured: until then this is the host's clock, however wrong

    def __call__(self) -> float:
        return self._local() + self.offset_s

    def _update(self, before: float, redis_time: Any, after: float) -> float:
        seconds, micros = redis_time
        offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2
        if abs(offset) > SKEW_WARNING_S and abs(offset - self.offset_s) > SKEW_WARNING_S / 2:
            log.warning("this host's clock is %.1f s %s the Redis server's: deadlines are measured on Redis's "
                        "clock; fix the host's time sync", abs(offset), "behind" if offset > 0 else "ahead of")
        self.offset_s = offset
        self.synced = True
        return offset

    def sync(self, time_command: Callable[[], Any]) -> float:
        """Measure the offset with a synchronous ``TIME`` (e.g. ``client.time``); returns it."""
        before = self._local()
        answer = time_command()
        return self._update(before, answer, self._local())

    async def sync_async(self, time_command: Callable[[], Awaitable[Any]]) -> float:
        """The same with an asyncio client's ``time``."""
        before = self._local()
        answer = await time_command()
        return self._update(before, answer, self._local())
