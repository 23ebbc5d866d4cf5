import fakeredis
import pytest

from common.keys import Keys
from common.protocol import Prediction, Reply, WorkError, decode_reply, new_request_id
from tests.unit.fakes import items
from worker.loop import BatchStats
from worker.redis_queue import RedisRequestQueue

KEYS = Keys("unit")


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


def test_pop_takes_from_the_head_in_order_and_leaves_the_rest(client):
    messages = items([f"t{i}" for i in range(5)])
    client.rpush(KEYS.requests, *messages)
    queue = RedisRequestQueue(client, KEYS, reply_ttl_s=30)
    assert queue.pop(3, block_s=0) == messages[:3]
    assert client.lrange(KEYS.requests, 0, -1) == messages[3:]
    assert queue.pop(3, block_s=0) == messages[3:]
    assert client.exists(KEYS.requests) == 0


def test_pop_on_empty_queue_without_blocking_returns_nothing(client):
    assert RedisRequestQueue(client, KEYS, reply_ttl_s=30).pop(4, block_s=0) == []


def test_publish_groups_replies_per_reply_key_with_expiry_and_counts(client):
    a, b = new_request_id(), new_request_id()
    replies = [Reply(a, 0, prediction=Prediction("POSITIVE", 0.9)), Reply(b, 0, prediction=Prediction("NEGATIVE", 0.8)),
               Reply(a, 1, error=WorkError("malformed_message", "x"))]
    RedisRequestQueue(client, KEYS, reply_ttl_s=30).publish(replies, BatchStats(size=2, expired=1, malformed=1))
    got_a = [decode_reply(r) for r in client.lrange(KEYS.reply(a), 0, -1)]
    assert [r.index for r in got_a] == [0, 1] and got_a[1].error is not None
    assert len(client.lrange(KEYS.reply(b), 0, -1)) == 1
    assert 0 < client.ttl(KEYS.reply(a)) <= 30 and 0 < client.ttl(KEYS.reply(b)) <= 30
    assert client.hgetall(KEYS.stats) == {b"batches": b"1", b"texts": b"2", b"expired": b"1", b"malformed": b"1"}
    assert client.hgetall(KEYS.batch_sizes) == {b"2": b"1"}


def test_publish_of_an_empty_batch_writes_nothing(client):
    RedisRequestQueue(client, KEYS, reply_ttl_s=30).publish([], BatchStats())
    assert client.keys("*") == []
