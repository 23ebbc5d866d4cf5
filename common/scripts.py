"""How every Lua script (``common.lua``) is called, and what its answers mean.

``Scripts`` binds the scripts to one client, sync or async, with their arguments by name, built here from
``common.keys`` and ``common.protocol``: a call returns what that client returns (a value, or an awaitable for
``redis.asyncio``). Their readings (``WorkerState``) and policies (``RecoveryMode``, ``DeadLetterPolicy``) live
here too.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from common.keys import Keys
from common.lua import BEAT, POP_WINDOW, PUSH_IF_ROOM, RECOVER_INFLIGHT, RELEASE_LOCK, WITHDRAW, WORKER_STATES
from common.protocol import REQUEST_ID_CHARS, REQUEST_ID_LENGTH, ErrorCode, Reply, WorkError, encode_reply

# A message's death count matters only while it can still be answered (deadlines are at most an hour away,
# REQUEST_TIMEOUT_S <= 3600): the deaths hash expires this long after the last death written to it, so an entry
# whose message vanished (an operator cleared the queue) cannot stay forever.
DEATHS_TTL_S = 7200

# What PUSH_IF_ROOM leaves on a request's reply key when it refuses, so that the wait pipelined after the push
# (api/gateway.py) pops it and ends at once. Never a reply: 0xc1 starts no msgpack message. The expiry is for a wait
# that never comes (its connection dropped in between, or a push sent on its own).
REFUSAL_MARKER = b"\xc1 refused: the queue is full"
REFUSAL_MARKER_TTL_MS = 1000

# Lua patterns have no {n} repetition: the class is spelled out once per character.
REQUEST_ID_LUA_PATTERN = "^" + f"[{REQUEST_ID_CHARS}]" * REQUEST_ID_LENGTH + "$"


def lease_ms(seconds: float) -> int:
    """A lease as Redis takes it (``PX``): whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))


def digest(raw: bytes) -> str:
    """The id of a raw message in the deaths hash (the scripts' ``redis.sha1hex``)."""
    return hashlib.sha1(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One registered worker as ``WORKER_STATES`` reads it."""

    worker_id: str
    incarnation: str
    beating: bool  # its heartbeat key exists
    held: int  # messages in its in-flight list
    leased: bool  # its lease on them is current

    @property
    def stalled(self) -> bool:
        """Holding work past its lease: its loop has made no progress for that long (frozen, hung, starved)."""
        return self.held > 0 and not self.leased

    @property
    def live(self) -> bool:
        """Beating and making progress: what /readyz counts."""
        return self.beating and not self.stalled


def worker_states(raw: list[Any]) -> list[WorkerState]:
    """``WORKER_STATES``'s answer, sorted by worker id."""
    rows = [raw[i:i + 5] for i in range(0, len(raw), 5)]
    return sorted((WorkerState(wid.decode(), inc.decode(), bool(beating), int(held), bool(leased))
                   for wid, inc, beating, held, leased in rows), key=lambda w: w.worker_id)


def poison_reply_template() -> bytes:
    """The reply a dead-lettered message's client gets, encoded by the protocol; the recovery script fills in
    the message's request id, index and death count."""
    return encode_reply(Reply("0" * REQUEST_ID_LENGTH, 0, error=WorkError(ErrorCode.POISON, "")))


class RecoveryMode(str, enum.Enum):
    RELEASE = "release"  # a live worker gives back what it will not answer: no death counted
    DIED = "died"  # its process is gone
    STALLED = "stalled"  # alive, but its lease ran out while it held work


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """What the recovery script keeps of a message it sets aside (settings: DEAD_LETTER_*)."""

    max_deliveries: int
    max_records: int
    ttl_s: int
    keep_text: bool

    @property
    def suspect_deaths(self) -> int:
        """Deaths after which a message is a suspect and runs alone (``POP_WINDOW``). A first death is presumed
        the worker's (a kill, an OOM, a lost node, a freeze): its window runs again batched, so one crash does not
        turn a full window into that many single-text passes at the head of everyone's queue. A second one
        isolates: a poison message then kills no batch-mates again before it is dead-lettered — unless
        MAX_DELIVERIES leaves no room for that (at most 2: isolated from the first death, as set aside at the
        next)."""
        return 2 if self.max_deliveries >= 3 else 1


class Scripts:
    """The scripts bound to one client and one key prefix, with their arguments by name."""

    def __init__(self, client: redis.Redis | redis.asyncio.Redis, keys: Keys) -> None:
        self._keys = keys
        self._push_if_room = client.register_script(PUSH_IF_ROOM)
        self._pop_window = client.register_script(POP_WINDOW)
        self._recover_inflight = client.register_script(RECOVER_INFLIGHT)
        self._release_lock = client.register_script(RELEASE_LOCK)
        self._worker_states = client.register_script(WORKER_STATES)
        self._beat = client.register_script(BEAT)
        self._withdraw = client.register_script(WITHDRAW)

    def push_if_room(self, request_id: str, payloads: Sequence[bytes], max_depth: int, max_bytes: int) -> Any:
        """RPUSH ``payloads`` onto the request list unless that takes it past ``max_depth`` texts or ``max_bytes``:
        the new length, or -1 (texts) / -2 (bytes), nothing pushed and ``REFUSAL_MARKER`` on the reply key of
        ``request_id``."""
        keys, args = self._push_arguments(request_id, payloads, max_depth, max_bytes)
        return self._push_if_room(keys=keys, args=args)

    def push_if_room_command(self, request_id: str, payloads: Sequence[bytes], max_depth: int,
                             max_bytes: int) -> tuple[Any, ...]:
        """``push_if_room`` as a raw command to send (api/round_trip.py), by the script's sha alone. So its answer can
        be NOSCRIPT (Redis restarted or its scripts were flushed): nothing was pushed then, and ``push_if_room``
        loads the script."""
        keys, args = self._push_arguments(request_id, payloads, max_depth, max_bytes)
        return ("EVALSHA", self._push_if_room.sha, len(keys), *keys, *args)

    def _push_arguments(self, request_id: str, payloads: Sequence[bytes], max_depth: int,
                        max_bytes: int) -> tuple[list[str], list[Any]]:
        keys = [self._keys.requests, self._keys.queued_bytes, self._keys.reply(request_id)]
        return keys, [max_depth, max_bytes, REFUSAL_MARKER, REFUSAL_MARKER_TTL_MS, *payloads]

    def pop_window(self, worker_id: str, incarnation: str, max_items: int, *, suspect_allowed: bool,
                   suspect_deaths: int, lease_s: float, now: float) -> Any:
        """Up to ``max_items`` messages from the head, recorded in-flight for the worker under a lease of
        ``lease_s``: ``[skipped, messages...]`` (skipped: texts of cancelled requests), ``[-1]`` if the worker
        id belongs to another incarnation. A message with ``suspect_deaths`` or more deaths is a suspect
        (``DeadLetterPolicy.suspect_deaths``)."""
        keys = [self._keys.requests, self._keys.inflight(worker_id), self._keys.deaths, self._keys.lease(worker_id),
                self._keys.workers, self._keys.cancelled, self._keys.queued_bytes]
        args = [max_items, int(suspect_allowed), worker_id, incarnation, lease_ms(lease_s), f"{now:.3f}",
                suspect_deaths]
        return self._pop_window(keys=keys, args=args)

    def recover_inflight(self, worker_id: str, mode: RecoveryMode, policy: DeadLetterPolicy, *, reply_ttl_s: int,
                         now: float, incarnation: str) -> Any:
        """Give ``worker_id``'s in-flight messages back to the queue's head: ``[requeued, dead_lettered]``.
        ``incarnation``: act only if that incarnation is (still) the registered one ('' = whichever)."""
        keys = [self._keys.inflight(worker_id), self._keys.requests, self._keys.deaths, self._keys.dead_letter,
                self._keys.workers, self._keys.lease(worker_id), self._keys.heartbeat(worker_id),
                self._keys.queued_bytes]
        args = [worker_id, mode.value, policy.max_deliveries, self._keys.reply(""), reply_ttl_s, f"{now:.3f}",
                REQUEST_ID_LUA_PATTERN, poison_reply_template(), incarnation, policy.max_records, policy.ttl_s,
                int(policy.keep_text), DEATHS_TTL_S]
        return self._recover_inflight(keys=keys, args=args)

    def worker_states(self) -> Any:
        """Every registered worker's state (raw: parse it with ``worker_states``)."""
        return self._worker_states(keys=[self._keys.workers], args=[self._keys.heartbeat(""),
                                                                    self._keys.inflight(""), self._keys.lease("")])

    def beat(self, worker_id: str, incarnation: str, fields: Mapping[str, str], ttl_s: int) -> Any:
        """Write a heartbeat and claim the worker id: the incarnation registered under it afterwards."""
        flat = [part for pair in fields.items() for part in pair]
        return self._beat(keys=[self._keys.workers, self._keys.heartbeat(worker_id)],
                          args=[worker_id, incarnation, ttl_s, *flat])

    def withdraw(self, worker_id: str, incarnation: str) -> Any:
        """Unregister the worker and delete its heartbeat if ``incarnation`` is still the registered one."""
        return self._withdraw(keys=[self._keys.workers, self._keys.heartbeat(worker_id)], args=[worker_id, incarnation])

    def release_lock(self, key: str, token: str) -> Any:
        """Delete ``key`` if it still holds ``token``: 1 if deleted."""
        return self._release_lock(keys=[key], args=[token])
