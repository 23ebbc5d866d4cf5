"""The response cache (``CACHE_TTL_S`` > 0): answers to texts seen before, kept in Redis for a while, so that the
same review or headline sent again is answered without queueing or inference.

An entry is keyed by a hash of what decides its answer — the model that computed it (its card's ``answers``: weights,
tokenizer, token limit, backend), the options, the text and its pair — so a new model, backend or option never
meets an old answer. Entries expire after CACHE_TTL_S; ``CACHE_REDIS_URL`` can put them on a Redis of their own.
The cache is an optimisation: when its Redis fails, a request is answered by the workers as if it had missed
(counted in ``sentimentalyzer_cache_errors_total``), never failed because of it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

import redis
import redis.asyncio

from common.keys import Keys
from common.options import Options, Query
from common.protocol import Prediction, ProtocolError, decode_cached, encode_cached

log = logging.getLogger(__name__)


def cache_digest(answers: str, query: Query) -> str:
    """What an entry is keyed by. Each part is length-prefixed: no two different inputs hash the same string."""
    o: Options = query.options
    parts = (answers, str(o.top_k), str(o.function), str(o.truncate), o.truncation_side, query.text,
             "" if query.text_pair is None else "\x01" + query.text_pair)
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


class ResponseCache:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, ttl_s: int, *,
                 on_error: Callable[[], object] = lambda: None) -> None:
        self._redis = client
        self._keys = keys
        self.ttl_s = ttl_s
        self._on_error = on_error  # e.g. a metrics counter's inc

    async def lookup(self, answers: str, queries: Sequence[Query]) -> list[list[Prediction] | None]:
        """The cached answer of each query (None: a miss), in one round trip."""
        names = [self._keys.cached(cache_digest(answers, q)) for q in queries]
        try:
            found = await self._redis.mget(names)
        except redis.RedisError as exc:
            self._failed("read", exc)
            return [None] * len(queries)
        return [self._decode(raw) for raw in found]

    async def store(self, entries: Sequence[tuple[str, Query, list[Prediction]]]) -> None:
        """Keep each (answers, query, ranked labels) for CACHE_TTL_S, in one round trip. SET is idempotent, but it is
        not retried either: a lost write is a later miss."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for answers, query, ranked in entries:
            pipe.set(self._keys.cached(cache_digest(answers, query)), encode_cached(ranked), ex=self.ttl_s)
        try:
            await pipe.execute()
        except redis.RedisError as exc:
            self._failed("write", exc)

    def _decode(self, raw: bytes | None) -> list[Prediction] | None:
        if raw is None:
            return None
        try:
            return decode_cached(raw)
        except ProtocolError as exc:
            log.warning("ignoring an unreadable response-cache entry: %s", exc)  # treated as a miss, then rewritten
            return None

    def _failed(self, what: str, exc: redis.RedisError) -> None:
        self._on_error()
        log.warning("response cache %s failed (answered by the workers instead): %s", what, exc)
