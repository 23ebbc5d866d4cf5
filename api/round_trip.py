"""The request path's Redis round trips (api/gateway.py): commands written at once on one connection of the waiting
client's pool (common/redis_factory.py ``async_waiting_client``), their replies read in order.

Not redis-py's command methods or its pipeline: each request makes one such round trip (its push and a first wait
for its replies) and often no other, and those layers cost more than the round trip's own I/O. Measured by
``python -m benchmarks.round_trips`` (100 push-and-wait round trips in flight on a real Redis, AMD EPYC): 27 us of
client CPU each here, 56 us as a redis-py pipeline on the client the rest of the API uses (its pool waits under a
timer, Python 3.11 sends under ``asyncio.wait_for``: a task per send, and reads under a timer each), 82 us as two
commands. The connection's
own send and read are redis-py's: its parser, its error replies, its disconnect when a read is cut off (a cancelled
request), so that a late reply can never be read as the next request's."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio


async def round_trip(client: redis.asyncio.Redis, *commands: tuple[Any, ...]) -> list[Any]:
    """Send ``commands`` in one write on one connection of ``client``'s pool and read their replies: each a value,
    or a command's error reply (a ``redis.ResponseError``, which the others' replies still follow). A connection
    error is raised (never sent again: see common/redis_factory.py)."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except redis.ResponseError as error:  # read whole: the connection stays in step
                replies.append(error)
        return replies
    finally:
        await pool.release(connection)


def blmpop(key: str, wait_s: float, count: int) -> tuple[Any, ...]:
    """BLMPOP of up to ``count`` items from the head of ``key``, waiting up to ``wait_s`` (Redis takes fractional
    seconds): its reply is None (none came) or ``[key, [items...]]``."""
    return ("BLMPOP", wait_s, 1, key, "LEFT", "COUNT", count)
