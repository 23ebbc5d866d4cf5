"""Redis clients configured for a blocking queue, of one server (REDIS_URL) or of the master Sentinel names
(REDIS_SENTINELS).

redis-py 8's defaults are wrong for this service: a 5 s socket timeout cuts blocking waits (BLPOP /
BLMOVE) that legitimately last longer, and its default retry policy re-sends a command after a
timeout or a dropped connection — for RPUSH or a LRANGE/LTRIM pop that duplicates or loses queue
items. So: no client-side retries at all, a read timeout longer than the longest blocking wait, and
a connection pool sized for the number of concurrent waiters.

With Sentinel, each new connection asks the Sentinels for the master's address (redis-py's Sentinel pools): after a
failover the next command's connection reaches the new master. A command in progress when the master died fails
(never re-sent, as above): its caller answers 503 or, in a worker, reconnects and gives back what it held.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from common.settings import SharedSettings

# Margin added to the longest blocking wait: Redis answers a timed-out blocking command on its next
# timer tick (up to 100 ms late with the default `hz 10`), plus network time.
BLOCKING_READ_MARGIN_S = 2.0


class _SentinelBlockingPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """The master's pool, found through Sentinel, that waits for a free connection instead of raising (as
    ``async_client``'s pool does without Sentinel)."""


class _LeanPool(redis.asyncio.ConnectionPool):
    """The requests' pool (``async_waiting_client``): redis-py's, less what each checkout and return cost on top of
    the round trip itself. redis-py 8 takes a lock around each, records observability counters (awaited, and a pool
    name formatted, each time), dispatches a release event, and checks the connection through its retry policy's
    wrapper (``python -m benchmarks.round_trips`` measures both pools under the same round trips). None of that is
    needed here: nothing awaits between taking a connection from the idle list and marking it in use (one event
    loop, so no lock), and the checks that matter stay: a connection the server closed, or with unread bytes (a
    reply that came after its reader gave up), is connected afresh before any use."""

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        connection = self.get_available_connection()  # MaxConnectionsError when all are in use
        try:
            if not connection.is_connected or await connection.can_read():
                await connection.disconnect()
                await connection.connect()
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():
            await connection.disconnect()
        self._available_connections.append(connection)


class _SentinelLeanPool(_LeanPool, redis.asyncio.sentinel.SentinelConnectionPool):
    """``_LeanPool`` of the master found through Sentinel (each new connection asks the Sentinels where it is)."""


def _common_kwargs(settings: SharedSettings, longest_block_s: float) -> dict[str, Any]:
    return dict(
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=longest_block_s + BLOCKING_READ_MARGIN_S,
        socket_keepalive=True,
        retry_on_error=[],
    )


def _master_kwargs(settings: SharedSettings) -> dict[str, Any]:
    """What REDIS_URL still says with Sentinel: database, credentials, TLS (the address comes from the Sentinels)."""
    parsed = parse_url(settings.redis_url)
    kept = {key: parsed[key] for key in ("db", "username", "password") if parsed.get(key) is not None}
    return {**kept, "ssl": settings.redis_url.startswith("rediss://")}


def _sentinel_kwargs(settings: SharedSettings) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: short timeouts (a dead one is skipped for the next), no retries."""
    return {"socket_connect_timeout": settings.redis_connect_timeout_s,
            "socket_timeout": settings.redis_connect_timeout_s, "password": settings.redis_sentinel_password}


def sync_client(settings: SharedSettings, *, longest_block_s: float, name: str | None = None) -> redis.Redis:
    """Client for a worker thread: one connection at a time, no retries. ``name``: the ``CLIENT SETNAME`` of its
    every connection (sent again on each reconnect)."""
    kwargs = dict(retry=Retry(NoBackoff(), 0), client_name=name, **_common_kwargs(settings, longest_block_s))
    if settings.redis_sentinels:
        sentinel = redis.sentinel.Sentinel(settings.sentinel_addresses(), sentinel_kwargs=_sentinel_kwargs(settings))
        return sentinel.master_for(settings.redis_sentinel_master, **kwargs, **_master_kwargs(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def async_client(settings: SharedSettings, *, longest_block_s: float, max_connections: int,
                 url: str | None = None) -> redis.asyncio.Redis:
    """Client for an API process (of the queue's Redis, or of ``url``'s: the response cache's). The pool blocks
    (briefly) instead of raising when exhausted; callers admit at most ``max_connections`` concurrent waiters so
    that never lasts."""
    return _async(settings, url, max_connections=max_connections, timeout=settings.redis_connect_timeout_s,
                  **_common_kwargs(settings, longest_block_s))


def async_waiting_client(settings: SharedSettings, *, max_connections: int) -> redis.asyncio.Redis:
    """Client for the requests' pushes and waits in an API process (api/gateway.py, api/round_trip.py): no socket
    timeout, each request bounding its round trips once by its deadline instead (a timer per read and, in Python
    3.11, a task per send otherwise), and a ``_LeanPool``, which raises rather than waits when exhausted: admission
    holds the process's requests to ``max_connections``, each with one connection at a time, so it never is."""
    kwargs = _common_kwargs(settings, 0.0)
    kwargs["socket_timeout"] = None
    return _async(settings, None, max_connections=max_connections, lean=True, **kwargs)


def _async(settings: SharedSettings, url: str | None, *, lean: bool = False, **kwargs: Any) -> redis.asyncio.Redis:
    """An API process's client of ``url`` (None: the queue's Redis, through the Sentinels if set), no retries;
    its pool waits for a free connection, or (``lean``) is a ``_LeanPool``, which raises instead."""
    kwargs["retry"] = AsyncRetry(NoBackoff(), 0)
    if settings.redis_sentinels and url is None:
        sentinel = redis.asyncio.sentinel.Sentinel(settings.sentinel_addresses(),
                                                   sentinel_kwargs=_sentinel_kwargs(settings))
        pool_class = _SentinelLeanPool if lean else _SentinelBlockingPool
        return sentinel.master_for(settings.redis_sentinel_master, connection_pool_class=pool_class,
                                   **kwargs, **_master_kwargs(settings))
    pool_class = _LeanPool if lean else redis.asyncio.BlockingConnectionPool
    return redis.asyncio.Redis(connection_pool=pool_class.from_url(url or settings.redis_url, **kwargs))
