"""A client that hangs up: its slot, connection and queued texts are freed at once, not at its deadline."""

import asyncio
import json
import time

import fakeredis

from api.app import create_app
from tests.unit.api_harness import KEYS, run, settings


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
        app = create_app(s, client)
        async with app.router.lifespan_context(app):
            gateway = app.state.services.gateway
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
        app = create_app(s, client)
        async with app.router.lifespan_context(app):
            await hang_up_after(app, {"texts": ["a"]}, 0.1)
            [(_, deadline)] = await client.zrange(KEYS.cancelled, 0, -1, withscores=True)
            expires_at = time.time() + await client.ttl(KEYS.cancelled)
            # EXPIREAT takes whole seconds (the entry's time rounded up) and TTL reports whole seconds: ±2 s
            assert deadline - 2 < expires_at <= deadline + 2

    run(scenario())


def test_a_client_that_stays_is_answered_and_nothing_is_cancelled():
    from tests.unit.api_harness import running

    async def scenario():
        async with running(settings()) as (http, client):
            r = await http.post("/predict/batch", json={"texts": ["good", "meh"]})
            assert r.status_code == 200
            assert await client.zcard(KEYS.cancelled) == 0

    run(scenario())
