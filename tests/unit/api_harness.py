"""The API under test: the real app on fakeredis, a fake worker coroutine, an httpx client over ASGI."""

import asyncio
import contextlib

import fakeredis
import httpx

from api.app import create_app
from common.keys import Keys
from common.protocol import Prediction, Reply, decode_item, encode_reply
from common.settings import ApiSettings

KEYS = Keys("unit")


def settings(**overrides) -> ApiSettings:
    base = dict(key_prefix=KEYS.prefix, request_timeout_s=2.0, max_text_chars=100, max_batch_texts=5,
                max_body_bytes=4096, max_queue_depth=50, max_in_flight=50)
    base.update(overrides)
    return ApiSettings(**base)


async def fake_worker(client, s: ApiSettings, stop: asyncio.Event, *, heartbeat: bool = True) -> None:
    """Answers every item: POSITIVE if the text contains 'good'; score 0.5 + index/100."""
    keys = s.keys()
    if heartbeat:
        await client.hset(keys.heartbeat("fake-1"), mapping={"worker_id": "fake-1"})
        await client.hset(keys.workers, "fake-1", "incarnation-1")
    while not stop.is_set():
        # Polls (test code), stopped by an event: fakeredis's async client does not end promptly on cancel.
        popped = await client.lpop(keys.requests, 16)
        if not popped:
            await asyncio.sleep(0.005)
            continue
        for raw in popped:
            item = decode_item(raw)
            label = "POSITIVE" if "good" in item.text else "NEGATIVE"
            reply = Reply(item.request_id, item.index, prediction=Prediction(label, 0.5 + item.index / 100),
                          queue_ms=1.0, inference_ms=2.0)
            await client.rpush(keys.reply(item.request_id), encode_reply(reply))


@contextlib.asynccontextmanager
async def running(s: ApiSettings, *, worker: bool = True, client=None, server=None):
    server = server or fakeredis.FakeServer()
    client = client or fakeredis.FakeAsyncRedis(server=server)
    app = create_app(s, client)
    stop = asyncio.Event()
    task = asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop)) if worker else None
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                yield http, client
    finally:
        stop.set()
        if task:
            await task


def run(coro):
    return asyncio.run(coro)
