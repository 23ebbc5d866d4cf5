"""Recovery of in-flight messages: a worker's own after a lost connection or a restart, and the reaper, which
every live worker runs after its heartbeat to give dead workers' messages back to the queue.

The work is one Lua script (common/scripts.py): the messages go back to the head of the queue in their original
order; when their holder died, each gets a death counted against it and is dead-lettered at MAX_DELIVERIES.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import redis

from common.keys import Keys
from common.scripts import Scripts, liveness

log = logging.getLogger(__name__)


class Recovered(NamedTuple):
    requeued: int
    dead_lettered: int


class Recovery:
    def __init__(self, client: redis.Redis, keys: Keys, *, reply_ttl_s: int, max_deliveries: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s
        self._max_deliveries = max_deliveries
        self._clock = clock
        self._scripts = Scripts(client, keys)

    def recover(self, worker_id: str, *, died: bool) -> Recovered:
        """Give ``worker_id``'s in-flight messages back to the head of the queue. ``died``: count a death against
        each (dead-lettering those at MAX_DELIVERIES) and unregister the worker."""
        requeued, dead = self._scripts.recover_inflight(worker_id, died=died, max_deliveries=self._max_deliveries,
                                                        reply_ttl_s=self._reply_ttl_s, now=self._clock())
        return Recovered(int(requeued), int(dead))

    def release(self, worker_id: str) -> int:
        """A live worker gives back what it holds and will not answer (after a lost connection: the window in
        hand was lost with it). No death is counted. Returns the messages re-queued."""
        requeued = self.recover(worker_id, died=False).requeued
        if requeued:
            log.warning("gave %d in-flight message(s) back to the queue", requeued)
        return requeued

    def reap(self, lock_ttl_s: float) -> dict[str, Recovered]:
        """If no other worker is reaping, recover every registered worker whose heartbeat expired."""
        token = uuid.uuid4().hex
        if not self._redis.set(self._keys.reaper_lock, token, nx=True, px=int(lock_ttl_s * 1000)):
            return {}
        try:
            reaped = {}
            for worker_id in self._dead_workers():
                reaped[worker_id] = recovered = self.recover(worker_id, died=True)
                log.warning("worker %s is dead: %d message(s) re-queued, %d dead-lettered", worker_id,
                            recovered.requeued, recovered.dead_lettered)
            return reaped
        finally:
            self._scripts.release_lock(self._keys.reaper_lock, token)

    def _dead_workers(self) -> list[str]:
        """Registered workers whose heartbeat key is gone."""
        return [worker for worker, alive in liveness(self._scripts.worker_liveness()).items() if not alive]
