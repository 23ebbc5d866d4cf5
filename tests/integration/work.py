"""Work on a real Redis queue as the API puts it there and reads it back, for the integration tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from common.keys import Keys
from common.protocol import Reply, WorkItem, decode_reply, encode_item, new_request_id
from common.scripts import DeadLetterPolicy
from worker.recovery import Recovery
from worker.redis_queue import RedisRequestQueue


def enqueue(client: redis.Redis, keys: Keys, texts: Sequence[str], *, timeout: float = 30.0,
            request_id: str | None = None) -> str:
    """Push one request's work items (one per text); returns its request id."""
    rid = request_id or new_request_id()
    now = time.time()
    client.rpush(keys.requests, *[encode_item(WorkItem(rid, i, t, now + timeout, now)) for i, t in enumerate(texts)])
    return rid


def replies(client: redis.Redis, keys: Keys, rid: str) -> list[Reply]:
    """The replies on the request's key, by index (left in place)."""
    return sorted((decode_reply(r) for r in client.lrange(keys.reply(rid), 0, -1)), key=lambda r: r.index)


def worker_queue(client: redis.Redis, keys: Keys, worker_id: str) -> RedisRequestQueue:
    """A worker's queue under ``worker_id``, incarnation ``<worker_id>-i``."""
    return RedisRequestQueue(client, keys, 30, worker_id, f"{worker_id}-i")


def recovery(client: redis.Redis, keys: Keys) -> Recovery:
    """A worker's recovery with the default dead-letter policy (common/settings.py)."""
    return Recovery(client, keys, reply_ttl_s=30, dead_letter=DeadLetterPolicy(3, 1000, 7 * 24 * 3600, False))
