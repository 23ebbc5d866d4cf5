"""Every Redis key the service uses, in one place.

All keys share one readable prefix so that a deployment's state can be listed with
``redis-cli --scan --pattern 'sentimentalyzer:*'`` and several deployments (or test runs) can share a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.batch_metrics import BATCH_HISTOGRAM_NAMES

DEFAULT_PREFIX = "sentimentalyzer"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$")


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"key prefix {self.prefix!r} must be letters, digits, '_', '.', '-' separated by ':'")

    @property
    def requests(self) -> str:
        """List of pending work items (msgpack); producers RPUSH, workers pop from the head."""
        return f"{self.prefix}:requests"

    def reply(self, request_id: str) -> str:
        """List a worker RPUSHes a request's replies to; the API blocks on it. Expires if nobody collects it."""
        return f"{self.prefix}:reply:{request_id}"

    @property
    def workers(self) -> str:
        """Hash: worker id -> incarnation (a token per process start) of every worker that announced itself or
        holds work. Membership proves nothing: see ``common.scripts.WORKER_STATES`` for who is alive."""
        return f"{self.prefix}:workers"

    def connection_name(self, worker_id: str, incarnation: str) -> str:
        """``CLIENT SETNAME`` of every connection of one worker process: Redis drops a connection the moment its
        process dies, so ``CLIENT LIST`` shows which incarnations are still there."""
        return f"{self.prefix}:worker:{worker_id}:{incarnation}"

    def lease(self, worker_id: str) -> str:
        """Expiring key a worker holds while it makes progress on a window: set by the pop, extended by each
        publish. Gone while the worker still holds work: it stalled, and the reaper takes the work back."""
        return f"{self.prefix}:lease:{worker_id}"

    def heartbeat(self, worker_id: str) -> str:
        """Hash describing one live worker (host, pid, model, counters); expires when the worker stops beating."""
        return f"{self.prefix}:worker:{worker_id}"

    def inflight(self, worker_id: str) -> str:
        """List of the raw messages a worker has popped and not yet answered. Given back to the queue's head
        by the reaper if the worker's heartbeat expires (at-least-once delivery)."""
        return f"{self.prefix}:inflight:{worker_id}"

    @property
    def deaths(self) -> str:
        """Hash: sha1 of a raw message -> how many workers died while holding it. Such a message is a suspect:
        it runs alone, so that a poison message only ever kills its worker by itself."""
        return f"{self.prefix}:deaths"

    @property
    def dead_letter(self) -> str:
        """List of JSON records of messages set aside after killing MAX_DELIVERIES workers, with the reason."""
        return f"{self.prefix}:dead_letter"

    @property
    def reaper_lock(self) -> str:
        """Short lock so that one live worker at a time recovers dead workers' in-flight messages."""
        return f"{self.prefix}:reaper_lock"

    @property
    def stats(self) -> str:
        """Hash of cluster-wide counters (batches, texts, expired, malformed, failed) written at batch boundaries."""
        return f"{self.prefix}:stats"

    @property
    def batch_sizes(self) -> str:
        """Hash: batch size (texts per forward pass) -> how many batches had that size."""
        return f"{self.prefix}:stats:batch_sizes"

    def histogram(self, name: str) -> str:
        """Hash of one batch histogram (common/batch_metrics.py): per-bucket counts and the sum."""
        return f"{self.prefix}:stats:hist:{name}"

    def cached(self, digest: str) -> str:
        """String: one answer of the response cache (CACHE_TTL_S), msgpack ranked labels; ``digest`` hashes the model's
        fingerprint, the options and the text (api/cache.py). Expires after CACHE_TTL_S."""
        return f"{self.prefix}:cache:{digest}"

    @property
    def pattern(self) -> str:
        """A SCAN/KEYS pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

    @property
    def queued_bytes(self) -> str:
        """Bytes of the messages in the request list, kept by the push, pop and recovery scripts (admission by size;
        reset whenever the list is found empty)."""
        return f"{self.prefix}:queued_bytes"

    @property
    def cancelled(self) -> str:
        """Sorted set: request id -> its deadline, for requests whose client hung up. Workers skip their texts."""
        return f"{self.prefix}:cancelled"

    def persistent(self) -> set[str]:
        """Keys that are meant to outlive requests (everything else is per-request and must not leak)."""
        return {self.requests, self.workers, self.stats, self.batch_sizes, self.deaths, self.dead_letter,
                self.reaper_lock, self.cancelled, self.queued_bytes, *(self.histogram(name) for name in BATCH_HISTOGRAM_NAMES)}
