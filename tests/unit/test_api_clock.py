"""An API process stamps deadlines on Redis's clock (common/clock.py) and never on its own unchecked one: started
before Redis, it reads Redis's clock within a second of Redis's return, and until it has, /readyz is 503 and no
request is queued (503 with Retry-After), so that a host whose clock is off cannot queue texts with deadlines the
workers read as long past (504s) or far away."""

import asyncio
import logging
import time

import fakeredis
import pytest
import redis

import api.app
from common.clock import RedisClock
from tests.unit.api_harness import fake_worker, run, running, settings

SKEW_S = 30.0  # this host's clock runs behind Redis's by this much


@pytest.fixture
def host_behind(monkeypatch):
    """The API process's host clock 30 s behind Redis's (fakeredis answers TIME with the real time)."""
    monkeypatch.setattr(api.app, "RedisClock", lambda: RedisClock(local=lambda: time.time() - SKEW_S))


class TimeFails(fakeredis.FakeAsyncRedis):
    """Redis answers everything but TIME (while ``failing``): the one state in which an API process could reach
    Redis and its workers and still not know Redis's clock."""

    failing = True

    async def time(self):
        if self.failing:
            raise redis.ConnectionError("TIME failed")
        return await super().time()


async def predict_and_ready(http) -> tuple[int, int]:
    return (await http.get("/readyz")).status_code, (await http.post("/predict", json={"text": "good"})).status_code


def on_redis_clock(item, s) -> bool:
    """The item was stamped on Redis's clock (the real time here), not on the host's 30 s behind."""
    return abs(item.enqueued_at - time.time()) < 2 and item.deadline == pytest.approx(
        item.enqueued_at + s.request_timeout_s)


def test_an_api_started_before_redis_reads_its_clock_within_a_second_of_its_return(host_behind, caplog):
    s = settings()
    server = fakeredis.FakeServer()
    server.connected = False  # Redis away when the API starts

    async def scenario():
        seen, stop = [], asyncio.Event()
        async with running(s, worker=False, server=server) as (http, _):
            await asyncio.sleep(0.2)  # the start-up sync has failed
            down = await predict_and_ready(http)
            server.connected = True
            back = time.monotonic()
            # No request: the API's own retry reads the clock (and says how far off this host's is).
            while "clock is 30.0 s behind" not in caplog.text and time.monotonic() - back < 5:
                await asyncio.sleep(0.02)
            read_after_s = time.monotonic() - back
            worker = asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop, seen=seen))
            try:
                while (await http.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.02)
                answered = (await http.post("/predict", json={"text": "good"})).status_code
            finally:
                stop.set()
                await worker
        return down, read_after_s, answered, seen

    with caplog.at_level(logging.WARNING, logger="common.clock"):
        down, read_after_s, answered, seen = run(scenario())
    assert down == (503, 503)
    assert read_after_s < 1.5, f"Redis's clock read {read_after_s:.2f} s after Redis came back"  # retried every 0.5 s
    assert answered == 200 and len(seen) == 1 and on_redis_clock(seen[0], s)


def test_until_redis_clock_is_read_the_api_is_not_ready_and_queues_nothing(host_behind):
    s = settings()
    server = fakeredis.FakeServer()
    client = TimeFails(server=server)

    async def scenario():
        seen = []
        async with running(s, server=server, client=client, seen=seen) as (http, _):
            await asyncio.sleep(0.1)  # the fake worker's heartbeat is in: Redis and a live worker, no clock
            ready = await http.get("/readyz")
            refused = await http.post("/predict", json={"text": "good"})
            queued_meanwhile = len(seen)
            client.failing = False
            return ready, refused, queued_meanwhile, await predict_and_ready(http), seen

    ready, refused, queued_meanwhile, after, seen = run(scenario())
    assert ready.status_code == 503 and "Redis's clock" in ready.json()["error"]["message"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "Redis's clock" in refused.json()["error"]["message"]
    assert queued_meanwhile == 0  # nothing stamped with the host's clock
    assert after == (200, 200) and len(seen) == 1 and on_redis_clock(seen[0], s)
