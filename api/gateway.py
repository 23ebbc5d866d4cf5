"""The request path of the queue's producer side: admit, enqueue, wait, and turn the replies into predictions
or one error. No HTTP in here.

Flow of one request: the response cache, if on (texts answered before are answered from it) -> N work items (one
per text the cache did not answer), encoded -> admission (this process's request slots, and the client's share of
them and of the queue in those items' bytes: api/admission.py) -> the items pushed by a Lua script that refuses
when the queue is deeper than the limit (check and push in one atomic step), pipelined with a first BLMPOP on
the request's own reply key (one round trip) -> more BLMPOPs until all N replies arrived or the deadline passed ->
each text's ranked labels in input order, or the error a worker reported. A caller that cancels (its client hung
up) frees its slot at once and marks the request cancelled: workers skip its texts that have not started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from api.admission import Admission
from api.cache import ResponseCache
from api.errors import ErrorKind, ServiceError
from api.redis_errors import UnavailableOnRedisError
from api.round_trip import blmpop, round_trip
from api.settings import ApiSettings
from common.clock import RedisClock
from common.keys import Keys
from common.options import Query
from common.protocol import (
    ErrorCode,
    Prediction,
    ProtocolError,
    Reply,
    WorkItem,
    decode_reply,
    encode_item,
    new_request_id,
)
from common.redis_factory import BLOCKING_READ_MARGIN_S
from common.scripts import Scripts

log = logging.getLogger(__name__)

# BLMPOP's timeout must be positive; Redis measures it in (fractional) seconds.
_MIN_WAIT_S = 0.01
# The longest wait pipelined with the push (then BLMPOPs of their own, up to the deadline). Redis runs that wait even
# when the push failed with an error reply (out of memory, a read-only replica after a failover, NOSCRIPT after a
# restart): nothing was queued, and the wait blocks for replies that never come. Its bound is what such a failure
# costs before its 503 (or, for NOSCRIPT, the push sent again); most requests are answered well within it, in the
# one round trip.
FIRST_WAIT_S = 1.0
# A cancellation is kept this long past its request's deadline, after which no worker runs its texts anyway
# (both sides compare on Redis's clock, common/clock.py, to within a round trip): workers then drop the entry.
CANCELLED_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    predictions: list[list[Prediction]]  # each text's ranked labels, in input order
    queue_ms: float  # enqueue -> picked up by a worker, for the request's slowest text (0: none queued)
    inference_ms: float  # the forward pass(es) that answered it, the slowest
    cached: int = 0  # texts answered from the response cache


class Gateway:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: ApiSettings, *,
                 on_enqueued: Callable[[int], object] = lambda texts: None,
                 on_in_flight: Callable[[int], object] = lambda count: None,
                 clock: Callable[[], float] = time.time,
                 cache: ResponseCache | None = None,
                 answers: Callable[[], str | None] = lambda: None,
                 trace_context: Callable[[], str | None] | None = None,
                 waiting: redis.asyncio.Redis | None = None) -> None:
        """``cache``: the response cache, if on; ``answers``: what the live workers answer with (their cards'
        ``answers``, None while unknown or mixed), which the cache is looked up under; ``trace_context``: with
        tracing on, the ``traceparent`` of the request in progress, which its work items carry; ``waiting``: the
        client of the requests' pushes and waits (common/redis_factory.py ``async_waiting_client``: no socket
        timeout, each request's deadline bounds its round trips), None: ``client``."""
        self._redis = client
        self._waiting = waiting or client
        self._keys = keys
        self._unavailable = UnavailableOnRedisError(client, self._waiting)
        self._settings = settings
        self._on_enqueued = on_enqueued  # e.g. a metrics counter's inc
        self._clock = clock
        self._scripts = Scripts(client, keys)
        # Whether the push script is known to be in Redis: until then a pipelined push would fail (NOSCRIPT) and its
        # wait block for FIRST_WAIT_S, so the first push goes on its own (see _push_and_wait).
        self._script_loaded = False
        self._admission = Admission(settings, on_in_flight)
        self._cache = cache
        self._answers = answers
        self._trace_context = trace_context

    @property
    def in_flight(self) -> int:
        return self._admission.in_flight

    async def classify(self, queries: Sequence[Query], client: str = "", *, request_id: str | None = None,
                       client_request_id: str | None = None) -> Outcome:
        """Classify ``queries`` for ``client`` (who holds a share of the queue: see api/admission.py). ``request_id``:
        the id to queue them under, from new_request_id() (it names the reply key: never a client's); None, a new
        one. ``client_request_id``: the client's own id for the request, which the work items carry for the workers'
        logs (api/access.py)."""
        request_id = request_id or new_request_id()
        answers = self._answers() if self._cache is not None else None
        known = await self._cache.lookup(answers, queries) if self._cache is not None and answers else None
        if known is None:
            return await self._run(queries, client, request_id, client_request_id)
        positions = [i for i, hit in enumerate(known) if hit is None]
        if not positions:
            return Outcome(request_id, known, queue_ms=0.0, inference_ms=0.0, cached=len(queries))  # type: ignore[arg-type]
        asked = [queries[i] for i in positions]
        ran = await self._run(asked, client, request_id, client_request_id, positions)
        fresh = iter(ran.predictions)
        merged = [hit if hit is not None else next(fresh) for hit in known]
        return Outcome(ran.request_id, merged, ran.queue_ms, ran.inference_ms, cached=len(queries) - len(asked))

    async def _run(self, queries: Sequence[Query], client: str, request_id: str, client_request_id: str | None,
                   positions: Sequence[int] | None = None) -> Outcome:
        """Queue ``queries`` and wait for their answers (kept in the cache, if on). ``positions``: where each query
        is in the client's request (errors name it), if not in the same order."""
        await self.sync_clock()
        now = self._clock()
        deadline = now + self._settings.request_timeout_s
        trace = self._trace_context() if self._trace_context is not None else None
        # Encoded before admission, once: the client's share counts the bytes these messages take in the queue.
        payloads = [encode_item(WorkItem(request_id, i, q.text, deadline, now, q.text_pair, q.options, trace,
                                         client_request_id)) for i, q in enumerate(queries)]
        with self._admission.admit(client, [len(payload) for payload in payloads]):
            try:
                # Redis answers every wait by the deadline: past it (and the margin for its timer tick), it is gone.
                async with asyncio.timeout(deadline - now + BLOCKING_READ_MARGIN_S):
                    first = await self._enqueue(request_id, payloads, deadline)
                    replies = await self._collect(request_id, len(queries), deadline, first)
            except asyncio.CancelledError:
                # The caller gave up (its client hung up): the texts not started yet are not worth running.
                await self._cancel(request_id, deadline)
                raise
            except TimeoutError:
                async with self._unavailable:  # the 503 of a Redis that stopped answering, its pools reset
                    raise redis.TimeoutError("no answer from Redis by the request's deadline") from None
        outcome = _outcome(request_id, replies, positions)
        if self._cache is not None:
            await self._cache.store([(r.model, q, ranked) for q, r, ranked in zip(queries, replies, outcome.predictions)
                                     if r.model])
        return outcome

    async def sync_clock(self) -> None:
        """Make sure deadlines are stamped on Redis's clock: if this process has not measured its offset to it yet
        (Redis away since the start), measure it now; 503 if it cannot. Stamped on this host's clock instead, a
        deadline is off by however far that clock is: workers drop the texts as expired (504s), or run them long
        after the client got its 504."""
        clock = self._clock
        if not isinstance(clock, RedisClock) or clock.synced:
            return
        try:
            async with self._unavailable:
                await clock.sync_async(self._redis.time)
        except ServiceError:
            raise ServiceError(ErrorKind.UNAVAILABLE, "the request queue is unavailable: this API process could not "
                               "read Redis's clock yet, which deadlines are measured on; retry later",
                               retry_after_s=1) from None

    async def _enqueue(self, request_id: str, payloads: list[bytes], deadline: float) -> list[bytes]:
        """Push the encoded work items, or refuse with 429 if the queue is full: the raw replies that came with the
        push."""
        s = self._settings
        async with self._unavailable:
            depth, popped = await self._push_and_wait(request_id, payloads, deadline)
            _raise_error_reply(depth)
        if depth < 0:  # what the wait popped is the refusal marker
            limit = f"{s.max_queue_depth} texts" if depth == -1 else f"{s.max_queue_bytes} bytes of text"
            raise ServiceError(ErrorKind.OVERLOADED, f"the queue is full (limit {limit}); retry later",
                               retry_after_s=s.retry_after_s)
        self._on_enqueued(len(payloads))
        async with self._unavailable:
            _raise_error_reply(popped)  # queued (and counted), and a 503 all the same
        return popped[1] if popped else []

    async def _push_and_wait(self, request_id: str, payloads: list[bytes], deadline: float) -> tuple[Any, Any]:
        """The push and a first wait for its replies, in one round trip: the push's answer (the queue's new length;
        -1 or -2, refused; or an error reply) and the wait's (None: no reply within FIRST_WAIT_S)."""
        s = self._settings
        if self._script_loaded:
            wait_s = max(min(deadline - self._clock(), FIRST_WAIT_S), _MIN_WAIT_S)
            push = self._scripts.push_if_room_command(request_id, payloads, s.max_queue_depth, s.max_queue_bytes)
            depth, popped = await round_trip(self._waiting, push,
                                             blmpop(self._keys.reply(request_id), wait_s, len(payloads)))
            if not isinstance(depth, redis.exceptions.NoScriptError):
                return depth, popped
        # This process's first push, or Redis restarted or flushed its scripts (NOSCRIPT: nothing was pushed, so
        # pushing again cannot queue the texts twice): this call loads the script, and _collect waits as usual.
        depth = await self._scripts.push_if_room(request_id, payloads, s.max_queue_depth, s.max_queue_bytes)
        self._script_loaded = True
        return depth, None

    async def _collect(self, request_id: str, count: int, deadline: float, first: list[bytes]) -> list[Reply]:
        """The request's ``count`` replies: ``first`` (those that came with the push), then what BLMPOP brings
        until the deadline (then 504)."""
        key = self._keys.reply(request_id)
        got: dict[int, Reply] = {}
        for raw in first:
            _accept(raw, request_id, count, got)
        while len(got) < count:
            remaining = deadline - self._clock()
            if remaining <= 0:
                await self._abandon(key)
                raise ServiceError(ErrorKind.TIMEOUT,
                                   f"no answer within {self._settings.request_timeout_s:g}s; the workers are "
                                   "busy or absent")
            async with self._unavailable:
                [popped] = await round_trip(self._waiting, blmpop(key, max(remaining, _MIN_WAIT_S), count - len(got)))
                _raise_error_reply(popped)
            if popped is None:
                continue  # timed out: the loop head turns it into a 504
            for raw in popped[1]:
                _accept(raw, request_id, count, got)
        return [got[i] for i in range(count)]

    async def _cancel(self, request_id: str, deadline: float) -> None:
        """Mark the request cancelled until its deadline: workers skip its queued texts. The replies of texts
        already running land after this and expire unread (REPLY_TTL_S). Best effort: if Redis is away, its texts
        run too.

        Entries past their time are dropped here as well as by the workers' pops, and the set expires with its
        last entry: with no worker popping (all down, or an idle queue) hung-up clients must not grow it forever.
        Every command is idempotent, so a retried transaction does no harm."""
        until = deadline + CANCELLED_MARGIN_S
        key = self._keys.cancelled
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", f"{self._clock():.3f}")
                pipe.zadd(key, {request_id: until})
                pipe.expireat(key, int(until) + 1, nx=True)  # NX: a set without an expiry gets one...
                pipe.expireat(key, int(until) + 1, gt=True)  # ...GT: a later entry pushes it back
                await pipe.execute()
        except (redis.RedisError, asyncio.CancelledError):
            log.debug("could not mark request %s cancelled", request_id, exc_info=True)

    async def _abandon(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except redis.RedisError:
            pass  # replies that land later expire on their own (REPLY_TTL_S)


def _raise_error_reply(answer: object) -> None:
    """Raise ``answer`` if it is a pipelined command's error reply."""
    if isinstance(answer, redis.RedisError):
        raise answer


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


def _outcome(request_id: str, replies: list[Reply], positions: Sequence[int] | None = None) -> Outcome:
    """The request's answer: every text's ranked labels, or the first error a worker reported for one of them."""
    predictions = []
    for reply in replies:
        if reply.error is not None:
            raise worker_error(reply, reply.index if positions is None else positions[reply.index])
        assert reply.predictions is not None  # decode_reply: a reply holds one or the other
        predictions.append(reply.predictions)
    return Outcome(request_id, predictions, queue_ms=max(r.queue_ms for r in replies),
                   inference_ms=max(r.inference_ms for r in replies))


def worker_error(reply: Reply, position: int) -> ServiceError:
    """The error a worker reported for the text at ``position`` of its request."""
    assert reply.error is not None
    if reply.error.code == ErrorCode.INVALID_INPUT:  # the request asked what the model cannot do: the client's to fix
        return ServiceError(ErrorKind.VALIDATION, f"text {position}: {reply.error.message}")
    if reply.error.code == ErrorCode.MALFORMED:
        message = "a worker could not read the request (API and worker versions differ?)"
    elif reply.error.code == ErrorCode.POISON:
        message = f"this text was set aside: {reply.error.message}"
    else:
        message = "the model failed while processing this text"
    return ServiceError(ErrorKind.WORKER_ERROR, f"{message} [{reply.error.code}]")
