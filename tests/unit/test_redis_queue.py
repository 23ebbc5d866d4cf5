import fakeredis
import pytest

from common.counters import WorkerCounts
from common.keys import Keys
from common.protocol import Prediction, Reply, WorkError, decode_reply, new_request_id
from common.scripts import digest
from tests.unit.fakes import items
from worker.redis_queue import RedisRequestQueue, WorkerIdTaken
from worker.window import Outbox

KEYS = Keys("unit")


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


def make(client, worker="w1", incarnation="i1"):
    return RedisRequestQueue(client, KEYS, reply_ttl_s=30, worker_id=worker, incarnation=incarnation,
                             suspect_deaths=2)


def pop(queue, n, **kwargs):
    return queue.pop(n, block_s=0, lease_s=kwargs.pop("lease_s", 5.0), **kwargs).messages


def test_pop_takes_from_the_head_in_order_and_records_what_it_holds(client):
    messages = items([f"t{i}" for i in range(5)])
    client.rpush(KEYS.requests, *messages)
    queue = make(client)
    assert pop(queue, 3) == messages[:3]
    assert client.lrange(KEYS.requests, 0, -1) == messages[3:]
    assert client.lrange(KEYS.inflight("w1"), 0, -1) == messages[:3]
    # Holding work registers the worker and takes a lease: the reaper can always find it.
    assert client.hget(KEYS.workers, "w1") == b"i1" and client.get(KEYS.lease("w1")) == b"i1"
    assert 4000 < client.pttl(KEYS.lease("w1")) <= 5000
    assert pop(queue, 3) == messages[3:]
    assert client.exists(KEYS.requests) == 0


def test_pop_on_empty_queue_without_blocking_returns_nothing(client):
    assert pop(make(client), 4) == []
    assert client.exists(KEYS.inflight("w1")) == 0 and client.exists(KEYS.lease("w1")) == 0


def test_publish_delivers_replies_releases_held_messages_and_counts(client):
    a, b = new_request_id(), new_request_id()
    held = items(["x", "y"])
    client.rpush(KEYS.requests, *held)
    queue = make(client)
    pop(queue, 2, lease_s=1.0)
    client.hset(KEYS.deaths, digest(held[0]), 1)
    replies = [Reply(a, 0, predictions=[Prediction("POSITIVE", 0.9)]),
               Reply(b, 0, predictions=[Prediction("NEGATIVE", 0.8)]),
               Reply(a, 1, error=WorkError("malformed_message", "x"))]
    counts = WorkerCounts(batches=1, texts=2, tokens=10, padded_tokens=12, expired=1, malformed=1)
    assert queue.publish(Outbox(replies, done=held, counts=counts, lease_s=7.0)) is True
    got_a = [decode_reply(r) for r in client.lrange(KEYS.reply(a), 0, -1)]
    assert [r.index for r in got_a] == [0, 1] and got_a[1].error is not None
    assert len(client.lrange(KEYS.reply(b), 0, -1)) == 1
    assert 0 < client.ttl(KEYS.reply(a)) <= 30 and 0 < client.ttl(KEYS.reply(b)) <= 30
    assert client.exists(KEYS.inflight("w1")) == 0 and client.exists(KEYS.deaths) == 0
    assert client.hgetall(KEYS.stats) == {b"batches": b"1", b"texts": b"2", b"tokens": b"10", b"padded_tokens": b"12",
                                          b"expired": b"1", b"malformed": b"1"}
    assert client.hgetall(KEYS.batch_sizes) == {b"2": b"1"}
    assert 6000 < client.pttl(KEYS.lease("w1")) <= 7000  # extended by the publish


def test_a_publish_for_a_window_taken_back_says_it_is_no_longer_held(client):
    held = items(["x", "y"])
    client.rpush(KEYS.requests, *held)
    queue = make(client)
    pop(queue, 2)
    client.delete(KEYS.inflight("w1"))  # the reaper took it back while this worker stalled
    rid = new_request_id()
    assert queue.publish(Outbox([Reply(rid, 0, predictions=[Prediction("POSITIVE", 0.9)])], done=held[:1])) is False
    assert client.llen(KEYS.reply(rid)) == 1  # the answer still went out: the first reply per text wins


def test_a_second_process_under_a_registered_id_cannot_pop(client):
    client.rpush(KEYS.requests, *items(["a"]))
    client.hset(KEYS.workers, "w1", "other")
    with pytest.raises(WorkerIdTaken) as info:
        pop(make(client), 1)
    assert str(info.value) == ("worker id 'w1' is registered by another process; give each worker its own WORKER_ID "
                               "(or leave it unset: <hostname>-<pid>)")  # the setting's name, as the operator sets it
    assert client.llen(KEYS.requests) == 1 and client.exists(KEYS.inflight("w1")) == 0


def test_the_last_publish_of_a_window_drops_the_lease(client):
    held = items(["x"])
    client.rpush(KEYS.requests, *held)
    queue = make(client)
    pop(queue, 1)
    assert queue.publish(Outbox(done=held, lease_s=0.0)) is True
    assert client.exists(KEYS.lease("w1"), KEYS.inflight("w1")) == 0


def test_a_lease_under_a_second_is_still_a_lease(client):
    held = items(["x", "y"])
    client.rpush(KEYS.requests, *held)
    queue = make(client)
    pop(queue, 2)
    assert queue.publish(Outbox(done=held[:1], lease_s=0.5)) is True
    assert 0 < client.pttl(KEYS.lease("w1")) <= 500


def test_publish_of_an_empty_batch_writes_nothing(client):
    assert make(client).publish(Outbox()) is True
    assert client.keys("*") == []
