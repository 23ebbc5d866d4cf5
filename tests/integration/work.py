"""Work on a real Redis queue as the API puts it there and reads it back, for the integration tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from common.keys import Keys
from common.protocol import Reply, WorkItem, decode_reply, encode_item, new_request_id


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
