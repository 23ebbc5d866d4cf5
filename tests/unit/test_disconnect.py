"""A client that hangs up: its slot, connection and queued texts are freed at once, not at its deadline."""

import asyncio
import json
import time

import fakeredis

from api.app import create_app
from tests.unit.api_harness import KEYS, announce, run, settings


async def hang_up_after(app, body: dict, seconds: float) -> list[dict]:
    """POST /predict/batch over raw ASGI as uvicorn serves it, the client disconnecting after ``seconds``."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict/batch", "raw_path": b"/predict/batch", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app({**scope, "state": {}}, receive, send)
    return sent


def test_a_client_that_hangs_up_frees_its_slot_and_cancels_its_queued_texts():
    async def scenario():
        s = settings(request_timeout_s=30, max_in_flight=1)  # nobody answers: without hang-up detection, 30 s
        server = fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=server)
        await announce(client, s)  # a live worker that takes nothing
        app = create_app(s, client)
        async with app.router.lifespan_context(app):
            gateway = (await app.state.services.models.route(None)).gateway
            started = asyncio.get_running_loop().time()
            sent = await hang_up_after(app, {"texts": ["a", "b", "c"]}, 0.1)
            took = asyncio.get_running_loop().time() - started
            assert took < 1.0 and gateway.in_flight == 0  # the slot is free at once
            assert sent[0]["status"] == 499  # logged and counted as such; nobody reads it
            [(_, deadline)] = await client.zrange(KEYS.cancelled, 0, -1, withscores=True)
            assert await client.llen(KEYS.requests) == 3  # still queued: workers skip them (the pop script)
            assert deadline > time.time() + 29  # kept until past the request's deadline

    run(scenario())


def test_the_cancelled_set_is_pruned_and_expires_without_any_worker_popping():
    """No worker pops (all down): entries past their time go when the next client hangs up, and the set expires
    with its last entry."""
    async def scenario():
        s = settings(request_timeout_s=30)
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        await client.zadd(KEYS.cancelled, {f"gone-{i}": time.time() - 60 + i for i in range(50)})
        await announce(client, s)
        app = create_app(s, client)
        async with app.router.lifespan_context(app):
            await hang_up_after(app, {"texts": ["a"]}, 0.1)
            [(_, deadline)] = await client.zrange(KEYS.cancelled, 0, -1, withscores=True)
            # EXPIREAT takes whole seconds: the set goes within the second after its last entry's time
            assert deadline < await client.expiretime(KEYS.cancelled) <= deadline + 1

    run(scenario())


def test_the_cancelled_set_lives_as_long_as_its_longest_entry():
    """A later, longer entry extends the set's life; a shorter one cancelled after it must not cut it short (the
    long one's texts, whose client gave up, would run)."""
    async def scenario():
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        await announce(client, settings())
        for timeout in (30, 300, 30):  # REQUEST_TIMEOUT_S is per process: API processes configured differently
            app = create_app(settings(request_timeout_s=timeout), client)
            async with app.router.lifespan_context(app):
                await hang_up_after(app, {"texts": ["a"]}, 0.1)
        longest = max(score for _, score in await client.zrange(KEYS.cancelled, 0, -1, withscores=True))
        assert longest > time.time() + 290
        assert longest < await client.expiretime(KEYS.cancelled) <= longest + 1

    run(scenario())


def test_a_cancel_that_cannot_reach_redis_is_logged_and_the_client_still_freed(caplog):
    """Best effort: Redis away at hang-up time leaves the texts to run; the slot is freed all the same, and the
    debug log says which request could not be marked, with the error."""
    import logging

    import redis

    async def scenario():
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        await announce(client, settings())
        app = create_app(settings(request_timeout_s=30), client)
        async with app.router.lifespan_context(app):
            gateway = (await app.state.services.models.route(None)).gateway

            def unreachable(*args, **kwargs):
                raise redis.ConnectionError("Connection refused")

            client.pipeline = unreachable
            with caplog.at_level(logging.DEBUG, logger="api.gateway"):
                sent = await hang_up_after(app, {"texts": ["a"]}, 0.1)
            assert sent[0]["status"] == 499 and gateway.in_flight == 0
        [record] = [r for r in caplog.records if r.getMessage().startswith("could not mark request")]
        assert record.levelno == logging.DEBUG and record.exc_info[0] is redis.ConnectionError
        request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
        assert record.getMessage() == f"could not mark request {request_id} cancelled"

    run(scenario())


def test_a_client_that_stays_is_answered_and_nothing_is_cancelled():
    from tests.unit.api_harness import running

    async def scenario():
        async with running(settings()) as (http, client):
            r = await http.post("/predict/batch", json={"texts": ["good", "meh"]})
            assert r.status_code == 200
            assert await client.zcard(KEYS.cancelled) == 0

    run(scenario())
