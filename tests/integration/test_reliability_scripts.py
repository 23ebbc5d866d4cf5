"""The in-flight record, recovery and dead-lettering scripts against a real Redis (they use Lua's sha1hex,
cmsgpack and cjson, which fakeredis lacks)."""

import json
import logging

import msgpack
import pytest

from common.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    WorkItem,
    decode_item,
    decode_reply,
    encode_item,
    new_request_id,
)
from common.redis_factory import sync_client
from common.scripts import digest
from common.settings import WorkerSettings
from worker.heartbeat import Heartbeat
from worker.recovery import Recovery
from worker.redis_queue import RedisRequestQueue


@pytest.fixture
def env(redis_server, key_prefix):
    settings = WorkerSettings(redis_url=redis_server.url, key_prefix=key_prefix)
    client = sync_client(settings, longest_block_s=2)
    yield client, settings.keys()
    client.close()


def messages(texts, rid=None):
    rid = rid or new_request_id()
    return [encode_item(WorkItem(rid, i, t, 1e12, 0.0)) for i, t in enumerate(texts)], rid


def queue(client, keys, worker):
    return RedisRequestQueue(client, keys, reply_ttl_s=30, worker_id=worker)


def recovery(client, keys, max_deliveries=3):
    return Recovery(client, keys, reply_ttl_s=30, max_deliveries=max_deliveries)


def test_suspects_are_never_batched(env):
    client, keys = env
    (a, b, c, d), _ = messages(["a", "b", "c", "d"])
    client.rpush(keys.requests, a, b, c, d)
    client.hset(keys.deaths, digest(c), 1)  # c was in flight when a worker died
    q = queue(client, keys, "w1")
    assert q.pop(10, block_s=0) == [a, b]  # the window stops before the suspect
    assert q.pop(10, block_s=0) == [c]  # a suspect at the head runs alone
    assert q.pop(10, block_s=0) == [d]


def test_a_dead_workers_messages_go_back_to_the_head_in_order(env):
    client, keys = env
    held, _ = messages(["1", "2", "3"])
    waiting, _ = messages(["later"])
    client.rpush(keys.requests, *held, *waiting)
    dead = queue(client, keys, "dead-1")
    assert dead.pop(3, block_s=0) == held
    client.sadd(keys.workers, "dead-1")  # registered, heartbeat never written/expired
    reaped = recovery(client, keys).reap(lock_ttl_s=5)
    assert reaped == {"dead-1": (3, 0)}
    assert client.lrange(keys.requests, 0, -1) == held + waiting
    assert client.exists(keys.inflight("dead-1")) == 0 and client.sismember(keys.workers, "dead-1") == 0
    assert all(int(client.hget(keys.deaths, digest(m))) == 1 for m in held)


def test_live_workers_are_not_reaped_and_one_reaper_at_a_time(env, caplog):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    queue(client, keys, "alive").pop(1, block_s=0)
    Heartbeat(client, keys, "alive", interval_s=60, ttl_s=30, describe=lambda: {}).beat()
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}
    assert client.lrange(keys.inflight("alive"), 0, -1) == held
    client.set(keys.reaper_lock, "someone-else", px=5000)
    client.delete(keys.heartbeat("alive"))
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}  # lock held elsewhere
    client.delete(keys.reaper_lock)
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        assert recovery(client, keys).reap(lock_ttl_s=5) == {"alive": (1, 0)}
    assert client.exists(keys.reaper_lock) == 0  # released
    assert caplog.messages == ["worker alive is dead: 1 message(s) re-queued, 0 dead-lettered"]


def test_a_reaper_that_dies_mid_reap_holds_the_lock_only_for_its_ttl(env, monkeypatch):
    client, keys = env
    reaper = recovery(client, keys)
    monkeypatch.setattr(reaper._scripts, "release_lock", lambda key, token: 0)  # dies before releasing
    reaper.reap(lock_ttl_s=0.8)
    assert 0 < client.pttl(keys.reaper_lock) <= 800


def test_poison_message_is_dead_lettered_after_max_deliveries_and_its_client_told(env):
    client, keys = env
    (poison,), rid = messages(["kills every worker"])
    client.rpush(keys.requests, poison)
    for death in range(1, 4):
        worker = f"victim-{death}"
        assert queue(client, keys, worker).pop(8, block_s=0) == [poison]
        client.sadd(keys.workers, worker)
        requeued, dead = recovery(client, keys).reap(lock_ttl_s=5)[worker]
        assert (requeued, dead) == ((1, 0) if death < 3 else (0, 1))
    assert client.llen(keys.requests) == 0
    record = json.loads(client.lindex(keys.dead_letter, 0))
    assert record["request_id"] == rid and record["text"] == "kills every worker" and record["deaths"] == 3
    assert "victim-3" in record["reason"]
    reply = decode_reply(client.lindex(keys.reply(rid), 0))
    assert reply.error.code == ErrorCode.POISON and "3 workers died" in reply.error.message
    assert client.hlen(keys.deaths) == 0


def test_undecodable_poison_is_dead_lettered_readably(env):
    client, keys = env
    client.rpush(keys.inflight("gone"), b"\xc1\xc1 garbage")
    client.sadd(keys.workers, "gone")
    assert recovery(client, keys, max_deliveries=1).reap(lock_ttl_s=5) == {"gone": (0, 1)}
    record = json.loads(client.lindex(keys.dead_letter, 0))
    assert record["undecodable"] is True and record["bytes"] == 10


def test_release_requeues_without_counting_a_death(env, caplog):
    client, keys = env
    held, _ = messages(["a", "b"])
    client.rpush(keys.requests, *held)
    queue(client, keys, "me").pop(2, block_s=0)
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        assert recovery(client, keys).release("me") == 2
        assert recovery(client, keys).release("me") == 0  # nothing held: nothing said
    assert caplog.messages == ["gave 2 in-flight message(s) back to the queue"]  # the e2e tests look for it
    assert client.lrange(keys.requests, 0, -1) == held and client.hlen(keys.deaths) == 0


def dead_letter_once(client, keys, raw, worker="gone"):
    """``raw`` was held by a worker that died; with MAX_DELIVERIES=1 that death sets it aside."""
    client.rpush(keys.inflight(worker), raw)
    client.sadd(keys.workers, worker)
    assert recovery(client, keys, max_deliveries=1).reap(lock_ttl_s=5) == {worker: (0, 1)}


def test_poison_replies_follow_the_protocol_version(env, monkeypatch):
    import common.protocol

    client, keys = env
    monkeypatch.setattr(common.protocol, "PROTOCOL_VERSION", common.protocol.PROTOCOL_VERSION + 1)
    (poison,), rid = messages(["kills every worker"])
    dead_letter_once(client, keys, poison)
    reply = decode_reply(client.lindex(keys.reply(rid), 0))  # decodes only at the bumped version
    assert reply.error.code == ErrorCode.POISON and reply.index == 0


@pytest.mark.parametrize("request_id", [new_request_id(), new_request_id().upper(), new_request_id() + "\n",
                                        new_request_id()[:31], "g" * 32],
                         ids=["valid", "upper-case", "newline", "short", "not-hex"])
def test_the_recovery_script_reads_request_ids_as_the_protocol_does(env, request_id):
    client, keys = env
    raw = msgpack.packb({"v": PROTOCOL_VERSION, "request_id": request_id, "index": 2, "text": "x", "deadline": 1e12,
                         "enqueued_at": 0.0})
    try:
        readable = decode_item(raw).request_id
    except ProtocolError as exc:
        readable = exc.request_id
    dead_letter_once(client, keys, raw)
    record = json.loads(client.lindex(keys.dead_letter, 0))
    # Answered (and recorded with its id) exactly when Python could read the id; else recorded as undecodable.
    assert client.exists(keys.reply(request_id)) == (readable is not None)
    assert record.get("request_id") == readable and record.get("undecodable", False) == (readable is None)
