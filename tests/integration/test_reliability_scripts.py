"""The in-flight record, recovery and dead-lettering scripts against a real Redis (they use Lua's sha1hex,
cmsgpack and cjson, which fakeredis lacks), and the reaper's verdicts from real connections."""

import json
import logging

import msgpack
import pytest
import redis

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
from common.scripts import DeadLetterPolicy, RecoveryMode, digest
from common.settings import WorkerSettings
from tests.helpers import wait_until
from worker.heartbeat import Heartbeat
from worker.recovery import Recovery
from worker.redis_queue import RedisRequestQueue
from worker.window import Outbox


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
    return RedisRequestQueue(client, keys, reply_ttl_s=30, worker_id=worker, incarnation=f"{worker}-i")


def pop(q, n, lease_s=30.0, **kwargs):
    return q.pop(n, block_s=0, lease_s=lease_s, **kwargs).messages


def recovery(client, keys, max_deliveries=3, keep_text=True, max_records=1000, ttl_s=3600):
    # keep_text: an operator debugging what crashed the workers turns it on (DEAD_LETTER_KEEP_TEXT).
    policy = DeadLetterPolicy(max_deliveries, max_records, ttl_s, keep_text)
    return Recovery(client, keys, reply_ttl_s=30, dead_letter=policy)


@pytest.fixture
def connect(redis_server):
    """Open a connection named as ``worker``'s process names its own: to Redis, that process is there."""
    opened = []

    def open_for(keys, worker, incarnation=None):
        client = redis.Redis.from_url(redis_server.url, client_name=keys.connection_name(worker, incarnation or
                                                                                         f"{worker}-i"))
        client.ping()
        opened.append(client)
        return client

    yield open_for
    for client in opened:
        client.close()


def test_suspects_are_never_batched(env):
    client, keys = env
    (a, b, c, d), _ = messages(["a", "b", "c", "d"])
    client.rpush(keys.requests, a, b, c, d)
    client.hset(keys.deaths, digest(c), 1)  # c was in flight when a worker died
    q = queue(client, keys, "w1")
    assert pop(q, 10) == [a, b]  # the window stops before the suspect
    assert pop(q, 10, suspect_allowed=False) == []  # filling a window: a suspect never joins it
    assert pop(q, 10) == [c]  # a suspect at the head runs alone, in a window of its own
    assert pop(q, 10) == [d]


def test_texts_of_cancelled_requests_are_skipped_and_counted(env):
    client, keys = env
    cancelled, kept = messages(["a", "b"])[0], messages(["c"])[0]
    cancelled_id = decode_item(cancelled[0]).request_id
    client.rpush(keys.requests, *cancelled, b"\xc1 garbage", *kept)
    client.zadd(keys.cancelled, {cancelled_id: 2e9, "long-past": 1.0})
    popped = queue(client, keys, "w1").pop(8, block_s=0, lease_s=5)
    assert popped.messages == [b"\xc1 garbage", *kept] and popped.cancelled == 2  # garbage is the worker's to judge
    assert client.lrange(keys.inflight("w1"), 0, -1) == popped.messages
    assert client.hget(keys.stats, "cancelled") is None  # counted by the worker's next publish, once
    assert client.zrange(keys.cancelled, 0, -1) == [cancelled_id.encode()]  # entries past their deadline dropped


def test_a_gone_workers_messages_go_back_to_the_head_in_order(env):
    client, keys = env
    held, _ = messages(["1", "2", "3"])
    waiting, _ = messages(["later"])
    client.rpush(keys.requests, *held, *waiting)
    assert pop(queue(client, keys, "dead-1"), 3) == held  # registered by its pop; no connection of its name
    Heartbeat(client, keys, "dead-1", "dead-1-i", interval_s=60, ttl_s=30, describe=dict).beat()  # still beating
    reaped = recovery(client, keys).reap(lock_ttl_s=5)
    assert reaped == {"dead-1": (3, 0)}
    assert client.lrange(keys.requests, 0, -1) == held + waiting
    assert client.exists(keys.inflight("dead-1"), keys.heartbeat("dead-1")) == 0  # withdrawn: /readyz at once
    assert client.hexists(keys.workers, "dead-1") == 0
    assert all(int(client.hget(keys.deaths, digest(m))) == 1 for m in held)
    assert 0 < client.ttl(keys.deaths) <= 7200  # death counts cannot outlive the longest deadline by much


def test_connected_workers_within_their_lease_are_not_reaped_and_one_reaper_at_a_time(env, connect, caplog):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    connect(keys, "alive")
    pop(queue(client, keys, "alive"), 1, lease_s=30)
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}
    assert client.lrange(keys.inflight("alive"), 0, -1) == held
    client.set(keys.reaper_lock, "someone-else", px=5000)
    client.delete(keys.lease("alive"))
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}  # lock held elsewhere
    client.delete(keys.reaper_lock)
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        assert recovery(client, keys).reap(lock_ttl_s=5) == {"alive": (1, 0)}
    assert client.exists(keys.reaper_lock) == 0  # released
    assert caplog.messages == ["worker alive stalled holding 1 message(s) past its lease: 1 re-queued, "
                               "0 dead-lettered"]
    assert client.hget(keys.workers, "alive") == b"alive-i"  # stalled, not gone: it stays registered
    assert int(client.hget(keys.deaths, digest(held[0]))) == 1  # a hang is a strike against its message


def test_a_stalled_worker_that_renews_its_lease_in_time_keeps_its_window(env, connect):
    client, keys = env
    held, _ = messages(["x", "y"])
    client.rpush(keys.requests, *held)
    connect(keys, "slow")
    q = queue(client, keys, "slow")
    pop(q, 2, lease_s=0.05)
    wait_until(lambda: not client.exists(keys.lease("slow")), 2, "the lease to run out")
    # The reaper read the state, then the worker published (its lease is back) before the recovery ran.
    q.publish(Outbox(done=held[:1], lease_s=30))
    assert recovery(client, keys).recover("slow", RecoveryMode.STALLED, "slow-i") == (0, 0)
    assert client.lrange(keys.inflight("slow"), 0, -1) == held[1:]


def test_a_worker_is_gone_when_its_incarnation_has_no_connection_even_if_another_one_of_its_id_has(env, connect):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "box"), 1)  # incarnation box-i holds work
    connect(keys, "box", "an-old-incarnation")  # a leftover connection of another incarnation proves nothing
    assert recovery(client, keys).reap(lock_ttl_s=5) == {"box": (1, 0)}


def test_recovery_for_an_incarnation_leaves_a_newer_one_alone(env):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "box"), 1)
    client.hset(keys.workers, "box", "newer")  # restarted under the same id (it recovered the old window itself)
    assert recovery(client, keys).recover("box", RecoveryMode.DIED, "box-i") == (0, 0)
    assert recovery(client, keys).release("box", "box-i") == 0
    assert client.hget(keys.workers, "box") == b"newer" and client.llen(keys.inflight("box")) == 1


def test_registered_elsewhere_names_a_live_other_incarnation_only(env, connect):
    client, keys = env
    reaper = recovery(client, keys)
    assert reaper.registered_elsewhere("box", "mine") is None  # nobody
    client.hset(keys.workers, "box", "theirs")
    assert reaper.registered_elsewhere("box", "mine") is None  # registered, but its process is gone
    connect(keys, "box", "theirs")
    assert reaper.registered_elsewhere("box", "mine") == "theirs"
    assert reaper.registered_elsewhere("box", "theirs") is None


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
        assert pop(queue(client, keys, worker), 8) == [poison]
        requeued, dead = recovery(client, keys).reap(lock_ttl_s=5)[worker]
        assert (requeued, dead) == ((1, 0) if death < 3 else (0, 1))
    assert client.llen(keys.requests) == 0
    record = json.loads(client.lindex(keys.dead_letter, 0))
    assert record["request_id"] == rid and record["text"] == "kills every worker" and record["deaths"] == 3
    assert "victim-3" in record["reason"]
    reply = decode_reply(client.lindex(keys.reply(rid), 0))
    assert reply.error.code == ErrorCode.POISON and "3 workers died" in reply.error.message
    assert client.hlen(keys.deaths) == 0


def test_dead_letter_records_hold_no_user_text_by_default_are_capped_and_expire(env):
    client, keys = env
    reaper = recovery(client, keys, max_deliveries=1, keep_text=False, max_records=2, ttl_s=600)
    rids = []
    for i in range(3):
        (raw,), rid = messages([f"private text {i}"])
        rids.append(rid)
        client.rpush(keys.inflight("gone"), raw)
        assert reaper.recover("gone", RecoveryMode.DIED) == (0, 1)
    records = [json.loads(r) for r in client.lrange(keys.dead_letter, 0, -1)]
    assert [r["request_id"] for r in records] == [rids[2], rids[1]]  # newest first, capped at 2
    assert all("text" not in r and len(r["sha1"]) == 40 and r["bytes"] > 0 for r in records)
    assert 0 < client.ttl(keys.dead_letter) <= 600


def test_undecodable_poison_is_dead_lettered_readably(env):
    client, keys = env
    client.rpush(keys.inflight("gone"), b"\xc1\xc1 garbage")
    client.hset(keys.workers, "gone", "gone-i")
    assert recovery(client, keys, max_deliveries=1).reap(lock_ttl_s=5) == {"gone": (0, 1)}
    record = json.loads(client.lindex(keys.dead_letter, 0))
    assert record["undecodable"] is True and record["bytes"] == 10


@pytest.mark.parametrize("text", [{"a": 1}, [1, 2], {1: "a", 100: "b"}, "\udcff".encode("utf-8", "surrogatepass")],
                         ids=["map", "array", "sparse-array", "bad-utf8"])
def test_a_message_the_script_cannot_record_as_is_is_still_recorded_once(env, text):
    """Whatever a message holds, recovery writes nothing before it knows it can finish: a script that failed
    halfway would keep its first writes (and a retried recovery would count the same death twice)."""
    client, keys = env
    rid = new_request_id()
    raw = msgpack.packb({"v": PROTOCOL_VERSION, "request_id": rid, "index": 0, "text": text, "deadline": 1e12,
                         "enqueued_at": 0.0, "extra": [float("nan")]}, use_bin_type=False)  # bytes as a raw string
    client.rpush(keys.inflight("gone"), raw)
    client.hset(keys.deaths, digest(raw), 2)
    assert recovery(client, keys).recover("gone", RecoveryMode.DIED) == (0, 1)
    record = json.loads(client.lindex(keys.dead_letter, 0))
    assert record["request_id"] == rid and record["deaths"] == 3 and client.llen(keys.dead_letter) == 1
    assert client.hlen(keys.deaths) == 0 and client.llen(keys.reply(rid)) == 1


def test_release_requeues_without_counting_a_death(env, caplog):
    client, keys = env
    held, _ = messages(["a", "b"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "me"), 2)
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        assert recovery(client, keys).release("me", "me-i") == 2
        assert recovery(client, keys).release("me", "me-i") == 0  # nothing held: nothing said
    assert caplog.messages == ["gave 2 in-flight message(s) back to the queue"]  # the e2e tests look for it
    assert client.lrange(keys.requests, 0, -1) == held and client.hlen(keys.deaths) == 0


def dead_letter_once(client, keys, raw, worker="gone"):
    """``raw`` was held by a worker that died; with MAX_DELIVERIES=1 that death sets it aside."""
    client.rpush(keys.inflight(worker), raw)
    client.hset(keys.workers, worker, f"{worker}-i")
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


def test_without_client_list_a_killed_workers_work_comes_back_by_its_lease(env, monkeypatch, caplog):
    """Some Redis deployments refuse CLIENT LIST (ACLs, managed services): said once, loudly, and the lease still
    brings a dead worker's work back; a worker is gone when its heartbeat expired."""
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "killed"), 1, lease_s=30)
    Heartbeat(client, keys, "killed", "killed-i", interval_s=60, ttl_s=30, describe=dict).beat()
    reaper = recovery(client, keys)

    def refused(**_kwargs):
        raise redis.ResponseError("NOPERM this user has no permissions to run the 'client|list' command")

    monkeypatch.setattr(reaper._redis, "client_list", refused)
    with caplog.at_level(logging.ERROR, logger="worker.recovery"):
        assert reaper.reap(lock_ttl_s=5) == {}  # beating, within its lease: nothing to do yet
        client.delete(keys.lease("killed"))  # its lease runs out (nobody renews it)
        assert reaper.reap(lock_ttl_s=5) == {"killed": (1, 0)}  # stalled: taken back
        client.delete(keys.heartbeat("killed"))  # and once its heartbeat expires it is forgotten
        assert reaper.reap(lock_ttl_s=5) == {"killed": (0, 0)} and not client.hexists(keys.workers, "killed")
    assert [r.message.split(" (")[0] for r in caplog.records] == ["Redis refuses CLIENT LIST"]
