"""Worker paths that need a real redis-server: waiting for batch-mates (MAX_BATCH_WAIT_MS > 0), giving back a
window after a lost connection while Redis keeps its data, and the container health check."""

import socket
import threading
import time

import pytest
import redis

from tests.answers import expected_answers, same_answer
from tests.helpers import free_port, wait_until
from tests.integration.work import enqueue, recovery, replies, worker_queue
from worker import healthcheck
from worker.loop import BatchLoop, BatchPolicy
from worker.main import serve
from worker.redis_queue import RedisRequestQueue


def test_batch_wait_holds_a_window_for_arrivals_and_no_longer(setup, tiny_predictor):
    settings, client, keys = setup
    loop = BatchLoop(worker_queue(client, keys, "w-wait"), tiny_predictor, BatchPolicy(3, 0.4, 0.2))
    pusher = redis.Redis.from_url(settings.redis_url)
    first = enqueue(client, keys, ["good"])
    threading.Timer(0.1, lambda: enqueue(pusher, keys, ["bad", "fun"])).start()
    started = time.monotonic()
    assert loop.run(max_batches=1) == 1
    assert time.monotonic() - started < 0.35  # ran as soon as the window was full, not after the whole wait
    assert loop.last_batch_size == 3
    lone = enqueue(client, keys, ["dull"])
    started = time.monotonic()
    loop.run(max_batches=1)
    waited = time.monotonic() - started
    assert 0.3 < waited < 1.0 and loop.last_batch_size == 1  # waited out its budget (from enqueue), then ran alone
    assert [len(replies(client, keys, rid)) for rid in (first, lone)] == [1, 1]
    assert {int(k): int(v) for k, v in client.hgetall(keys.batch_sizes).items()} == {3: 1, 1: 1}


class LosesOneAnswer:
    """The real Redis queue, but the connection drops once: after the pop ran in Redis but before its answer
    came back (``pop``), or before the publish reached Redis (``publish``)."""

    def __init__(self, queue: RedisRequestQueue, where: str) -> None:
        self._queue, self._where = queue, where

    def pop(self, max_items, block_s, **kwargs):
        taken = self._queue.pop(max_items, block_s, **kwargs)
        if taken and self._where == "pop":
            self._where = ""
            raise redis.ConnectionError("connection lost while reading the pop's answer")
        return taken

    def publish(self, outbox):
        if self._where == "publish":
            self._where = ""
            raise redis.ConnectionError("connection lost before the publish was sent")
        return self._queue.publish(outbox)


@pytest.mark.parametrize("where", ["pop", "publish"])
def test_a_window_lost_with_the_connection_is_given_back_and_answered_once(setup, tiny_predictor, where):
    settings, client, keys = setup
    texts = ["good", "a dull film", "great fun"]
    rid = enqueue(client, keys, texts)
    recover = recovery(client, keys)
    loop = BatchLoop(LosesOneAnswer(worker_queue(client, keys, "w-lost"), where), tiny_predictor,
                     BatchPolicy(8, 0.0, 0.2))
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(loop, recover, "w-lost", "w-lost-i", client, stop))
    worker.start()
    try:
        wait_until(lambda: client.llen(keys.reply(rid)) == len(texts), 10, "the window to be answered", 0.02)
    finally:
        loop.request_stop()
        stop.set()
        worker.join(10)
    expected = expected_answers(tiny_predictor, texts)
    got = replies(client, keys, rid)
    assert [r.index for r in got] == [0, 1, 2]  # each text answered once
    assert all(same_answer(r.predictions[0].label, r.predictions[0].score, expected[t]) for r, t in zip(got, texts))
    assert client.hget(keys.stats, "texts") == b"3"
    assert client.exists(keys.inflight("w-lost"), keys.requests, keys.deaths) == 0  # given back, no death counted


@pytest.fixture
def health_env(monkeypatch, setup):
    settings, _, keys = setup
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("KEY_PREFIX", keys.prefix)
    return setup


def test_healthcheck_passes_only_with_a_live_progressing_worker_on_this_host(health_env, capsys):
    _, client, keys = health_env
    assert healthcheck.main() == 1
    assert f"no live, progressing worker on host {socket.gethostname()}" in capsys.readouterr().err
    client.hset(keys.workers, mapping={"elsewhere": "a", "here": "b"})
    client.hset(keys.heartbeat("elsewhere"), "host", "another-host")
    assert healthcheck.main() == 1
    client.hset(keys.heartbeat("here"), "host", socket.gethostname())
    assert healthcheck.main() == 0
    client.rpush(keys.inflight("here"), b"held")  # holds work without a lease: stalled, restart it
    assert healthcheck.main() == 1
    client.delete(keys.inflight("here"))
    client.delete(keys.heartbeat("here"))  # expired: registered, but not alive
    assert healthcheck.main() == 1


def test_healthcheck_fails_when_redis_is_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert healthcheck.main() == 1
    assert capsys.readouterr().err.startswith("unhealthy: ")
