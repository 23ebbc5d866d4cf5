import fakeredis
import pytest

from common.counters import WorkerCounts
from common.keys import Keys
from common.protocol import Prediction, Reply, WorkError, decode_reply, new_request_id
from common.scripts import digest
from tests.unit.fakes import items
from worker.redis_queue import RedisRequestQueue
from worker.window import Outbox

KEYS = Keys("unit")


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


def make(client, worker="w1"):
    return RedisRequestQueue(client, KEYS, reply_ttl_s=30, worker_id=worker)


def test_pop_takes_from_the_head_in_order_and_records_what_it_holds(client):
    messages = items([f"t{i}" for i in range(5)])
    client.rpush(KEYS.requests, *messages)
    queue = make(client)
    assert queue.pop(3, block_s=0) == messages[:3]
    assert client.lrange(KEYS.requests, 0, -1) == messages[3:]
    assert client.lrange(KEYS.inflight("w1"), 0, -1) == messages[:3]
    assert queue.pop(3, block_s=0) == messages[3:]
    assert client.exists(KEYS.requests) == 0


def test_pop_on_empty_queue_without_blocking_returns_nothing(client):
    assert make(client).pop(4, block_s=0) == []
    assert client.exists(KEYS.inflight("w1")) == 0


def test_publish_delivers_replies_releases_held_messages_and_counts(client):
    a, b = new_request_id(), new_request_id()
    held = items(["x", "y"])
    client.rpush(KEYS.requests, *held)
    queue = make(client)
    queue.pop(2, block_s=0)
    client.hset(KEYS.deaths, digest(held[0]), 1)
    replies = [Reply(a, 0, prediction=Prediction("POSITIVE", 0.9)), Reply(b, 0, prediction=Prediction("NEGATIVE", 0.8)),
               Reply(a, 1, error=WorkError("malformed_message", "x"))]
    counts = WorkerCounts(batches=1, texts=2, tokens=10, padded_tokens=12, expired=1, malformed=1)
    queue.publish(Outbox(replies, done=held, counts=counts))
    got_a = [decode_reply(r) for r in client.lrange(KEYS.reply(a), 0, -1)]
    assert [r.index for r in got_a] == [0, 1] and got_a[1].error is not None
    assert len(client.lrange(KEYS.reply(b), 0, -1)) == 1
    assert 0 < client.ttl(KEYS.reply(a)) <= 30 and 0 < client.ttl(KEYS.reply(b)) <= 30
    assert client.exists(KEYS.inflight("w1")) == 0 and client.exists(KEYS.deaths) == 0
    assert client.hgetall(KEYS.stats) == {b"batches": b"1", b"texts": b"2", b"tokens": b"10", b"padded_tokens": b"12",
                                          b"expired": b"1", b"malformed": b"1"}
    assert client.hgetall(KEYS.batch_sizes) == {b"2": b"1"}


def test_publish_of_an_empty_batch_writes_nothing(client):
    make(client).publish(Outbox())
    assert client.keys("*") == []
