"""The API's Redis clients against a real redis-server: a bounded pool that refuses fast when exhausted, no
client-side retries (a re-sent command could duplicate or lose queue items), and the requests' lean pool that hands
out only clean, connected connections."""

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import redis.asyncio

from api.round_trip import blmpop, round_trip
from api.settings import ApiSettings
from common.redis_factory import BLOCKING_READ_MARGIN_S, async_client, async_waiting_client, sync_client
from tests.helpers import RedisServer, free_port


def settings(redis_server) -> ApiSettings:
    return ApiSettings(redis_url=redis_server.url, redis_connect_timeout_s=0.3)


def test_an_exhausted_pool_refuses_within_the_connect_timeout(redis_server, key_prefix):
    async def scenario():
        client = async_client(settings(redis_server), longest_block_s=2, max_connections=2)
        waits = [asyncio.create_task(client.blpop([f"{key_prefix}:nothing"], timeout=1.5)) for _ in range(2)]
        await asyncio.sleep(0.2)  # both connections are blocked in BLPOP
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            await client.ping()  # a third command finds no connection
        refused_after = time.monotonic() - started
        assert await asyncio.gather(*waits) == [None, None]
        assert await client.ping() is True  # connections came back to the pool
        await client.aclose()
        return refused_after

    assert 0.25 < asyncio.run(scenario()) < 1.0


def test_a_command_on_a_dropped_connection_fails_and_is_not_resent(redis_server, key_prefix):
    admin = redis.Redis.from_url(redis_server.url)

    async def scenario():
        client = async_client(settings(redis_server), longest_block_s=5, max_connections=4)
        await client.client_setname(f"{key_prefix}-api")  # a fresh pool: this is the connection BLPOP reuses
        wait = asyncio.create_task(client.blpop([f"{key_prefix}:nothing"], timeout=3))
        await asyncio.sleep(0.2)
        killed = [c for c in admin.client_list() if c["name"] == f"{key_prefix}-api"]
        for connection in killed:
            admin.client_kill_filter(_id=connection["id"])
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            await wait
        failed_after = time.monotonic() - started
        await client.aclose()
        return len(killed), failed_after

    killed, failed_after = asyncio.run(scenario())
    assert killed == 1 and failed_after < 1.0  # at once: not re-sent to block another 3 s


def test_a_server_that_stops_answering_times_out_after_the_longest_wait_plus_the_margin():
    """A Redis that hangs (a frozen VM, a stalled network) must not hang a worker or an API request forever."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    s = ApiSettings(redis_url=url)

    async def api_ping():
        client = async_client(s, longest_block_s=0.0, max_connections=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    def worker_ping():
        sync_client(s, longest_block_s=0.0).ping()

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(1) as pool:
            worker = pool.submit(worker_ping)
            with pytest.raises(redis.TimeoutError):
                asyncio.run(api_ping())
            with pytest.raises(redis.TimeoutError):
                worker.result()
    finally:
        silent.close()
    assert BLOCKING_READ_MARGIN_S <= time.monotonic() - started < BLOCKING_READ_MARGIN_S + 1.5


def waiting_pool_scenario(redis_server, scenario):
    """Run ``scenario(client, admin)`` on the requests' client (one connection: each round trip reuses it)."""
    async def main():
        client = async_waiting_client(settings(redis_server), max_connections=1)
        admin = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            return await scenario(client, admin)
        finally:
            await client.aclose()
            await admin.aclose()

    return asyncio.run(main())


def test_the_requests_pool_reuses_its_connection_and_replaces_one_the_server_closed(redis_server, key_prefix):
    """A connection Redis closed while idle (a restart, a CLIENT KILL, an idle timeout) is connected afresh when
    taken from the pool: the next request is answered, not failed."""
    async def scenario(client, admin):
        await round_trip(client, ("CLIENT", "SETNAME", f"{key_prefix}-waits"))
        [first_id] = await round_trip(client, ("CLIENT", "ID"))
        assert await round_trip(client, ("CLIENT", "ID")) == [first_id]  # the same connection, kept
        await admin.client_kill_filter(_id=first_id)
        await asyncio.sleep(0.1)  # the close reaches the idle connection
        [second_id] = await round_trip(client, ("CLIENT", "ID"))
        return first_id, second_id, await round_trip(client, ("RPUSH", f"{key_prefix}:k", b"a"),
                                                     blmpop(f"{key_prefix}:k", 1, 1))

    first_id, second_id, replies = waiting_pool_scenario(redis_server, scenario)
    assert second_id != first_id and replies == [1, [f"{key_prefix}:k".encode(), [b"a"]]]


def test_the_requests_pool_never_hands_out_a_connection_with_a_reply_nobody_read(redis_server, key_prefix):
    """A reply left unread on a returned connection would be read as the next command's answer: such a connection
    is connected afresh instead, and the next request reads its own reply."""
    async def scenario(client, admin):
        pool = client.connection_pool
        connection = await pool.get_connection()
        await connection.send_command("ECHO", "stale")  # sent, never read
        await asyncio.sleep(0.1)  # the reply is in the socket
        await pool.release(connection)
        return await round_trip(client, ("ECHO", "fresh"))

    assert waiting_pool_scenario(redis_server, scenario) == [b"fresh"]


def test_a_cut_off_wait_leaves_no_late_reply_for_the_next_request(redis_server, key_prefix):
    """A request cancelled during its BLMPOP (its client hung up): an item pushed after it must not reach the next
    request on the same pool, which waits on another key."""
    async def scenario(client, admin):
        waiting = asyncio.create_task(round_trip(client, blmpop(f"{key_prefix}:gone", 5, 1)))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await admin.rpush(f"{key_prefix}:gone", b"late")
        return await round_trip(client, blmpop(f"{key_prefix}:mine", 0.2, 1)), await admin.llen(f"{key_prefix}:gone")

    assert waiting_pool_scenario(redis_server, scenario) == ([None], 1)  # nothing read; the late item still queued


def test_a_failed_connect_gives_its_connection_back_to_the_requests_pool(tmp_path):
    """Redis down: each request fails with the connection error itself (a 503), none uses up the pool's only
    connection, and once Redis is back the next request is answered."""
    port = free_port()

    async def scenario():
        client = async_waiting_client(ApiSettings(redis_url=f"redis://127.0.0.1:{port}/0",
                                                  redis_connect_timeout_s=0.3), max_connections=1)
        errors = []
        for _ in range(2):
            with pytest.raises(redis.ConnectionError) as failed:
                await round_trip(client, ("PING",))
            errors.append(failed.value)
        server = RedisServer.on_port(port, tmp_path)
        try:
            return errors, await round_trip(client, ("PING",))
        finally:
            await client.aclose()
            server.stop()

    errors, answer = asyncio.run(scenario())
    assert not any(isinstance(error, redis.exceptions.MaxConnectionsError) for error in errors), errors
    assert answer == [b"PONG"]
