"""The in-flight record, recovery and dead-lettering scripts against a real Redis (they use Lua's sha1hex,
cmsgpack and cjson, which fakeredis lacks)."""

import json
import logging

import msgpack
import pytest

from common.protocol import PROTOCOL_VERSION, ErrorCode, ProtocolError, decode_item, decode_reply, new_request_id
from common.scripts import RecoveryMode, digest
from tests.integration.work import messages, pop, recovery
from tests.integration.work import worker_queue as queue


def test_suspects_are_never_batched(env):
    client, keys = env
    (a, b, c, d), _ = messages(["a", "b", "c", "d"])
    client.rpush(keys.requests, a, b, c, d)
    client.hset(keys.deaths, digest(c), 2)  # c was in flight when two workers died
    q = queue(client, keys, "w1")
    assert pop(q, 10) == [a, b]  # the window stops before the suspect
    assert pop(q, 10, suspect_allowed=False) == []  # filling a window: a suspect never joins it
    assert pop(q, 10) == [c]  # a suspect at the head runs alone, in a window of its own
    assert pop(q, 10) == [d]


def test_a_first_death_does_not_make_a_suspect_its_window_runs_again_batched(env):
    """One crash (a kill, an OOM) must not turn a full window into single-text passes at the head of the queue:
    the window of a worker that died once runs again as a window."""
    client, keys = env
    window, _ = messages([f"t{i}" for i in range(64)])
    client.rpush(keys.requests, *window)
    assert pop(queue(client, keys, "victim"), 64) == window
    assert recovery(client, keys).reap(lock_ttl_s=5)["victim"] == (64, 0)  # no connection of "victim": gone
    assert all(int(n) == 1 for n in client.hvals(keys.deaths))
    assert pop(queue(client, keys, "w2"), 64) == window  # all of it, at once


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


def test_poison_message_is_dead_lettered_after_max_deliveries_and_its_client_told(env):
    client, keys = env
    (poison,), rid = messages(["kills every worker"])
    client.rpush(keys.requests, poison)
    for death in range(1, 4):
        worker = f"victim-{death}"
        assert pop(queue(client, keys, worker), 8) == [poison]
        # DEAD_LETTER_KEEP_TEXT: an operator debugging what crashed the workers turns it on.
        requeued, dead = recovery(client, keys, keep_text=True).reap(lock_ttl_s=5)[worker]
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
    assert recovery(client, keys, keep_text=True).recover("gone", RecoveryMode.DIED) == (0, 1)
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
