"""The worker's side of the Redis queue: batch pop with an in-flight record, publish + release, recovery."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Sequence

import redis

from common.batch_metrics import SUM_FIELD, batch_observations
from common.keys import Keys
from common.protocol import Reply, encode_reply
from worker.loop import BatchStats
from worker.scripts import POP_WINDOW, RECOVER_INFLIGHT

log = logging.getLogger(__name__)

# Redis rejects blocking timeouts below its resolution; under 1 ms we don't block at all.
_MIN_BLOCK_S = 0.001

RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def digest(raw: bytes) -> str:
    """The id of a raw message in the deaths hash (same as Lua's redis.sha1hex)."""
    return hashlib.sha1(raw).hexdigest()


class RedisRequestQueue:
    """``pop`` is one Lua script: LRANGE + LTRIM of the window and RPUSH of the same messages onto this
    worker's in-flight list, atomically. ``publish`` delivers replies and removes the answered messages from
    the in-flight list in one MULTI/EXEC. If the worker dies in between, the reaper (any live worker) gives
    the in-flight messages back: at-least-once delivery; the API keeps the first reply per text."""

    def __init__(self, client: redis.Redis, keys: Keys, reply_ttl_s: int, worker_id: str,
                 max_deliveries: int = 3) -> None:
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s
        self.worker_id = worker_id
        self._max_deliveries = max_deliveries
        self._pop = client.register_script(POP_WINDOW)
        self._recover = client.register_script(RECOVER_INFLIGHT)
        self._release_lock = client.register_script(RELEASE_LOCK)

    def pop(self, max_items: int, block_s: float) -> list[bytes]:
        items = self._pop_now(max_items)
        if items or block_s < _MIN_BLOCK_S:
            return items
        # Blocking peek: BLMOVE from the list onto its own head takes nothing (the element goes back
        # where it was, atomically) but returns as soon as the list is non-empty, or None at timeout.
        requests = self._keys.requests
        if self._redis.blmove(requests, requests, round(block_s, 3), "LEFT", "LEFT") is None:
            return []
        return self._pop_now(max_items)

    def _pop_now(self, max_items: int) -> list[bytes]:
        keys = [self._keys.requests, self._keys.inflight(self.worker_id), self._keys.deaths]
        return self._pop(keys=keys, args=[max_items])

    def publish(self, replies: Sequence[Reply], stats: BatchStats, done: Sequence[bytes]) -> None:
        by_key: dict[str, list[bytes]] = {}
        for reply in replies:
            by_key.setdefault(self._keys.reply(reply.request_id), []).append(encode_reply(reply))
        pipe = self._redis.pipeline(transaction=True)
        for key, payloads in by_key.items():
            pipe.rpush(key, *payloads)
            pipe.expire(key, self._reply_ttl_s)
        inflight = self._keys.inflight(self.worker_id)
        for raw in done:
            pipe.lrem(inflight, 1, raw)
        if done:
            # A suspect that got through is cleared (no-op for the rest).
            pipe.hdel(self._keys.deaths, *{digest(raw) for raw in done})
        counters = {"batches": 1 if stats.size else 0, "texts": stats.size, "tokens": stats.tokens,
                    "padded_tokens": stats.padded_tokens, "expired": stats.expired, "malformed": stats.malformed,
                    "failed": stats.failed}
        for name, value in counters.items():
            if value:
                pipe.hincrby(self._keys.stats, name, value)
        if stats.size:
            pipe.hincrby(self._keys.batch_sizes, str(stats.size), 1)
        for spec, value in batch_observations(stats.size, stats.tokens, stats.padded_tokens,
                                              stats.inference_ms / 1000):
            key = self._keys.histogram(spec.name)
            pipe.hincrby(key, spec.field(value), 1)
            pipe.hincrbyfloat(key, SUM_FIELD, value)
        if len(pipe):
            pipe.execute()

    def recover(self, worker_id: str, *, died: bool) -> tuple[int, int]:
        """Give ``worker_id``'s in-flight messages back to the head of the queue. ``died``: count a death
        against each (and dead-letter those at MAX_DELIVERIES). Returns (re-queued, dead-lettered)."""
        keys = [self._keys.inflight(worker_id), self._keys.requests, self._keys.deaths, self._keys.dead_letter,
                self._keys.workers]
        args = [worker_id, 1 if died else 0, self._max_deliveries, self._keys.reply(""), self._reply_ttl_s,
                f"{time.time():.3f}"]
        requeued, dead = self._recover(keys=keys, args=args)
        return int(requeued), int(dead)

    def release_own(self) -> int:
        """After a lost connection this worker holds nothing it will still answer: give its in-flight
        messages back (no death counted). Also at start, for a reused worker id."""
        requeued, _ = self.recover(self.worker_id, died=False)
        if requeued:
            log.warning("gave %d in-flight message(s) back to the queue", requeued)
        return requeued

    def reap(self, lock_ttl_s: float) -> dict[str, tuple[int, int]]:
        """If no other worker is reaping, recover every registered worker whose heartbeat expired."""
        token = uuid.uuid4().hex
        if not self._redis.set(self._keys.reaper_lock, token, nx=True, px=int(lock_ttl_s * 1000)):
            return {}
        try:
            members = sorted(m.decode() for m in self._redis.smembers(self._keys.workers))
            pipe = self._redis.pipeline(transaction=False)
            for member in members:
                pipe.exists(self._keys.heartbeat(member))
            dead = [m for m, alive in zip(members, pipe.execute() if members else []) if not alive]
            reaped = {}
            for worker_id in dead:
                reaped[worker_id] = self.recover(worker_id, died=True)
                requeued, dead_lettered = reaped[worker_id]
                log.warning("worker %s is dead: %d message(s) re-queued, %d dead-lettered", worker_id, requeued,
                            dead_lettered)
            return reaped
        finally:
            self._release_lock(keys=[self._keys.reaper_lock], args=[token])
