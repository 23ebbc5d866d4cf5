"""The gateway's push and first wait, pipelined into one round trip, on a real redis-server: refusals, error replies
and lost scripts end that wait at once or within FIRST_WAIT_S, and a request answered in time costs one round
trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time

import pytest
import redis
import redis.asyncio.connection

from api.errors import ErrorKind, ServiceError
from api.gateway import FIRST_WAIT_S, Gateway, Outcome
from api.settings import ApiSettings
from common.options import Query
from common.protocol import Prediction, Reply, decode_item, encode_reply, new_request_id
from common.redis_factory import BLOCKING_READ_MARGIN_S, async_client, async_waiting_client
from tests.helpers import RedisServer

# What the push script runs inside Redis, which its command counts include.
SCRIPT_CALLS = {"cmdstat_llen", "cmdstat_get", "cmdstat_set", "cmdstat_rpush"}


def settings(url: str, prefix: str = "gateway", **overrides) -> ApiSettings:
    base = dict(redis_url=url, key_prefix=prefix, request_timeout_s=10.0, max_batch_texts=4, max_queue_depth=8,
                max_client_share=1.0, retry_after_s=3)
    return ApiSettings(**(base | overrides))


def reply_to(request_id: str, index: int = 0) -> bytes:
    return encode_reply(Reply(request_id, index, predictions=[Prediction("POSITIVE", 0.9)]))


def answered(s: ApiSettings, client: redis.Redis, texts: list[str]) -> tuple[str, list[str]]:
    """A request id, and the push of its replies ahead of the request: it is answered the moment it waits."""
    request_id = new_request_id()
    client.rpush(s.keys().reply(request_id), *[reply_to(request_id, i) for i in range(len(texts))])
    return request_id, texts


def on_gateway(s: ApiSettings, scenario, *requests: tuple[str, list[str]]):
    """``await scenario(gateway)`` after ``requests`` (request id, texts) were classified in order: the first push
    of a gateway goes on its own, to load the script; later ones are pipelined with their first wait."""
    async def run():
        client = async_client(s, longest_block_s=s.request_timeout_s, max_connections=4)
        waiting = async_waiting_client(s, max_connections=4)  # as served: api/app.py
        gateway = Gateway(client, s.keys(), s, waiting=waiting)
        try:
            for request_id, texts in requests:
                await gateway.classify([Query(t) for t in texts], request_id=request_id)
            return await scenario(gateway)
        finally:
            await client.aclose()
            await waiting.aclose()

    return asyncio.run(run())


async def timed(call) -> tuple[Outcome | ServiceError, float]:
    started = time.monotonic()
    try:
        result = await call
    except ServiceError as exc:
        result = exc
    return result, time.monotonic() - started


@contextlib.contextmanager
def answering_worker(s: ApiSettings, client: redis.Redis):
    """A worker thread that answers every text as it arrives."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if popped := client.blpop([s.keys().requests], timeout=0.05):
                item = decode_item(popped[1])
                client.rpush(s.keys().reply(item.request_id), reply_to(item.request_id, item.index))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own: its command counts and memory limit are the test's."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.mark.parametrize("full_by", ["texts", "bytes"])
def test_a_full_queue_answers_429_at_once_and_leaves_no_reply_key(redis_server, key_prefix, full_by):
    s = settings(redis_server.url, key_prefix, max_queue_depth=8 if full_by == "texts" else 100)
    client, keys = redis_server.client, s.keys()
    refused_id = new_request_id()

    async def scenario(gateway):
        client.rpush(keys.requests, *[b"earlier"] * 7)  # and the warm-up's text: 8
        if full_by == "bytes":
            client.set(keys.queued_bytes, s.max_queue_bytes)
        return await timed(gateway.classify([Query("one more")], request_id=refused_id))

    refused, took = on_gateway(s, scenario, answered(s, client, ["warm up"]))
    assert isinstance(refused, ServiceError) and refused.kind == ErrorKind.OVERLOADED
    assert refused.retry_after_s == 3
    limit = "8 texts" if full_by == "texts" else f"{s.max_queue_bytes} bytes of text"
    assert refused.message == f"the queue is full (limit {limit}); retry later"
    assert took < FIRST_WAIT_S / 4  # the refusal marker ended the pipelined wait
    assert client.exists(keys.reply(refused_id)) == 0  # the marker was popped with it
    assert client.llen(keys.requests) == 8  # nothing pushed


def test_after_script_flush_a_request_is_pushed_again_and_answered(redis_server, key_prefix):
    s = settings(redis_server.url, key_prefix)
    client = redis_server.client

    async def scenario(gateway):
        client.script_flush()  # as a restarted Redis: the pipelined push is answered NOSCRIPT
        lost, took = await timed(gateway.classify([Query("a"), Query("b")]))
        return lost, took, await gateway.classify([Query("c")])

    with answering_worker(s, client):
        lost, took, then = on_gateway(s, scenario, (new_request_id(), ["warm up"]))
    assert isinstance(lost, Outcome) and len(lost.predictions) == 2
    assert took < FIRST_WAIT_S + 1.0  # the wait pipelined with the refused push, then the usual one
    assert len(then.predictions) == 1 and client.llen(s.keys().requests) == 0


def test_an_answered_request_costs_one_round_trip_of_one_evalsha_and_one_blmpop(private_redis, monkeypatch):
    s = settings(private_redis.url)
    client = private_redis.client
    warm_up, request = answered(s, client, ["warm up"]), answered(s, client, ["a", "b"])
    sent = []
    send = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting_send(self, command, check_health=True):
        sent.append(command)
        return await send(self, command, check_health)

    async def scenario(gateway):
        client.config_resetstat()
        monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", counting_send)
        return await gateway.classify([Query(t) for t in request[1]], request_id=request[0])

    outcome = on_gateway(s, scenario, warm_up)
    assert len(outcome.predictions) == 2
    assert len(sent) == 1  # one write: the push and the wait pipelined
    calls = {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()
             if name not in SCRIPT_CALLS}
    assert calls == {"evalsha": 1, "blmpop": 1, "config|resetstat": 1}


def test_an_out_of_memory_push_is_a_503_within_the_first_wait(private_redis):
    s = settings(private_redis.url, request_timeout_s=30.0)
    client = private_redis.client

    async def scenario(gateway):
        queued.append(client.llen(s.keys().requests))
        client.config_set("maxmemory", 1)  # noeviction (the harness's redis-server): every write is refused OOM
        try:
            return await timed(gateway.classify([Query("fine")]))
        finally:
            client.config_set("maxmemory", 0)

    queued = []
    failed, took = on_gateway(s, scenario, answered(s, client, ["warm up"]))
    assert isinstance(failed, ServiceError) and (failed.status, failed.retry_after_s) == (503, 1)
    assert failed.message == "the request queue is unavailable; retry later"
    assert took < FIRST_WAIT_S + 1.0  # not the 30 s deadline
    assert [client.llen(s.keys().requests)] == queued  # nothing pushed


def test_a_redis_that_stops_answering_is_a_503_by_the_deadline_and_its_margin(private_redis, caplog):
    """The waits' connections have no socket timeout (common/redis_factory.py): each request's deadline bounds its
    round trips. Redis frozen (SIGSTOP) after the push: the request ends with the 503 of an unavailable queue once
    its deadline and the margin for Redis's late answer have passed, not never. REQUEST_TIMEOUT_S is short, as a
    user with a latency budget would set it, so that the test waits seconds, not a minute."""
    s = settings(private_redis.url, request_timeout_s=1.0)
    client = redis.Redis.from_url(private_redis.url)

    async def scenario(gateway: Gateway):
        async def freeze_after_the_push():
            while not client.llen(s.keys().requests):
                await asyncio.sleep(0.01)
            private_redis.process.signal(signal.SIGSTOP)

        freezer = asyncio.create_task(freeze_after_the_push())
        try:
            return await timed(gateway.classify([Query("frozen")]))
        finally:
            await freezer

    try:
        with caplog.at_level(logging.WARNING, logger="api.redis_errors"):
            outcome, took = on_gateway(s, scenario, answered(s, client, ["loads the script"]))
    finally:
        private_redis.process.signal(signal.SIGCONT)
    assert "Redis unavailable: TimeoutError: no answer from Redis by the request's deadline" in caplog.messages
    assert isinstance(outcome, ServiceError) and outcome.kind == ErrorKind.UNAVAILABLE
    assert s.request_timeout_s + BLOCKING_READ_MARGIN_S - 0.5 < took < s.request_timeout_s + BLOCKING_READ_MARGIN_S + 2
