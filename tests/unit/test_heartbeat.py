"""The heartbeat thread against fakeredis: it beats on whatever its tasks raise."""

import logging
import threading

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

    beat = Heartbeat(client, KEYS, "w1", "inc-1", interval_s=0.02, ttl_s=5, describe=describe, after_beat=after_beat)
    beat.start()
    try:
        wait_until(lambda: calls["after_beat"] >= 5, 5, "beats after the failures")
        # The beats that could not describe the worker were still written: it stayed live throughout.
        assert client.exists(KEYS.heartbeat("w1")) and client.hget(KEYS.workers, "w1") == b"inc-1"
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

    Heartbeat(client, KEYS, "w2", "inc-2", interval_s=1, ttl_s=5, describe=describe).beat()
    assert client.hexists(KEYS.heartbeat("w2"), "last_beat") and 0 < client.ttl(KEYS.heartbeat("w2")) <= 5


def test_what_failed_is_logged_and_redis_errors_without_a_traceback(caplog):
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)

    def describe():
        raise KeyError("no such counter")

    def after_beat():
        raise RuntimeError("the reaper broke")

    beat = Heartbeat(client, KEYS, "w3", "inc-3", interval_s=0.02, ttl_s=5, describe=describe, after_beat=after_beat)
    with caplog.at_level(logging.WARNING, logger="worker.heartbeat"):
        beat.start()
        thread, = [t for t in threading.enumerate() if t.name == "heartbeat"]
        assert thread.daemon  # never keeps a stopping worker alive
        server.connected = False  # Redis goes away
        wait_until(lambda: any(r.message.startswith("heartbeat failed: ") for r in caplog.records), 5, "a failed beat")
        beat.stop()
    assert not thread.is_alive()
    messages = {r.message: r for r in caplog.records}
    assert messages["could not describe the worker; beating without a description"].exc_info
    assert messages["after-beat task failed; the heartbeat goes on"].exc_info[1].args == ("the reaper broke",)
    failed_beat = next(r for r in caplog.records if r.message.startswith("heartbeat failed: "))
    assert failed_beat.levelno == logging.WARNING and not failed_beat.exc_info  # expected: Redis comes back
    assert "onnection" in failed_beat.message  # says why
    assert any(m.startswith("could not withdraw heartbeat (it will expire): ") and "onnection" in m for m in messages)


def test_a_beat_finds_its_id_claimed_by_another_incarnation_and_says_so_without_overwriting_it():
    client = fakeredis.FakeRedis()
    Heartbeat(client, KEYS, "box", "first", interval_s=1, ttl_s=5, describe=dict).beat()
    taken = []
    second = Heartbeat(client, KEYS, "box", "second", interval_s=1, ttl_s=5, describe=dict, on_id_taken=taken.append)
    second.beat()
    assert taken == ["first"]
    assert client.hget(KEYS.workers, "box") == b"first"
    assert client.hget(KEYS.heartbeat("box"), "incarnation") == b"first"  # its hash untouched
    second.stop()  # withdrawing must not unregister the other process either
    assert client.hget(KEYS.workers, "box") == b"first" and client.exists(KEYS.heartbeat("box"))


def test_every_beat_puts_the_model_version_back_in_the_deployments_models():
    """The API routes by the models set: a Redis that lost its data (or an operator's SREM of a version still
    served) is set right by the next beat, not only at the worker's start."""
    client = fakeredis.FakeRedis()
    keys = Keys("unit").served("alpha", 3)
    beat = Heartbeat(client, keys, "w3", "inc-3", interval_s=1, ttl_s=5, describe=dict)
    beat.beat()
    assert client.smembers(keys.models) == {b"alpha/3"} and keys.models == "unit:models"
    client.flushall()
    beat.beat()
    assert client.smembers(keys.models) == {b"alpha/3"} and client.hget(keys.workers, "w3") == b"inc-3"
    Heartbeat(client, KEYS, "w4", "inc-4", interval_s=1, ttl_s=5, describe=dict).beat()  # no model's keys: no member
    assert client.smembers(keys.models) == {b"alpha/3"}
