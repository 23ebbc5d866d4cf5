"""Redis failures on the request path become one documented 503, a broken connection resets the pool, and an outage
is logged once per interval, not once per failure."""

import asyncio
import io
import logging

import fakeredis
import pytest
import redis

import api.app
import api.models
from api.errors import ErrorKind, ServiceError
from api.redis_errors import UnavailableOnRedisError
from common.log_repeats import RepeatLimiter
from tests.unit.api_harness import running, settings
from tests.unit.test_log_repeats import FakeClock


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


def test_an_api_with_redis_down_writes_one_warning_then_one_line_per_interval_with_a_count(monkeypatch):
    """Requests, probes and the background tasks (the models' refresh, the clock's retries) all fail while Redis
    is away, many times a second: the log gets one warning, then one per interval saying how many were held back, and
    nothing else at WARNING."""
    monkeypatch.setattr(api.models, "REFRESH_INTERVAL_S", 0.01)  # many more tries than a real second holds
    monkeypatch.setattr(api.app, "CLOCK_FIRST_SYNC_RETRY_S", 0.01)
    clock, out = FakeClock(), io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.WARNING)
    handler.addFilter(RepeatLimiter(10.0, clock=clock))  # what setup_logging puts on every process's handler
    server = fakeredis.FakeServer()
    server.connected = False

    async def scenario():
        statuses = []
        async with running(settings(), worker=False, server=server) as (http, _):
            for round_ in range(2):
                clock.now += 10.0 * round_  # the second round: an interval later
                for _ in range(10):
                    statuses.append((await http.post("/predict", json={"text": "good"})).status_code)
                    statuses.append((await http.get("/readyz")).status_code)
                    await asyncio.sleep(0.01)
        return statuses

    root = logging.getLogger()
    root.addHandler(handler)
    try:
        statuses = asyncio.run(scenario())
    finally:
        root.removeHandler(handler)
    assert set(statuses) == {503}
    first, summary = out.getvalue().splitlines()
    assert first == "Redis unavailable: ConnectionError: FakeRedis is emulating a connection error."
    held_back = int(summary.rsplit("(and ", 1)[1].split(" ")[0])
    # At least every probe of the first round but the one logged: each reads Redis (requests for a model this process
    # has not seen read it at most once per MISS_REFRESH_S, api/models.py).
    assert summary.startswith(first) and summary.endswith("more like it in 10 s)") and held_back >= 9
