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

# The keys of the default model (SERVED_MODEL_NAME's default), version 1: the fake worker's.
KEYS = Keys("unit").served("sentimentalyzer", 1)
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


def served_keys(s: ApiSettings, version: int = 1, name: str | None = None) -> Keys:
    """The keys of a fake worker's model version: by default, the default model's version 1."""
    return s.keys().served(name or s.served_model_name, version)


async def announce(client, s: ApiSettings, version: int = 1, worker_id: str = "fake-1",
                   name: str | None = None) -> Keys:
    """What a live worker of ``version`` of the model ``name`` (None: the default) writes: its model version,
    heartbeat and registration."""
    keys = served_keys(s, version, name)
    await client.sadd(keys.models, keys.model_member(name or s.served_model_name, version))
    await client.hset(keys.heartbeat(worker_id), mapping={"worker_id": worker_id, **CARD.fields(),
                                                          "max_batch_size": "64", "max_batch_tokens": "512"})
    await client.hset(keys.workers, worker_id, "incarnation-1")
    return keys


async def fake_worker(client, s: ApiSettings, stop: asyncio.Event, *, heartbeat: bool = True,
                      seen: list | None = None, answer: bool = True, name: str | None = None, version: int = 1,
                      worker_id: str = "fake-1", mark: str = "") -> None:
    """Answers every item with ``fake_answer`` (its pair, if any, joined to its text), each label followed by
    ``mark`` (which worker answered); ``seen`` collects the items. ``answer=False``: a live worker that never takes
    anything (its queue only grows). ``name``, ``version``: the model version it serves (default: the default
    model's version 1)."""
    keys = (await announce(client, s, version, worker_id, name) if heartbeat else served_keys(s, version, name))
    while answer and not stop.is_set():
        # Polls (test code), stopped by an event: fakeredis's async client does not end promptly on cancel.
        popped = await client.lpop(keys.requests, 16)
        if not popped:
            await asyncio.sleep(0.005)
            continue
        for raw in popped:
            item = decode_item(raw)
            if seen is not None:
                seen.append(item)
            ranked = [Prediction(p.label + mark, p.score)
                      for p in fake_answer(item.text + (item.text_pair or ""), item.index, item.options.top_k)]
            reply = Reply(item.request_id, item.index, predictions=ranked, queue_ms=1.0, inference_ms=2.0,
                          model=CARD.answers)
            await client.rpush(keys.reply(item.request_id), encode_reply(reply))


@contextlib.asynccontextmanager
async def running(s: ApiSettings, *, worker: bool | str = True, client=None, server=None, seen: list | None = None,
                  cache_client=None, extend=None):
    """``worker``: True, the fake worker; "idle", a live worker that takes nothing; False, none. ``extend``: called
    with the app before it starts (a test's own routes)."""
    server = server or fakeredis.FakeServer()
    client = client or fakeredis.FakeAsyncRedis(server=server)
    app = create_app(s, client, cache_client)
    if extend is not None:
        extend(app)
    stop = asyncio.Event()
    task = (asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop, seen=seen,
                                            answer=worker != "idle"))
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
