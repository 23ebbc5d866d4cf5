"""Redis failures on the request path become one documented 503, and a broken connection resets the pool."""

import asyncio
import logging

import pytest
import redis

from api.errors import ErrorKind, ServiceError
from api.redis_errors import UnavailableOnRedisError


class Pool:
    def __init__(self, fails: bool = False) -> None:
        self.disconnects: list[bool] = []
        self.fails = fails

    async def disconnect(self, inuse_connections: bool = True) -> None:
        self.disconnects.append(inuse_connections)
        if self.fails:
            raise OSError("socket already closed")


class Client:
    def __init__(self, pool: Pool) -> None:
        self.connection_pool = pool


def raise_inside(error: BaseException, pool: Pool) -> ServiceError | BaseException:
    async def scenario():
        async with UnavailableOnRedisError(Client(pool)):
            raise error

    with pytest.raises(BaseException) as info:
        asyncio.run(scenario())
    return info.value


@pytest.mark.parametrize("error", [redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout")])
def test_a_broken_connection_is_a_503_and_drops_the_idle_connections(error, caplog):
    pool = Pool()
    with caplog.at_level(logging.WARNING, logger="api.redis_errors"):
        raised = raise_inside(error, pool)
    assert isinstance(raised, ServiceError) and raised.kind == ErrorKind.UNAVAILABLE and raised.retry_after_s == 1
    assert raised.message == "the request queue is unavailable; retry later"  # nothing of the server's address
    assert raised.__cause__ is None and raised.__suppress_context__
    assert pool.disconnects == [False]  # idle ones only: other requests' commands in flight are left alone
    assert caplog.messages == [f"Redis unavailable: {type(error).__name__}: {error}"]


def test_a_failing_pool_reset_still_answers_503(caplog):
    pool = Pool(fails=True)
    with caplog.at_level(logging.DEBUG, logger="api.redis_errors"):
        raised = raise_inside(redis.ConnectionError("gone"), pool)
    assert isinstance(raised, ServiceError) and raised.kind == ErrorKind.UNAVAILABLE
    reset = next(r for r in caplog.records if r.levelno == logging.DEBUG)
    assert reset.message == "could not reset the connection pool" and reset.exc_info[1].args == ("socket already closed",)


def test_other_redis_errors_are_503_without_touching_the_pool():
    pool = Pool()
    raised = raise_inside(redis.ResponseError("OOM command not allowed"), pool)
    assert isinstance(raised, ServiceError) and raised.kind == ErrorKind.UNAVAILABLE and pool.disconnects == []


def test_errors_that_are_not_redis_errors_pass_through():
    error = ValueError("a bug")
    assert raise_inside(error, Pool()) is error
