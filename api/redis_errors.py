"""Redis failures on the API's side: every one is a 503 to the client, never a 500 or a hang."""

from __future__ import annotations

import logging
from types import TracebackType

import redis
import redis.asyncio

from api.errors import ErrorKind, ServiceError

log = logging.getLogger(__name__)


class UnavailableOnRedisError:
    """``async with``: a Redis failure inside the block becomes a 503 ``ServiceError``. A broken connection usually
    means the server went away (or restarted, empty): every idle pooled connection is dropped too, so that requests
    after it returns get fresh ones instead of failing one dead socket at a time. (Commands are never retried: see
    common/redis_factory.py.) A plain class, not a generator-based context manager: it wraps every Redis call
    of the request path, and costs a fraction of one."""

    __slots__ = ("_clients",)

    def __init__(self, *clients: redis.asyncio.Redis) -> None:
        """``clients``: those of the same Redis whose idle connections a broken one drops (each pool once)."""
        self._clients = tuple({id(client.connection_pool): client for client in clients}.values())

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        _tb: TracebackType | None) -> None:
        if not isinstance(exc, redis.RedisError):
            return  # no error, or not ours to map: it propagates unchanged
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            for client in self._clients:
                try:
                    await client.connection_pool.disconnect(inuse_connections=False)
                except Exception:  # noqa: BLE001 - best effort; the 503 is what matters
                    log.debug("could not reset the connection pool", exc_info=True)
        log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
        raise ServiceError(ErrorKind.UNAVAILABLE, "the request queue is unavailable; retry later",
                           retry_after_s=1) from None
