"""Redis clients configured for a blocking queue.

redis-py 8's defaults are wrong for this service: a 5 s socket timeout cuts blocking waits (BLPOP /
BLMOVE) that legitimately last longer, and its default retry policy re-sends a command after a
timeout or a dropped connection — for RPUSH or a LRANGE/LTRIM pop that duplicates or loses queue
items. So: no client-side retries at all, a read timeout longer than the longest blocking wait, and
a connection pool sized for the number of concurrent waiters.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.settings import SharedSettings

# Margin added to the longest blocking wait: Redis answers a timed-out blocking command on its next
# timer tick (up to 100 ms late with the default `hz 10`), plus network time.
BLOCKING_READ_MARGIN_S = 2.0


def _common_kwargs(settings: SharedSettings, longest_block_s: float) -> dict[str, Any]:
    return dict(
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=longest_block_s + BLOCKING_READ_MARGIN_S,
        socket_keepalive=True,
        retry_on_error=[],
    )


def sync_client(settings: SharedSettings, *, longest_block_s: float, name: str | None = None) -> redis.Redis:
    """Client for a worker thread: one connection at a time, no retries. ``name``: the ``CLIENT SETNAME`` of its
    every connection (sent again on each reconnect)."""
    return redis.Redis.from_url(
        settings.redis_url,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
        **_common_kwargs(settings, longest_block_s),
    )


def async_client(settings: SharedSettings, *, longest_block_s: float, max_connections: int,
                 url: str | None = None) -> redis.asyncio.Redis:
    """Client for an API process (of REDIS_URL's Redis, or ``url``'s). The pool blocks (briefly) instead of raising
    when exhausted; callers admit at most ``max_connections`` concurrent waiters so that never lasts."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url or settings.redis_url,
        max_connections=max_connections,
        timeout=settings.redis_connect_timeout_s,
        retry=AsyncRetry(NoBackoff(), 0),
        **_common_kwargs(settings, longest_block_s),
    )
    return redis.asyncio.Redis(connection_pool=pool)
