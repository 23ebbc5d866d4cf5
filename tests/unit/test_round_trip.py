"""The request path's raw round trips (api/round_trip.py): replies in order, an error reply in its place with the
others still read, and the connection back in its pool however it ends."""

import asyncio

import fakeredis
import pytest
import redis

from api.round_trip import blmpop, round_trip


def run_on_fake(scenario):
    async def main():
        client = fakeredis.FakeAsyncRedis()
        try:
            return await scenario(client), client.connection_pool
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_replies_come_in_the_order_of_the_commands():
    async def scenario(client):
        return await round_trip(client, ("RPUSH", "k", b"a", b"b"), blmpop("k", 0.1, 5), blmpop("empty", 0.01, 1))

    replies, pool = run_on_fake(scenario)
    assert replies == [2, [b"k", [b"a", b"b"]], None]


def test_an_error_reply_takes_its_place_and_the_replies_after_it_are_still_read():
    async def scenario(client):
        await client.set("text", "x")
        first = await round_trip(client, ("RPUSH", "text", b"a"), ("RPUSH", "list", b"b"))
        second = await round_trip(client, ("LLEN", "list"))  # the same connection, still in step
        return first, second

    (first, second), _ = run_on_fake(scenario)
    assert isinstance(first[0], redis.ResponseError) and "WRONGTYPE" in str(first[0])
    assert first[1] == 1 and second == [1]


def test_the_connection_goes_back_to_the_pool_after_an_answer_or_a_cut_off_wait():
    async def main():
        client = fakeredis.FakeAsyncRedis(max_connections=1)  # a pool that raises when its connection is not back
        try:
            for _ in range(3):
                assert await round_trip(client, ("PING",)) == [b"PONG"]
                waiting = asyncio.create_task(round_trip(client, blmpop("never", 5, 1)))
                await asyncio.sleep(0.05)
                waiting.cancel()  # a client hung up
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            return await round_trip(client, ("RPUSH", "k", b"a"), blmpop("k", 1, 1))
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [1, [b"k", [b"a"]]]
