"""The gateway's push and first wait for its replies, sent as one round trip (api/gateway.py, api/round_trip.py),
on fakeredis: refusals and error replies end that wait at once or within FIRST_WAIT_S, lost scripts are loaded
again, the deadline bounds every wait, and a broken connection resets both of the gateway's pools."""

import asyncio
import logging
import time

import fakeredis
import pytest

import api.gateway as gateway_module
from api.errors import ErrorKind, ServiceError
from api.gateway import FIRST_WAIT_S, Gateway
from common.options import Query
from common.protocol import Prediction, ProtocolError, Reply, decode_item, decode_reply, encode_reply
from common.scripts import REFUSAL_MARKER
from tests.unit.api_harness import KEYS, fake_worker, settings


def on_a_warm_gateway(scenario, *, worker: bool = True, warm: bool = True, **overrides):
    """``await scenario(gateway, redis)`` with a gateway that has pushed once (``warm``: its push script is loaded,
    pushes now go pipelined with their first wait), on fakeredis with the real clock and, with ``worker``, a fake
    worker that answers every text. Its pushes and waits have a client of their own, as served (api/app.py)."""
    async def run():
        server = fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=server)
        s = settings(**overrides)
        gateway = Gateway(client, KEYS, s, waiting=fakeredis.FakeAsyncRedis(server=server))
        if warm:
            await client.rpush(KEYS.reply("0" * 32), encode_reply(Reply("0" * 32, 0, predictions=[Prediction("POSITIVE", 0.9)])))
            await gateway.classify([Query("warm up")], request_id="0" * 32)
        stop = asyncio.Event()
        answering = asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop,
                                                    heartbeat=False)) if worker else None
        try:
            return await scenario(gateway, client)
        finally:
            stop.set()
            if answering:
                await answering

    return asyncio.run(run())


@pytest.mark.parametrize("limit,limits", [("limit 4 texts", {"max_queue_depth": 4, "max_queue_bytes": 10**6}),
                                          ("limit 10000 bytes", {"max_queue_depth": 50, "max_queue_bytes": 10**4})])
def test_a_full_queue_answers_429_at_once_and_its_marker_is_not_taken_for_a_reply(limit, limits, caplog):
    async def scenario(gateway, client):
        await client.rpush(KEYS.requests, *[b"earlier"] * 4)
        await client.set(KEYS.queued_bytes, 10**4)  # full by bytes too
        started = time.monotonic()
        with pytest.raises(ServiceError) as refused:
            await gateway.classify([Query("more")], request_id="r" * 32)
        return refused.value, time.monotonic() - started, await client.exists(KEYS.reply("r" * 32))

    with caplog.at_level(logging.ERROR, logger="api.gateway"):
        refused, took, left = on_a_warm_gateway(scenario, worker=False, max_batch_texts=4, max_client_share=1.0,
                                                retry_after_s=3, **limits)
    assert (refused.kind, refused.retry_after_s) == (ErrorKind.OVERLOADED, 3) and limit in refused.message
    assert took < FIRST_WAIT_S / 4  # the marker ended the wait pipelined after the push
    assert left == 0 and caplog.messages == []  # popped, and never read as a reply
    with pytest.raises(ProtocolError):
        decode_reply(REFUSAL_MARKER)


def test_after_redis_lost_its_scripts_a_request_is_pushed_again_and_answered(monkeypatch):
    monkeypatch.setattr(gateway_module, "FIRST_WAIT_S", 0.05)  # what the NOSCRIPT path waits for nothing

    async def scenario(gateway, client):
        await client.script_flush()  # as after a restart: the pipelined push is answered NOSCRIPT
        first = await gateway.classify([Query("good"), Query("bad")])
        return first, await gateway.classify([Query("good again")]), await client.llen(KEYS.requests)

    first, then, queued = on_a_warm_gateway(scenario)
    assert [ranked[0].label for ranked in first.predictions] == ["POSITIVE", "NEGATIVE"]
    assert then.predictions[0][0].label == "POSITIVE" and queued == 0  # each text queued once


def test_an_error_reply_to_the_push_is_a_503_after_the_first_wait_not_at_the_deadline():
    async def scenario(gateway, client):
        await client.set(KEYS.requests, "not a list")  # the script's LLEN answers WRONGTYPE, as OOM would refuse
        started = time.monotonic()
        with pytest.raises(ServiceError) as refused:
            await gateway.classify([Query("fine")])
        return refused.value, time.monotonic() - started

    refused, took = on_a_warm_gateway(scenario, worker=False, request_timeout_s=30.0)
    assert (refused.status, refused.retry_after_s) == (503, 1)
    assert refused.message == "the request queue is unavailable; retry later"
    assert took < FIRST_WAIT_S + 1.0


@pytest.mark.parametrize("warm", [False, True], ids=["wait-on-its-own", "wait-with-the-push"])
def test_an_error_reply_to_a_wait_is_a_503(warm):
    """The texts were queued, but their reply key is not a list (WRONGTYPE): the wait pipelined with the push (a warm
    gateway) or the one after it (a gateway's first push goes on its own) fails, and the request is a 503."""
    async def scenario(gateway, client):
        await client.set(KEYS.reply("e" * 32), "not a list")
        with pytest.raises(ServiceError) as failed:
            await gateway.classify([Query("fine")], request_id="e" * 32)
        return failed.value, [decode_item(raw).request_id for raw in await client.lrange(KEYS.requests, 0, -1)]

    failed, queued = on_a_warm_gateway(scenario, worker=False, warm=warm)
    assert (failed.status, failed.message) == (503, "the request queue is unavailable; retry later")
    assert queued[-1:] == ["e" * 32]


def test_a_broken_connection_drops_the_idle_connections_of_both_clients():
    """The waits' client and the general one reach the same Redis: when one finds it gone, both pools are reset, so
    that neither hands a later request a dead connection."""
    async def scenario():
        server = fakeredis.FakeServer()
        general, waiting = fakeredis.FakeAsyncRedis(server=server), fakeredis.FakeAsyncRedis(server=server)
        reset: list[str] = []
        for name, client in (("general", general), ("waiting", waiting)):
            async def disconnect(inuse_connections: bool = True, name: str = name) -> None:
                reset.append(name)

            client.connection_pool.disconnect = disconnect
        server.connected = False  # Redis gone: every command fails with a connection error
        with pytest.raises(ServiceError) as failed:
            await Gateway(general, KEYS, settings(), waiting=waiting).classify([Query("fine")])
        return failed.value, sorted(reset)

    failed, reset = asyncio.run(scenario())
    assert failed.status == 503 and reset == ["general", "waiting"]


def test_the_wait_sent_with_the_push_ends_by_the_deadline():
    """A deadline nearer than FIRST_WAIT_S bounds the first wait too: no answer is a 504 at the deadline, not after
    the first wait's whole second. REQUEST_TIMEOUT_S is set as low as a user with a tight latency budget would."""
    async def scenario(gateway, client):
        started = time.monotonic()
        with pytest.raises(ServiceError) as late:
            await gateway.classify([Query("nobody answers")])
        return late.value, time.monotonic() - started

    late, took = on_a_warm_gateway(scenario, worker=False, request_timeout_s=0.2)
    assert late.kind == ErrorKind.TIMEOUT and took < FIRST_WAIT_S - 0.3


def test_a_refused_first_push_leaves_its_marker_on_its_own_reply_key_only():
    """A gateway's first push goes without a wait: a refusal's marker stays on the request's own reply key until it
    expires, and nowhere else."""
    async def scenario(gateway, client):
        await client.rpush(KEYS.requests, *[b"earlier"] * 4)
        with pytest.raises(ServiceError):
            await gateway.classify([Query("more")], request_id="f" * 32)
        return await client.keys(KEYS.reply("*")), await client.pttl(KEYS.reply("f" * 32))

    keys, ttl_ms = on_a_warm_gateway(scenario, worker=False, warm=False, max_queue_depth=4, max_batch_texts=4,
                                     max_client_share=1.0)
    assert keys == [KEYS.reply("f" * 32).encode()] and 0 < ttl_ms <= 1000
