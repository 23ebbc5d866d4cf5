"""The worker's side of the Redis queue: batch pop and reply publishing."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from common.keys import Keys
from common.protocol import Reply, encode_reply
from worker.loop import BatchStats

# Redis rejects blocking timeouts below its resolution; under 1 ms we don't block at all.
_MIN_BLOCK_S = 0.001


class RedisRequestQueue:
    """``pop`` is LRANGE + LTRIM inside MULTI/EXEC: one atomic round trip, so two workers never take the
    same item and no item is taken twice. Waiting on an empty queue uses a blocking command, never a
    sleep loop."""

    def __init__(self, client: redis.Redis, keys: Keys, reply_ttl_s: int) -> None:
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s

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
        pipe = self._redis.pipeline(transaction=True)
        pipe.lrange(self._keys.requests, 0, max_items - 1)
        pipe.ltrim(self._keys.requests, max_items, -1)
        items, _ = pipe.execute()
        return items

    def publish(self, replies: Sequence[Reply], stats: BatchStats) -> None:
        by_key: dict[str, list[bytes]] = {}
        for reply in replies:
            by_key.setdefault(self._keys.reply(reply.request_id), []).append(encode_reply(reply))
        pipe = self._redis.pipeline(transaction=False)
        for key, payloads in by_key.items():
            pipe.rpush(key, *payloads)
            pipe.expire(key, self._reply_ttl_s)
        counters = {"batches": 1 if stats.size else 0, "texts": stats.size, "tokens": stats.tokens,
                    "padded_tokens": stats.padded_tokens, "expired": stats.expired, "malformed": stats.malformed,
                    "failed": stats.failed}
        for name, value in counters.items():
            if value:
                pipe.hincrby(self._keys.stats, name, value)
        if stats.size:
            pipe.hincrby(self._keys.batch_sizes, str(stats.size), 1)
        if len(pipe):
            pipe.execute()
