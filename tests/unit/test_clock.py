import asyncio
import logging

import pytest

from common.clock import RedisClock


def test_before_any_measurement_the_clock_is_the_hosts():
    assert RedisClock(local=lambda: 5.0)() == 5.0


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


def test_microseconds_are_millionths_exactly():
    clock = RedisClock(local=lambda: 0.0)
    assert clock.sync(lambda: (12, 500_000)) == 12.5


@pytest.mark.parametrize("redis_seconds,said", [(1011, "behind"), (989, "ahead of")])
def test_the_warning_says_which_way_the_host_is_off(caplog, redis_seconds, said):
    with caplog.at_level(logging.WARNING, logger="common.clock"):
        RedisClock(local=lambda: 1000.0).sync(lambda: (redis_seconds, 0))
    assert f"11.0 s {said} the Redis server's" in caplog.records[0].message


def test_warnings_start_above_the_threshold_and_repeat_only_when_the_offset_moves_more_than_half_of_it(caplog):
    clock = RedisClock(local=lambda: 1000.0)
    with caplog.at_level(logging.WARNING, logger="common.clock"):
        clock.sync(lambda: (1001, 0))  # exactly the threshold: silent
        assert caplog.records == []
        clock.sync(lambda: (1001, 1))  # just above it, and 1 us from the last offset (1 s): silent
        assert caplog.records == []
        clock.offset_s = 0.0
        clock.sync(lambda: (1001, 1))  # above it, moved from 0: said
        clock.sync(lambda: (1001, 500_001))  # moved by exactly half the threshold: silent
        clock.sync(lambda: (1002, 200))  # moved by more than half of it: said again
    assert len(caplog.records) == 2


def test_the_clock_is_unchecked_until_a_measurement_succeeds():
    """``synced`` is what the API waits on before stamping a deadline (api/gateway.py)."""
    clock = RedisClock(local=lambda: 1000.0)

    def unreachable():
        raise ConnectionError("Redis away")

    with pytest.raises(ConnectionError):
        clock.sync(unreachable)
    assert not clock.synced and clock() == 1000.0
    clock.sync(lambda: (1030, 0))
    assert clock.synced and clock() == 1030.0
