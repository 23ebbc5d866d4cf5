"""The heartbeat thread against fakeredis: it beats on whatever its tasks raise."""

import fakeredis

from common.keys import Keys
from tests.helpers import wait_until
from worker.heartbeat import Heartbeat

KEYS = Keys("unit")


def test_the_heartbeat_survives_any_exception_and_keeps_beating():
    client = fakeredis.FakeRedis()
    calls = {"describe": 0, "after_beat": 0}

    def describe():
        calls["describe"] += 1
        if calls["describe"] in (2, 3):  # a counter that cannot be read, say
            raise ValueError("describe broke")
        return {"model": "tiny"}

    def after_beat():
        calls["after_beat"] += 1
        raise RuntimeError("the reaper broke")  # not a Redis error

    beat = Heartbeat(client, KEYS, "w1", interval_s=0.02, ttl_s=5, describe=describe, after_beat=after_beat)
    beat.start()
    try:
        wait_until(lambda: calls["after_beat"] >= 5, 5, "beats after the failures")
        # The beats that could not describe the worker were still written: it stayed live throughout.
        assert client.exists(KEYS.heartbeat("w1")) and client.sismember(KEYS.workers, "w1")
        first = float(client.hget(KEYS.heartbeat("w1"), "last_beat"))
        wait_until(lambda: float(client.hget(KEYS.heartbeat("w1"), "last_beat")) > first, 5, "a later beat")
        assert client.hget(KEYS.heartbeat("w1"), "model") == b"tiny"
    finally:
        beat.stop()
    assert not client.exists(KEYS.heartbeat("w1"))


def test_a_beat_whose_description_fails_is_still_written():
    client = fakeredis.FakeRedis()

    def describe():
        raise KeyError("no such counter")

    Heartbeat(client, KEYS, "w2", interval_s=1, ttl_s=5, describe=describe).beat()
    assert client.hexists(KEYS.heartbeat("w2"), "last_beat") and 0 < client.ttl(KEYS.heartbeat("w2")) <= 5
