"""``python -m benchmarks.round_trips``: the API process's CPU per push-and-wait, by the way it talks to Redis.

Each request of the API pushes its texts (a Lua script) and waits for their replies (BLMPOP). This measures what
that costs the client, in-process, with many requests in flight as on a loaded API: 100 concurrent tasks each making
round trips against a real redis-server, the CPU time of this process per round trip (median of the rounds). The
script stands in for the push script and answers at once (it pushes the reply the wait then pops), so what is
measured is the client's side:

- ``raw``: the request path's way (api/round_trip.py on common/redis_factory.py's ``async_waiting_client``): both
  commands written at once on a connection of its lean pool, without socket timeouts;
- ``raw, redis-py pool``: the same on redis-py's own pool (same settings), whose checkouts and returns cost more;
- ``pipeline``: a redis-py pipeline of both on the API's general client (blocking pool, socket timeouts);
- ``two commands``: EVALSHA, then BLMPOP, on the general client.

    python -m benchmarks.round_trips [--rounds 5] [--per-task 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ANSWERING_PUSH = "redis.call('RPUSH', KEYS[1], ARGV[1]) return 1"
TASKS = 100


async def measure(url: str, rounds: int, per_task: int) -> dict[str, list[float]]:
    import redis.asyncio

    from api.round_trip import blmpop, round_trip
    from api.settings import ApiSettings
    from common.redis_factory import async_client, async_waiting_client

    settings = ApiSettings(redis_url=url)
    general = async_client(settings, longest_block_s=settings.request_timeout_s, max_connections=TASKS + 16)
    waiting = async_waiting_client(settings, max_connections=TASKS)
    stock = waiting.connection_pool
    stock_pool = redis.asyncio.ConnectionPool(connection_class=stock.connection_class, max_connections=TASKS,
                                              **stock.connection_kwargs)
    waiting_stock = redis.asyncio.Redis(connection_pool=stock_pool)
    sha = await general.script_load(ANSWERING_PUSH)

    async def raw(key: str) -> None:
        await round_trip(waiting, ("EVALSHA", sha, 1, key, b"reply"), blmpop(key, 1, 1))

    async def raw_stock_pool(key: str) -> None:
        await round_trip(waiting_stock, ("EVALSHA", sha, 1, key, b"reply"), blmpop(key, 1, 1))

    async def pipeline(key: str) -> None:
        async with general.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, 1, key, b"reply")
            pipe.blmpop(1, 1, key, direction="LEFT", count=1)
            await pipe.execute(raise_on_error=False)

    async def two_commands(key: str) -> None:
        await general.evalsha(sha, 1, key, b"reply")
        await general.blmpop(1, 1, key, direction="LEFT", count=1)

    ways: dict[str, Callable[[str], Awaitable[None]]] = {"raw": raw, "raw, redis-py pool": raw_stock_pool,
                                                          "pipeline": pipeline, "two commands": two_commands}
    results: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(rounds):
            for name, way in ways.items():  # alternating: a shared VM's drift weighs on each alike
                async def task(t: int, way: Callable[[str], Awaitable[None]] = way) -> None:
                    for i in range(per_task):
                        await way(f"round-trips:{t}:{i}")

                began = time.process_time()
                await asyncio.gather(*(task(t) for t in range(TASKS)))
                results[name].append(1e6 * (time.process_time() - began) / (TASKS * per_task))
    finally:
        await general.aclose()
        await waiting.aclose()
        await waiting_stock.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    import uvloop

    from benchmarks.environment import cpu_model
    from harness.processes import RedisServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-task", type=int, default=100, help="round trips per task and round")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="round-trips-") as workdir:
        server = RedisServer(Path(workdir))
        try:
            results = uvloop.run(measure(server.url, args.rounds, args.per_task))
        finally:
            server.stop()
    print(f"client CPU per push-and-wait, {TASKS} in flight, median of {args.rounds} rounds ({cpu_model()}):")
    for name, runs in results.items():
        print(f"  {name:>18}: {statistics.median(runs):5.1f} us  [{', '.join(f'{r:.1f}' for r in runs)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
