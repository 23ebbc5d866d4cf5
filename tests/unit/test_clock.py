import asyncio
import logging

import pytest

from common.clock import RedisClock


def test_the_clock_adds_the_measured_offset_to_redis_within_half_a_round_trip():
    ticks = iter([100.0, 100.2])  # before and after the TIME command: a 0.2 s round trip
    clock = RedisClock(local=lambda: next(ticks))
    offset = clock.sync(lambda: (130, 100_000))  # Redis says 130.1 at the midpoint, 100.1
    assert offset == pytest.approx(30.0)
    clock._local = lambda: 200.0
    assert clock() == pytest.approx(230.0)


def test_a_large_offset_is_logged_once_not_at_every_measurement(caplog):
    clock = RedisClock(local=lambda: 1000.0)

    async def redis_time():
        return (990, 0)

    with caplog.at_level(logging.WARNING, logger="common.clock"):
        asyncio.run(clock.sync_async(redis_time))
        asyncio.run(clock.sync_async(redis_time))
    assert clock.offset_s == -10.0
    assert [r.message for r in caplog.records] == [
        "this host's clock is 10.0 s ahead of the Redis server's: deadlines are measured on Redis's clock; fix the "
        "host's time sync"]


def test_a_small_offset_is_silent(caplog):
    with caplog.at_level(logging.WARNING, logger="common.clock"):
        RedisClock(local=lambda: 1000.0).sync(lambda: (1000, 300_000))
    assert caplog.records == []
