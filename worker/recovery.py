"""Recovery of in-flight messages: a worker's own after a lost connection or a restart, and the reaper, which
every live worker runs after its heartbeat to give other workers' messages back to the queue when they can no
longer answer them.

A worker can no longer answer when
- its process is gone: every connection of a worker process carries its name (``Keys.connection_name``), and
  Redis drops a connection the moment its process dies, so a SIGKILLed worker is noticed at the next reaper
  run (HEARTBEAT_INTERVAL_S), not when its heartbeat expires;
- it stalled: it holds work past its lease (worker/lease.py), renewed only by its batch loop's progress — a frozen
  process keeps its connections open but cannot renew.

The work is one Lua script (common/scripts.py): the messages go back to the head of the queue in their original
order, each with a death counted against it (dead-lettered at MAX_DELIVERIES).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import redis

from common.keys import Keys
from common.scripts import DeadLetterPolicy, RecoveryMode, Scripts, WorkerState, worker_states

log = logging.getLogger(__name__)


class Recovered(NamedTuple):
    requeued: int
    dead_lettered: int


class Recovery:
    def __init__(self, client: redis.Redis, keys: Keys, *, reply_ttl_s: int, dead_letter: DeadLetterPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._keys = keys
        self._reply_ttl_s = reply_ttl_s
        self._dead_letter = dead_letter
        self._clock = clock
        self._scripts = Scripts(client, keys)
        self._warned_no_client_list = False

    def recover(self, worker_id: str, mode: RecoveryMode, incarnation: str = "") -> Recovered:
        """Give ``worker_id``'s in-flight messages back to the head of the queue (see ``RecoveryMode``).
        ``incarnation``: only if that incarnation of the worker is still the registered one ('' = any)."""
        requeued, dead = self._scripts.recover_inflight(worker_id, mode, self._dead_letter,
                                                        reply_ttl_s=self._reply_ttl_s, now=self._clock(),
                                                        incarnation=incarnation)
        return Recovered(int(requeued), int(dead))

    def release(self, worker_id: str, incarnation: str) -> int:
        """A live worker gives back what it holds and will not answer (after a lost connection: the window in
        hand was lost with it). No death is counted. Returns the messages re-queued."""
        requeued = self.recover(worker_id, RecoveryMode.RELEASE, incarnation).requeued
        if requeued:
            log.warning("gave %d in-flight message(s) back to the queue", requeued)
        return requeued

    def connected(self) -> dict[str, set[str]] | None:
        """Worker id -> incarnations with at least one open connection to Redis (``CLIENT LIST``); None where the
        server refuses the command (an ACL without it, some managed services)."""
        prefix = self._keys.connection_name("", "")[:-1]  # "<prefix>:worker:"
        found: dict[str, set[str]] = {}
        try:
            clients = self._redis.client_list(_type="normal")
        except redis.ResponseError as exc:
            if not self._warned_no_client_list:
                log.error("Redis refuses CLIENT LIST (%s): a killed worker's work is taken back only when its lease "
                          "runs out (WORK_LEASE_S), and a silent one is forgotten when its heartbeat expires", exc)
                self._warned_no_client_list = True
            return None
        for client in clients:
            name = client.get("name", "")
            if name.startswith(prefix):
                worker_id, _, incarnation = name[len(prefix):].rpartition(":")
                found.setdefault(worker_id, set()).add(incarnation)
        return found

    def registered_elsewhere(self, worker_id: str, incarnation: str) -> str | None:
        """Another incarnation registered under ``worker_id`` whose process is still connected, if any."""
        states = {w.worker_id: w for w in worker_states(self._scripts.worker_states())}
        other = states.get(worker_id)
        if other is None or other.incarnation == incarnation:
            return None
        connected = self.connected()
        alive = other.beating if connected is None else other.incarnation in connected.get(worker_id, set())
        return other.incarnation if alive else None

    def reap(self, lock_ttl_s: float) -> dict[str, Recovered]:
        """If no other worker is reaping, take back the work of every registered worker that is gone or stalled."""
        token = uuid.uuid4().hex
        if not self._redis.set(self._keys.reaper_lock, token, nx=True, px=int(lock_ttl_s * 1000)):
            return {}
        try:
            # The registry first, then the connections: a worker registers only after naming its connections, so
            # one that is registered but absent from the later CLIENT LIST has really gone.
            states = worker_states(self._scripts.worker_states())
            connected = self.connected()
            reaped = {}
            for worker in states:
                mode = _verdict(worker, None if connected is None else connected.get(worker.worker_id, set()))
                if mode is None:
                    continue
                reaped[worker.worker_id] = recovered = self.recover(worker.worker_id, mode, worker.incarnation)
                if mode is RecoveryMode.DIED:
                    log.warning("worker %s is gone (no connection to Redis): %d message(s) re-queued, "
                                "%d dead-lettered", worker.worker_id, *recovered)
                elif recovered.requeued or recovered.dead_lettered:
                    log.warning("worker %s stalled holding %d message(s) past its lease: %d re-queued, "
                                "%d dead-lettered", worker.worker_id, worker.held, *recovered)
            return reaped
        finally:
            self._scripts.release_lock(self._keys.reaper_lock, token)


def _verdict(worker: WorkerState, connected_incarnations: set[str] | None) -> RecoveryMode | None:
    """Gone: no connection of its incarnation is left (without CLIENT LIST: its heartbeat expired). Stalled: it
    holds work past its lease."""
    gone = not worker.beating if connected_incarnations is None else worker.incarnation not in connected_incarnations
    if gone:
        return RecoveryMode.DIED
    if worker.stalled:
        return RecoveryMode.STALLED
    return None
