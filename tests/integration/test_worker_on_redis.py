"""The real queue code and the real (tiny) model against a real redis-server."""

import threading
import time

import msgpack
import pytest
import redis

from common.protocol import ErrorCode, WorkItem, encode_item, new_request_id
from common.redis_factory import sync_client
from tests.answers import assert_discriminating, expected_answers, same_answer
from tests.integration.work import enqueue, recovery, replies, worker_queue
from worker.heartbeat import Heartbeat
from worker.loop import BatchLoop, BatchPolicy

TEXTS = [
    "a charming and often affecting journey",
    "bad",
    "the movie is a disaster from start to finish , with wooden acting and a plot that makes no sense at all",
    "it 's a lovely film with lovely performances by buy and accorsi",
    "unflinchingly bleak and desperate",
    "x",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
]


def test_worker_pops_batches_and_answers_through_redis(setup, tiny_predictor):
    settings, client, keys = setup
    rids = [enqueue(client, keys, TEXTS[i:i + 2]) for i in range(0, len(TEXTS), 2)]
    loop = BatchLoop(worker_queue(client, keys, "w-test"), tiny_predictor, BatchPolicy(3, 0.0, 0.2))
    assert loop.run(max_batches=3) == 3  # 7 texts, batches of at most 3
    assert loop.totals.texts == len(TEXTS)
    got = [r for rid in rids for r in replies(client, keys, rid)]
    expected = expected_answers(tiny_predictor, TEXTS)
    assert_discriminating(expected)
    assert [r.index for r in got] == [0, 1, 0, 1, 0, 1, 0]
    assert all(same_answer(r.predictions[0].label, r.predictions[0].score, expected[t]) for r, t in zip(got, TEXTS))
    assert 0 < client.ttl(keys.reply(rids[0])) <= 30
    assert client.hget(keys.stats, "texts") == b"7"
    assert {int(k): int(v) for k, v in client.hgetall(keys.batch_sizes).items()} == {3: 2, 1: 1}


def test_expired_requests_are_dropped(setup, tiny_predictor):
    _, client, keys = setup
    stale = enqueue(client, keys, ["too late"], timeout=-1)
    fresh = enqueue(client, keys, ["in time"])
    loop = BatchLoop(worker_queue(client, keys, "w-test"), tiny_predictor, BatchPolicy(8, 0.0, 0.2))
    loop.run(max_batches=1)
    assert client.exists(keys.reply(stale)) == 0
    assert len(replies(client, keys, fresh)) == 1
    assert client.hget(keys.stats, "expired") == b"1"


def test_malformed_messages_are_skipped_and_the_rest_answered(setup, tiny_predictor):
    _, client, keys = setup
    broken_rid = new_request_id()
    client.rpush(keys.requests, b"\x00\xffnot msgpack", msgpack.packb({"v": 1, "request_id": broken_rid, "index": 0}),
                 b"x" * 100_000)
    good = enqueue(client, keys, ["still answered"])
    loop = BatchLoop(worker_queue(client, keys, "w-test"), tiny_predictor, BatchPolicy(8, 0.0, 0.2))
    loop.run(max_batches=1)
    assert replies(client, keys, good)[0].predictions is not None
    assert replies(client, keys, broken_rid)[0].error.code == ErrorCode.MALFORMED
    assert client.hget(keys.stats, "malformed") == b"3"


def test_concurrent_pops_never_share_or_lose_an_item(setup):
    settings, client, keys = setup
    messages = [encode_item(WorkItem(new_request_id(), 0, f"t{i}", 1e12, 0.0)) for i in range(2000)]
    client.rpush(keys.requests, *messages)
    taken: list[list[bytes]] = [[], [], []]

    def consume(slot):
        own = sync_client(settings, longest_block_s=1)
        queue = worker_queue(own, keys, f"w-{slot}")
        while batch := queue.pop(7, block_s=0.2, lease_s=30).messages:
            taken[slot].extend(batch)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [m for part in taken for m in part]
    assert len(everything) == 2000 and set(everything) == set(messages)
    assert all(taken), "every consumer got some work"


def test_blocking_pop_wakes_on_arrival_without_taking_anything_early(setup):
    _, client, keys = setup
    queue = worker_queue(client, keys, "w-test")
    pusher = redis.Redis.from_url(setup[0].redis_url)
    threading.Timer(0.3, lambda: pusher.rpush(keys.requests, b"first", b"second", b"third")).start()
    started = time.monotonic()
    got = queue.pop(2, block_s=5, lease_s=30).messages
    waited = time.monotonic() - started
    assert got == [b"first", b"second"] and 0.25 < waited < 1.5  # the head of the queue, in order
    assert client.lrange(keys.requests, 0, -1) == [b"third"]
    assert client.lrange(keys.inflight("w-test"), 0, -1) == [b"first", b"second"]
    client.delete(keys.requests)
    started = time.monotonic()
    assert not queue.pop(4, block_s=0.2, lease_s=30)  # an empty queue times out, no busy loop needed
    assert time.monotonic() - started >= 0.15


def test_the_workers_client_never_resends_a_command_on_a_dropped_connection(setup, redis_server):
    """A re-sent pop could take a second window while the first one's answer was lost: the client must fail."""
    settings, _, keys = setup
    client = sync_client(settings, longest_block_s=5)
    client.client_setname(f"{keys.prefix}-worker")
    admin = redis.Redis.from_url(redis_server.url)

    def kill():
        for connection in admin.client_list():
            if connection["name"] == f"{keys.prefix}-worker":
                admin.client_kill_filter(_id=connection["id"])

    threading.Timer(0.3, kill).start()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        worker_queue(client, keys, "w-test").pop(4, block_s=3, lease_s=30)  # blocked in BLMOVE when killed
    assert time.monotonic() - started < 1.5
    client.close()


def test_heartbeat_is_readable_expires_and_is_withdrawn(setup):
    settings, client, keys = setup
    own = sync_client(settings, longest_block_s=0, name=keys.connection_name("host-7", "i7"))  # as worker.main names it
    reaper = recovery(own, keys)
    beat = Heartbeat(own, keys, "host-7", "i7", interval_s=0.1, ttl_s=2,
                     describe=lambda: {"model": "tiny", "batches": 4}, after_beat=lambda: reaper.reap(lock_ttl_s=1))
    beat.start()
    data = client.hgetall(keys.heartbeat("host-7"))
    assert data[b"model"] == b"tiny" and data[b"batches"] == b"4" and b"last_beat" in data
    assert data[b"incarnation"] == b"i7"
    assert 0 < client.ttl(keys.heartbeat("host-7")) <= 2
    assert client.hgetall(keys.workers) == {b"host-7": b"i7"}
    client.hset(keys.workers, "long-gone", "x")  # registered once, its process gone since: the reaper forgets it
    time.sleep(0.35)
    assert client.hgetall(keys.workers) == {b"host-7": b"i7"}  # its own connection proves host-7 is there
    beat.stop()
    assert client.exists(keys.heartbeat("host-7")) == 0 and client.hgetall(keys.workers) == {}
    own.close()
