"""One client cannot lock the others out, with the settings as shipped: its share of the queue counts the bytes the
queue counts, it holds at most its share of this process's request slots, and behind a proxy it is who the proxy
says it is, not who it says it is. The real app on fakeredis (the queue's own Lua limits), no worker: admitted
requests stay queued until the test hangs up on them."""

import asyncio
import contextlib
import json
import random

import fakeredis
import httpx
import pytest

from api.app import POOL_HEADROOM, create_app
from api.settings import ApiSettings
from common.settings import load_or_exit
from tests.unit.api_harness import KEYS, announce, run

PROXY = "198.51.100.7"  # the one proxy in front of the API: every request's peer address when behind it


def defaults(**overrides) -> ApiSettings:
    """The settings as shipped (only the key prefix is the tests'), and what a test says a user would change."""
    return ApiSettings(key_prefix=KEYS.prefix, **overrides)


@contextlib.asynccontextmanager
async def api(s: ApiSettings):
    """The app on fakeredis; ``peer(address)``: an HTTP client whose connections come from ``address``."""
    # A pool the size of the app's own (api/app.py): a fake's default one is smaller than MAX_IN_FLIGHT.
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=s.max_in_flight + POOL_HEADROOM)
    await announce(redis, s)  # a live worker that takes nothing: the queue only grows
    app = create_app(s, redis)
    clients: list[httpx.AsyncClient] = []

    def peer(address: str) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                                         base_url="http://api"))
        return clients[-1]

    async with app.router.lifespan_context(app):
        try:
            yield peer, redis
        finally:
            for client in clients:
                await client.aclose()


class Requests:
    """Requests left waiting on the queue (nobody answers them) until the test ends, then hung up on."""

    def __init__(self, redis) -> None:
        self.redis = redis
        self.pending: list[asyncio.Task] = []

    async def queued(self) -> int:
        return await self.redis.llen(KEYS.requests)

    async def send(self, http: httpx.AsyncClient, path: str, body: dict, texts: int,
                   headers: dict | None = None) -> httpx.Response | None:
        """Post ``body`` (``texts`` texts): its response if refused, None once its texts are queued."""
        before = await self.queued()
        task = asyncio.create_task(http.post(path, content=json.dumps(body, ensure_ascii=False).encode(),
                                             headers={"content-type": "application/json", **(headers or {})}))
        for _ in range(1000):
            if task.done():
                return task.result()
            if await self.queued() >= before + texts:
                self.pending.append(task)
                return None
            await asyncio.sleep(0.005)
        raise AssertionError("neither answered nor queued within 5 s")

    async def hang_up(self) -> None:
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)


def test_a_client_of_4_byte_characters_holds_at_most_its_share_of_the_queue_bytes_and_another_gets_in():
    """The queue counts the bytes of its messages: a share counted in characters let one client of emoji hold
    nearly all MAX_QUEUE_BYTES (2 requests of 64 texts of 2,000 emoji: 1,048,434 of 1,048,576) with half its
    share unused, and everyone else got 429."""
    s = defaults()
    body = {"texts": ["\U0001F600" * s.max_text_chars] * s.max_batch_texts}  # 8,000 bytes each in UTF-8

    async def scenario():
        async with api(s) as (peer, redis):
            requests = Requests(redis)
            greedy, other = peer("192.0.2.1"), peer("192.0.2.2")
            try:
                admitted = 0
                while (refused := await requests.send(greedy, "/predict/batch", body, s.max_batch_texts)) is None:
                    admitted += 1
                assert refused.status_code == 429, refused.text
                assert "this client already has" in refused.json()["error"]["message"]
                held = int(await redis.get(KEYS.queued_bytes))
                assert admitted >= 1 and held <= s.max_client_share * s.max_queue_bytes
                assert await requests.send(other, "/predict/batch", body, s.max_batch_texts) is None  # queued
            finally:
                await requests.hang_up()

    run(scenario())


def test_one_clients_512_concurrent_requests_do_not_take_every_request_slot():
    """MAX_IN_FLIGHT (512) slots per process and a share of 1,000 queued texts: 512 one-text requests from one
    client fit its share of the queue; its share of the slots is what leaves some for the others."""
    s = defaults()

    async def scenario():
        async with api(s) as (peer, redis):
            requests = Requests(redis)
            greedy, other = peer("192.0.2.1"), peer("192.0.2.2")
            try:
                bodies = [greedy.post("/predict", json={"text": f"text {i}"}) for i in range(s.max_in_flight)]
                tasks = [asyncio.create_task(body) for body in bodies]
                for _ in range(2000):  # each request queued or refused
                    if sum(t.done() for t in tasks) + await requests.queued() == len(tasks):
                        break
                    await asyncio.sleep(0.005)
                requests.pending += [t for t in tasks if not t.done()]
                refused = [t.result() for t in tasks if t.done()]
                assert refused and all(r.status_code == 429 for r in refused)
                assert "requests in flight" in refused[0].json()["error"]["message"]
                assert len(requests.pending) <= s.max_client_share * s.max_in_flight
                assert await requests.send(other, "/predict", {"text": "mine"}, 1) is None  # admitted and queued
            finally:
                await requests.hang_up()

    run(scenario())


def test_behind_a_proxy_random_values_a_client_puts_in_x_forwarded_for_share_one_share():
    """CLIENT_ID_HEADER=X-Forwarded-For (what a user sets behind one proxy that appends the address it got the
    request from): the client is the rightmost value, the one the proxy appended; what the client sent itself is to
    its left and gives it no fresh share."""
    s = defaults(client_id_header="X-Forwarded-For")
    texts = ["x"] * s.max_batch_texts
    fits = int(s.max_client_share * s.max_queue_depth) // s.max_batch_texts  # full batch calls in one share

    async def scenario():
        async with api(s) as (peer, redis):
            requests = Requests(redis)
            proxy = peer(PROXY)
            try:
                def forged() -> dict:  # what the client sent, then what the proxy appended: its real address
                    return {"X-Forwarded-For": f"10.{random.randrange(256)}.{random.randrange(256)}.1, 203.0.113.5"}

                for _ in range(fits):
                    assert await requests.send(proxy, "/predict/batch", {"texts": texts}, len(texts), forged()) is None
                refused = await requests.send(proxy, "/predict/batch", {"texts": texts}, len(texts), forged())
                assert refused is not None and refused.status_code == 429, refused
                assert "this client already has" in refused.json()["error"]["message"]
                other = {"X-Forwarded-For": "203.0.113.6"}  # another client behind the same proxy: its own share
                assert await requests.send(proxy, "/predict/batch", {"texts": texts}, len(texts), other) is None
            finally:
                await requests.hang_up()

    run(scenario())


def test_a_byte_share_too_small_for_one_full_call_of_4_byte_characters_is_refused_at_start(monkeypatch, capsys):
    """The share counts bytes: half of 1 MiB cannot hold 64 pairs of 2,000 emoji (1,046,528 bytes queued), and such a
    client would get 429 forever. Refused at start, with what works."""
    monkeypatch.setenv("MAX_QUEUE_BYTES", "1048576")
    with pytest.raises(SystemExit):
        load_or_exit(ApiSettings)
    err = capsys.readouterr().err
    assert err.startswith("invalid settings: MAX_CLIENT_SHARE=0.5 leaves one client less than one full-size batch call "
                          "(MAX_BATCH_TEXTS=64 text pairs of MAX_TEXT_CHARS=2000 characters: up to 1046528 bytes "
                          "queued)")
    assert "set MAX_QUEUE_BYTES to at least 2093056" in err
    monkeypatch.setenv("MAX_QUEUE_BYTES", "2093056")  # the fix it names
    assert load_or_exit(ApiSettings).max_queue_bytes == 2093056


def test_proxy_hops_without_a_header_to_count_them_in_are_refused_at_start_with_the_fix_named(monkeypatch, capsys):
    monkeypatch.setenv("TRUSTED_PROXY_HOPS", "2")
    with pytest.raises(SystemExit):
        load_or_exit(ApiSettings)
    assert capsys.readouterr().err == (
        "invalid settings: TRUSTED_PROXY_HOPS=2 has no effect without CLIENT_ID_HEADER (every client would be its peer "
        "address). Fix: set CLIENT_ID_HEADER to the header your proxies append the client's address to (e.g. "
        "X-Forwarded-For), or unset TRUSTED_PROXY_HOPS\n")
    monkeypatch.setenv("CLIENT_ID_HEADER", "X-Forwarded-For")  # the fix it names
    assert load_or_exit(ApiSettings).trusted_proxy_hops == 2
