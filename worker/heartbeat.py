"""A worker's heartbeat: a readable hash with a TTL, refreshed by a background thread.

``redis-cli HGETALL sentimentalyzer:worker:<id>`` shows what the worker is and what it has done;
the key vanishing means the worker is dead (or stuck longer than the TTL).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import redis

from common.keys import Keys

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        worker_id: str,
        *,
        interval_s: float,
        ttl_s: int,
        describe: Callable[[], Mapping[str, str | int | float]],
        after_beat: Callable[[], object] | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self.worker_id = worker_id
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._describe = describe
        self._after_beat = after_beat  # e.g. the reaper: every live worker looks for dead ones
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()  # the first beat is synchronous: readiness is visible when start() returns
        self._thread.start()

    def beat(self) -> None:
        key = self._keys.heartbeat(self.worker_id)
        fields = {k: str(v) for k, v in self._describe().items()}
        fields["last_beat"] = f"{time.time():.3f}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self._ttl_s)
        pipe.sadd(self._keys.workers, self.worker_id)
        pipe.execute()
        if self._after_beat is not None:
            self._after_beat()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Stop beating and withdraw: the worker is no longer counted as live."""
        self._stopped.set()
        self._thread.join(timeout=self._interval_s + 5)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._keys.heartbeat(self.worker_id))
            pipe.srem(self._keys.workers, self.worker_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not withdraw heartbeat (it will expire): %s", exc)
