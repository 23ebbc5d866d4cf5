"""The producer side of the queue: admit, enqueue, wait for replies. No HTTP in here.

Flow of one request: admission (per-process in-flight limit) -> N work items (one per text) pushed by
a Lua script that refuses when the queue is deeper than the limit (check and push in one atomic round
trip) -> BLMPOP on the request's own reply key until all N replies arrived or the deadline passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
import redis.asyncio

from common.batch_metrics import BATCH_HISTOGRAM_NAMES
from common.keys import Keys
from common.protocol import ErrorCode, ProtocolError, Reply, WorkItem, decode_reply, encode_item, new_request_id
from common.settings import ApiSettings
from api.errors import ErrorKind, ServiceError

log = logging.getLogger(__name__)

# KEYS[1] = request list; ARGV[1] = depth limit; ARGV[2..] = items. Returns the new length, or -1 if
# the items would take the queue past the limit (nothing pushed).
PUSH_IF_ROOM = """
local depth = redis.call('LLEN', KEYS[1])
if depth + #ARGV - 1 > tonumber(ARGV[1]) then return -1 end
return redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
"""

# BLMPOP's timeout must be positive; Redis measures it in (fractional) seconds.
_MIN_WAIT_S = 0.01


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    replies: list[Reply]  # in input order

    @property
    def queue_ms(self) -> float:
        return max(r.queue_ms for r in self.replies)

    @property
    def inference_ms(self) -> float:
        return max(r.inference_ms for r in self.replies)


class Gateway:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: ApiSettings,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._clock = clock
        self._push = client.register_script(PUSH_IF_ROOM)
        self.in_flight = 0
        self.last_queue_depth = 0

    async def classify(self, texts: Sequence[str]) -> Outcome:
        s = self._settings
        if self.in_flight >= s.max_in_flight:
            raise ServiceError(ErrorKind.OVERLOADED,
                               f"this API process is already serving {s.max_in_flight} requests; retry later",
                               retry_after_s=s.retry_after_s)
        self.in_flight += 1
        try:
            return await self._classify(texts)
        finally:
            self.in_flight -= 1

    async def _classify(self, texts: Sequence[str]) -> Outcome:
        s = self._settings
        request_id = new_request_id()
        now = self._clock()
        deadline = now + s.request_timeout_s
        payloads = [encode_item(WorkItem(request_id, i, text, deadline, now)) for i, text in enumerate(texts)]
        try:
            depth = await self._push(keys=[self._keys.requests], args=[s.max_queue_depth, *payloads])
        except redis.RedisError as exc:
            raise await self._failed(exc) from None
        if depth < 0:
            raise ServiceError(ErrorKind.OVERLOADED,
                               f"the queue is full (limit {s.max_queue_depth} texts); retry later",
                               retry_after_s=s.retry_after_s)
        self.last_queue_depth = int(depth)
        replies = await self._collect(request_id, len(texts), deadline)
        return Outcome(request_id, replies)

    async def _collect(self, request_id: str, count: int, deadline: float) -> list[Reply]:
        key = self._keys.reply(request_id)
        got: dict[int, Reply] = {}
        while len(got) < count:
            remaining = deadline - self._clock()
            if remaining <= 0:
                await self._abandon(key)
                raise ServiceError(ErrorKind.TIMEOUT,
                                   f"no answer within {self._settings.request_timeout_s:g}s; the workers are "
                                   "busy or absent")
            try:
                popped = await self._redis.blmpop(max(remaining, _MIN_WAIT_S), 1, key,
                                                  direction="LEFT", count=count - len(got))
            except redis.RedisError as exc:
                raise await self._failed(exc) from None
            if popped is None:
                continue  # timed out: the loop head turns it into a 504
            for raw in popped[1]:
                self._accept(raw, request_id, count, got)
        return [got[i] for i in range(count)]

    @staticmethod
    def _accept(raw: bytes, request_id: str, count: int, got: dict[int, Reply]) -> None:
        try:
            reply = decode_reply(raw)
        except ProtocolError as exc:
            log.error("unreadable reply for request %s: %s", request_id, exc)
            return
        # Reply keys are per request, but a reply is only trusted if it says it is ours.
        if reply.request_id != request_id or not 0 <= reply.index < count:
            log.error("dropping a reply for %s/%d found on the key of %s", reply.request_id, reply.index, request_id)
            return
        got.setdefault(reply.index, reply)  # at-least-once delivery: the first answer wins

    async def _abandon(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except redis.RedisError:
            pass  # replies that land later expire on their own (REPLY_TTL_S)

    async def _failed(self, exc: redis.RedisError) -> ServiceError:
        """Map a Redis failure to 503. A broken connection usually means the server went away (or restarted,
        empty): drop every idle pooled connection too, so that requests after it returns get fresh ones
        instead of failing one dead socket at a time. (Commands are never retried: see redis_factory.)"""
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            try:
                await self._redis.connection_pool.disconnect(inuse_connections=False)
            except Exception:  # noqa: BLE001 - best effort; the 503 is what matters
                log.debug("could not reset the connection pool", exc_info=True)
        return _unavailable(exc)

    async def queue_depth(self) -> int:
        try:
            depth = int(await self._redis.llen(self._keys.requests))
        except redis.RedisError as exc:
            raise await self._failed(exc) from None
        self.last_queue_depth = depth
        return depth

    async def worker_stats(self) -> dict[str, int]:
        try:
            raw = await self._redis.hgetall(self._keys.stats)
        except redis.RedisError as exc:
            raise await self._failed(exc) from None
        return {k.decode(): int(v) for k, v in raw.items()}

    async def batch_histograms(self) -> dict[str, dict[str, float]]:
        """The batch histogram hashes workers keep in Redis (common/batch_metrics.py), by histogram name."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name in BATCH_HISTOGRAM_NAMES:
                pipe.hgetall(self._keys.histogram(name))
            hashes = await pipe.execute()
        except redis.RedisError as exc:
            raise await self._failed(exc) from None
        return {name: {k.decode(): float(v) for k, v in raw.items()} for name, raw in zip(BATCH_HISTOGRAM_NAMES, hashes)}

    async def live_workers(self) -> list[str]:
        """Workers whose heartbeat key exists (registry membership alone proves nothing)."""
        try:
            members = sorted(m.decode() for m in await self._redis.smembers(self._keys.workers))
            pipe = self._redis.pipeline(transaction=False)
            for member in members:
                pipe.exists(self._keys.heartbeat(member))
            alive = await pipe.execute() if members else []
        except redis.RedisError as exc:
            raise await self._failed(exc) from None
        return [m for m, a in zip(members, alive) if a]


def worker_error(reply: Reply) -> ServiceError:
    assert reply.error is not None
    if reply.error.code == ErrorCode.MALFORMED:
        message = "a worker could not read the request (API and worker versions differ?)"
    elif reply.error.code == ErrorCode.POISON:
        message = f"this text was set aside: {reply.error.message}"
    else:
        message = "the model failed while processing this text"
    return ServiceError(ErrorKind.WORKER_ERROR, f"{message} [{reply.error.code}]")


def _unavailable(exc: redis.RedisError) -> ServiceError:
    log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceError(ErrorKind.UNAVAILABLE, "the request queue is unavailable; retry later", retry_after_s=1)
