"""A worker's heartbeat: a readable hash with a TTL, refreshed by a background thread, and the worker's claim on
its id in the registry.

``redis-cli HGETALL sentimentalyzer:worker:<id>`` shows what the worker is and what it has done; the key vanishing
means the worker is gone or its whole process is frozen. The heartbeat says the process lives, not that it
makes progress: that is the batch loop's lease (worker/lease.py).
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
from common.scripts import Scripts

log = logging.getLogger(__name__)


def _guarded(what: str, task: Callable[[], object]) -> None:
    """Run one of the heartbeat thread's tasks. Nothing may end that thread but stop(): a worker that stops
    beating while it serves is reaped as dead by the others (its messages run twice, deaths count against them)."""
    try:
        task()
    except redis.RedisError as exc:
        log.warning("%s failed: %s", what, exc)  # Redis away: expected, it comes back
    except Exception:  # noqa: BLE001 - see above; the traceback is logged
        log.exception("%s failed; the heartbeat goes on", what)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        worker_id: str,
        incarnation: str,
        *,
        interval_s: float,
        ttl_s: int,
        describe: Callable[[], Mapping[str, str | int | float]],
        after_beat: Callable[[], object] | None = None,
        on_id_taken: Callable[[str], object] = lambda other: None,
    ) -> None:
        self._scripts = Scripts(client, keys)
        self._client = client
        self._keys = keys
        self.worker_id = worker_id
        self.incarnation = incarnation
        self._on_id_taken = on_id_taken  # another live process registered our id (its incarnation)
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._describe = describe
        self._after_beat = after_beat  # e.g. the reaper: every live worker looks for dead ones
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()  # the first beat is synchronous: readiness is visible when start() returns
        self._run_after_beat()
        self._thread.start()

    def _run_after_beat(self) -> None:
        if self._after_beat is not None:
            _guarded("after-beat task", self._after_beat)

    def beat(self) -> None:
        """Write the heartbeat hash and refresh its TTL. A failing ``describe`` costs the description, not the
        beat: the worker is alive either way."""
        try:
            fields = {k: str(v) for k, v in self._describe().items()}
        except Exception:  # noqa: BLE001 - whatever describe() raises, the beat must still be written
            log.exception("could not describe the worker; beating without a description")
            fields = {}
        fields["last_beat"] = f"{time.time():.3f}"
        fields["incarnation"] = self.incarnation
        registered = self._scripts.beat(self.worker_id, self.incarnation, fields, self._ttl_s).decode()
        if registered != self.incarnation:
            self._on_id_taken(registered)
        if (member := self._keys.member) is not None:
            # The model version in the deployment's models, which the API routes by: every beat, so that a Redis
            # that lost its data (or an operator's SREM of a version still served) is set right within a beat.
            # A command of its own: the set is the deployment's, outside the model's hash slot.
            self._client.sadd(self._keys.models, member)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            _guarded("heartbeat", self.beat)
            self._run_after_beat()

    def stop(self) -> None:
        """Stop beating and withdraw: the worker is no longer counted as live."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 5)
        try:
            self._scripts.withdraw(self.worker_id, self.incarnation)
        except redis.RedisError as exc:
            log.warning("could not withdraw heartbeat (it will expire): %s", exc)
