"""Watching the cluster from an API process: queue depth, live workers, the workers' counters and batch
histograms — all read from Redis, so any API process sees the whole cluster. Used by ``/readyz`` and
``/metrics``; the request path (api/gateway.py) never needs it."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio

from api.redis_errors import UnavailableOnRedisError
from common.batch_metrics import BATCH_HISTOGRAM_NAMES
from common.keys import Keys
from common.model_card import BACKEND_CHOICE_FIELD
from common.model_card import FIELDS as CARD_FIELDS
from common.scripts import Scripts, WorkerState, worker_states

# What the catalog (api/catalog.py) reads of each live worker's heartbeat: its model card, batching settings and
# BACKEND=auto's decision (the table /info shows).
DESCRIBED_FIELDS = (*CARD_FIELDS, "max_batch_size", "max_batch_tokens", BACKEND_CHOICE_FIELD)


def backend_counts(described: list[dict[str, str]]) -> dict[str, int]:
    """How many of the described workers run each backend (BACKEND=auto: the one each chose)."""
    counts: dict[str, int] = {}
    for fields in described:
        name = fields.get("backend", "unknown")  # expired between the two reads
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    queue_depth: int = 0
    live_workers: int = 0
    stalled_workers: int = 0
    backends: dict[str, int] = field(default_factory=dict)  # live workers per backend they run (heartbeat field)
    worker_counts: dict[str, int] = field(default_factory=dict)  # the stats hash (common/counters.py)
    batch_histograms: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> its hash


class ClusterView:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._unavailable = UnavailableOnRedisError(client)
        self._scripts = Scripts(client, keys)

    async def queue_depth(self) -> int:
        async with self._unavailable:
            return int(await self._redis.llen(self._keys.requests))

    async def workers(self) -> list[WorkerState]:
        async with self._unavailable:
            return worker_states(await self._scripts.worker_states())

    async def live_workers(self) -> list[str]:
        """Workers that beat and make progress (registry membership alone proves nothing; see WorkerState)."""
        return [w.worker_id for w in await self.workers() if w.live]

    async def described(self, worker_ids: list[str]) -> list[dict[str, str]]:
        """DESCRIBED_FIELDS of each worker's heartbeat, those it has (none if it expired since it was listed)."""
        if not worker_ids:
            return []
        async with self._unavailable:
            pipe = self._redis.pipeline(transaction=False)
            for worker_id in worker_ids:
                pipe.hmget(self._keys.heartbeat(worker_id), DESCRIBED_FIELDS)
            found = await pipe.execute()
        return [{name: value.decode() for name, value in zip(DESCRIBED_FIELDS, values) if value is not None}
                for values in found]

    async def described_workers(self) -> list[dict[str, str]]:
        """``described`` for every live worker, in two round trips."""
        return await self.described(await self.live_workers())

    async def snapshot(self) -> ClusterSnapshot:
        """Everything ``/metrics`` shows of the cluster, read in two round trips."""
        async with self._unavailable:
            pipe = self._redis.pipeline(transaction=False)
            pipe.llen(self._keys.requests)
            pipe.hgetall(self._keys.stats)
            for name in BATCH_HISTOGRAM_NAMES:
                pipe.hgetall(self._keys.histogram(name))
            depth, stats, *histograms = await pipe.execute()
        workers = await self.workers()
        return ClusterSnapshot(
            queue_depth=int(depth),
            live_workers=sum(w.live for w in workers),
            backends=backend_counts(await self.described([w.worker_id for w in workers if w.live])),
            stalled_workers=sum(w.stalled for w in workers),
            worker_counts={k.decode(): int(v) for k, v in stats.items()},
            batch_histograms={name: {k.decode(): float(v) for k, v in raw.items()}
                              for name, raw in zip(BATCH_HISTOGRAM_NAMES, histograms)},
        )
