"""Work on a real Redis queue as the API puts it there and reads it back, for the integration tests."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import redis

from common.keys import Keys
from common.protocol import Reply, WorkItem, decode_reply, encode_item, new_request_id
from worker.recovery import Recovery
from worker.redis_queue import RedisRequestQueue
from worker.settings import WorkerSettings

# With the default MAX_DELIVERIES, a message runs alone from its second death on.
SUSPECT_DEATHS = WorkerSettings.model_construct().dead_letter_policy().suspect_deaths


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
    return RedisRequestQueue(client, keys, 30, worker_id, f"{worker_id}-i", suspect_deaths=SUSPECT_DEATHS)


def pop(queue: RedisRequestQueue, n: int, lease_s: float = 30.0, **kwargs: bool) -> list[bytes]:
    """The messages of one non-blocking pop."""
    return queue.pop(n, block_s=0, lease_s=lease_s, **kwargs).messages


def messages(texts: Sequence[str], rid: str | None = None) -> tuple[list[bytes], str]:
    """One request's work items (deadline far away) and its request id."""
    rid = rid or new_request_id()
    return [encode_item(WorkItem(rid, i, t, 1e12, 0.0)) for i, t in enumerate(texts)], rid


def recovery(client: redis.Redis, keys: Keys, **policy: int | bool) -> Recovery:
    """A worker's recovery with the default dead-letter policy (DEAD_LETTER_* settings), but for ``policy``'s fields
    (``max_deliveries``, ``max_records``, ``ttl_s``, ``keep_text``)."""
    defaults = WorkerSettings.model_construct().dead_letter_policy()
    return Recovery(client, keys, reply_ttl_s=30, dead_letter=dataclasses.replace(defaults, **policy))
