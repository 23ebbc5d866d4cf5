"""The worker's side of the Redis queue: pop a window with an in-flight record; publish replies and release.

``pop`` is one Lua script (common/scripts.py): LRANGE + LTRIM of the window and RPUSH of the same messages onto
this worker's in-flight list, atomically. ``publish`` delivers replies, removes the answered messages from the
in-flight list and adds the counts in one MULTI/EXEC. If the worker dies in between, a live worker gives the
in-flight messages back (worker/recovery.py): at-least-once delivery; the API keeps the first reply per text.
"""

from __future__ import annotations

import redis

from common.batch_metrics import SUM_FIELD, batch_observations
from common.keys import Keys
from common.protocol import encode_reply
from common.scripts import Scripts, digest
from worker.window import Outbox

# Redis rejects blocking timeouts below its resolution; under 1 ms we don't block at all.
_MIN_BLOCK_S = 0.001


class RedisRequestQueue:
    def __init__(self, client: redis.Redis, keys: Keys, reply_ttl_s: int, worker_id: str) -> None:
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s
        self.worker_id = worker_id
        self._scripts = Scripts(client, keys)

    def pop(self, max_items: int, block_s: float) -> list[bytes]:
        items = self._scripts.pop_window(self.worker_id, max_items)
        if items or block_s < _MIN_BLOCK_S:
            return items
        # Blocking peek: BLMOVE from the list onto its own head takes nothing (the element goes back
        # where it was, atomically) but returns as soon as the list is non-empty, or None at timeout.
        requests = self._keys.requests
        if self._redis.blmove(requests, requests, round(block_s, 3), "LEFT", "LEFT") is None:
            return []
        return self._scripts.pop_window(self.worker_id, max_items)

    def publish(self, outbox: Outbox) -> None:
        by_key: dict[str, list[bytes]] = {}
        for reply in outbox.replies:
            by_key.setdefault(self._keys.reply(reply.request_id), []).append(encode_reply(reply))
        pipe = self._redis.pipeline(transaction=True)
        for key, payloads in by_key.items():
            pipe.rpush(key, *payloads)
            pipe.expire(key, self._reply_ttl_s)
        inflight = self._keys.inflight(self.worker_id)
        for raw in outbox.done:
            pipe.lrem(inflight, 1, raw)
        if outbox.done:
            # A suspect that got through is cleared (no-op for the rest).
            pipe.hdel(self._keys.deaths, *{digest(raw) for raw in outbox.done})
        for name, value in outbox.counts.nonzero().items():
            pipe.hincrby(self._keys.stats, name, value)
        counts = outbox.counts
        if counts.texts:
            pipe.hincrby(self._keys.batch_sizes, str(counts.texts), 1)
        for spec, value in batch_observations(counts.texts, counts.tokens, counts.padded_tokens, outbox.inference_s):
            key = self._keys.histogram(spec.name)
            pipe.hincrby(key, spec.field(value), 1)
            pipe.hincrbyfloat(key, SUM_FIELD, value)
        if len(pipe):
            pipe.execute()
