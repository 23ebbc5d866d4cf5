"""The worker's side of the Redis queue: pop a window with an in-flight record; publish replies and release.

``pop`` is one Lua script (common/scripts.py): LRANGE + LTRIM of the window, RPUSH of the same messages onto this
worker's in-flight list and a lease on them, atomically. ``publish`` delivers replies, removes the answered
messages from the in-flight list, extends the lease and adds the counts in one MULTI/EXEC. If the worker dies in
between, or stalls past its lease, a live worker gives the in-flight messages back (worker/recovery.py):
at-least-once delivery; the API keeps the first reply per text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from common.batch_metrics import SUM_FIELD, batch_observations
from common.keys import Keys
from common.protocol import encode_reply
from common.scripts import Scripts, digest, lease_ms
from worker.window import Outbox, Popped

# Redis rejects blocking timeouts below its resolution; under 1 ms we don't block at all.
_MIN_BLOCK_S = 0.001


class WorkerIdTaken(RuntimeError):
    """Another live process registered this worker's id: two workers under one id would reap each other."""


class RedisRequestQueue:
    def __init__(self, client: redis.Redis, keys: Keys, reply_ttl_s: int, worker_id: str, incarnation: str, *,
                 suspect_deaths: int, clock: Callable[[], float] = time.time) -> None:
        """``suspect_deaths``: deaths after which a message runs alone (``DeadLetterPolicy.suspect_deaths``)."""
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s
        self.worker_id = worker_id
        self.incarnation = incarnation
        self._suspect_deaths = suspect_deaths
        self._clock = clock
        self._scripts = Scripts(client, keys)

    def pop(self, max_items: int, block_s: float, *, lease_s: float, suspect_allowed: bool = True) -> Popped:
        popped = self._pop(max_items, lease_s, suspect_allowed)
        if popped or block_s < _MIN_BLOCK_S:
            return popped
        # Blocking peek: BLMOVE from the list onto its own head takes nothing (the element goes back
        # where it was, atomically) but returns as soon as the list is non-empty, or None at timeout.
        requests = self._keys.requests
        if self._redis.blmove(requests, requests, round(block_s, 3), "LEFT", "LEFT") is None:
            return Popped()
        return self._pop(max_items, lease_s, suspect_allowed)

    def _pop(self, max_items: int, lease_s: float, suspect_allowed: bool) -> Popped:
        skipped, *messages = self._scripts.pop_window(self.worker_id, self.incarnation, max_items,
                                                      suspect_allowed=suspect_allowed,
                                                      suspect_deaths=self._suspect_deaths, lease_s=lease_s,
                                                      now=self._clock())
        if skipped < 0:
            raise WorkerIdTaken(f"worker id {self.worker_id!r} is registered by another process; give each worker "
                                "its own WORKER_ID (or leave it unset: <hostname>-<pid>)")
        return Popped(messages, cancelled=skipped)

    def publish(self, outbox: Outbox) -> bool:
        """Deliver, release, extend the lease, count. False if the window was no longer this worker's (it was
        taken back while this worker stalled): its replies went out anyway (first reply per text wins)."""
        by_key: dict[str, list[bytes]] = {}
        for reply in outbox.replies:
            by_key.setdefault(self._keys.reply(reply.request_id), []).append(encode_reply(reply))
        pipe = self._redis.pipeline(transaction=True)
        for key, payloads in by_key.items():
            pipe.rpush(key, *payloads)
            pipe.expire(key, self._reply_ttl_s)
        releases = len(pipe)
        inflight = self._keys.inflight(self.worker_id)
        for raw in outbox.done:
            pipe.lrem(inflight, 1, raw)
        if outbox.done:
            # A suspect that got through is cleared (no-op for the rest).
            pipe.hdel(self._keys.deaths, *{digest(raw) for raw in outbox.done})
        lease = self._keys.lease(self.worker_id)
        if outbox.lease_s > 0:
            # Set, not extended: a lease that ran out before the reaper acted is taken again by progress.
            pipe.set(lease, self.incarnation, px=lease_ms(outbox.lease_s))
        elif outbox.done:
            pipe.delete(lease)  # the window is done: nothing held, nothing to lease
        for name, value in outbox.counts.nonzero().items():
            pipe.hincrby(self._keys.stats, name, value)
        counts = outbox.counts
        if counts.texts:
            pipe.hincrby(self._keys.batch_sizes, str(counts.texts), 1)
        for spec, value in batch_observations(counts.texts, counts.tokens, counts.padded_tokens, outbox.inference_s):
            key = self._keys.histogram(spec.name)
            pipe.hincrby(key, spec.field(value), 1)
            pipe.hincrbyfloat(key, SUM_FIELD, value)
        if not len(pipe):
            return True
        results = pipe.execute()
        return all(results[releases:releases + len(outbox.done)])
