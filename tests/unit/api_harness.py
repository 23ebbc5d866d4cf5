"""The API under test: the real app on fakeredis, a fake worker coroutine, an httpx client over ASGI."""

import asyncio
import contextlib

import fakeredis
import httpx

from api.app import create_app
from api.settings import ApiSettings
from common.keys import Keys
from common.model_card import ModelCard
from common.protocol import Prediction, Reply, decode_item, encode_reply

KEYS = Keys("unit")
# What the fake worker says it serves (its heartbeat's model card).
CARD = ModelCard(model="fake-model", fingerprint="f" * 64, labels=("NEGATIVE", "POSITIVE"), max_tokens=16,
                 default_function="softmax", backend="fake", precision="float32", device_type="cpu")


def settings(**overrides) -> ApiSettings:
    base = dict(key_prefix=KEYS.prefix, request_timeout_s=2.0, max_text_chars=100, max_batch_texts=5,
                max_body_bytes=4096, max_queue_depth=50, max_in_flight=50)
    base.update(overrides)
    return ApiSettings(**base)


def fake_answer(text: str, index: int, top_k: int | None = 1) -> list[Prediction]:
    """The fake worker's answer: POSITIVE if the text contains 'good' (else NEGATIVE) with 0.5 + index/100, the
    other label the rest; top_k of them."""
    label, other = ("POSITIVE", "NEGATIVE") if "good" in text else ("NEGATIVE", "POSITIVE")
    score = 0.5 + index / 100
    return [Prediction(label, score), Prediction(other, round(1 - score, 6))][:top_k or 2]


async def fake_worker(client, s: ApiSettings, stop: asyncio.Event, *, heartbeat: bool = True,
                      seen: list | None = None) -> None:
    """Answers every item with ``fake_answer`` (its pair, if any, joined to its text); ``seen`` collects the items."""
    keys = s.keys()
    if heartbeat:
        await client.hset(keys.heartbeat("fake-1"), mapping={"worker_id": "fake-1", **CARD.fields(),
                                                             "max_batch_size": "64", "max_batch_tokens": "512"})
        await client.hset(keys.workers, "fake-1", "incarnation-1")
    while not stop.is_set():
        # Polls (test code), stopped by an event: fakeredis's async client does not end promptly on cancel.
        popped = await client.lpop(keys.requests, 16)
        if not popped:
            await asyncio.sleep(0.005)
            continue
        for raw in popped:
            item = decode_item(raw)
            if seen is not None:
                seen.append(item)
            ranked = fake_answer(item.text + (item.text_pair or ""), item.index, item.options.top_k)
            reply = Reply(item.request_id, item.index, predictions=ranked, queue_ms=1.0, inference_ms=2.0,
                          model=CARD.answers)
            await client.rpush(keys.reply(item.request_id), encode_reply(reply))


@contextlib.asynccontextmanager
async def running(s: ApiSettings, *, worker: bool = True, client=None, server=None, seen: list | None = None,
                  cache_client=None, extend=None):
    """``extend``: called with the app before it starts (a test's own routes)."""
    server = server or fakeredis.FakeServer()
    client = client or fakeredis.FakeAsyncRedis(server=server)
    app = create_app(s, client, cache_client)
    if extend is not None:
        extend(app)
    stop = asyncio.Event()
    task = (asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop, seen=seen))
            if worker else None)
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
