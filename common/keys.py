"""Every Redis key the service uses, in one place.

All keys share one readable prefix so that a deployment's state can be listed with
``redis-cli --scan --pattern 'sentimentalyzer:*'`` and several deployments (or test runs) can share a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from common.batch_metrics import BATCH_HISTOGRAM_NAMES

DEFAULT_PREFIX = "sentimentalyzer"
DEFAULT_MODEL_NAME = "sentimentalyzer"  # SERVED_MODEL_NAME's default
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$")
# A served model's name (SERVED_MODEL_NAME): one segment of its keys, and of the /v2/models/<name> routes.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MODEL_NAME_MAX = 100
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
_VERSION_RE = re.compile(r"[1-9][0-9]{0,8}")
MAX_MODEL_VERSION = 999_999_999  # nine digits, as the API reads a version from a path


def parse_version(text: str) -> int | None:
    """A model version as a member of ``models`` or a path spells it (1 to MAX_MODEL_VERSION, no leading zero);
    None if ``text`` is not one."""
    return int(text) if _VERSION_RE.fullmatch(text) else None


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one served model version (``Keys(prefix).served(name, version)``: its queue, workers, replies,
    stats, cache...), or with no model those of the deployment itself (``models``; tests use them as a plain
    namespace). A model's keys are ``<prefix>:{<name>}:v<version>:...``: the braces are a Redis Cluster hash tag, so
    that every key a script touches (the queue, a reply key, the in-flight lists) lies in one slot, and the
    versions of a name together."""

    prefix: str = DEFAULT_PREFIX
    model: str | None = None
    version: int = 1
    namespace: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(f"key prefix {self.prefix!r} must be letters, digits, '_', '.', '-' separated by ':'")
        if self.model is not None and (not _MODEL_NAME_RE.fullmatch(self.model) or len(self.model) > MODEL_NAME_MAX):
            raise ValueError(f"model name {self.model!r} must be up to {MODEL_NAME_MAX} letters, digits, '_', '.', "
                             "'-'")
        if not 1 <= self.version <= MAX_MODEL_VERSION:
            raise ValueError(f"model version {self.version} must be 1 to {MAX_MODEL_VERSION}")
        namespace = self.prefix if self.model is None else f"{self.prefix}:{{{self.model}}}:v{self.version}"
        object.__setattr__(self, "namespace", namespace)

    def served(self, model: str, version: int) -> Keys:
        """The keys of version ``version`` of the model served as ``model``, in this deployment (its ``models`` is
        the deployment's)."""
        return Keys(self.prefix, model, version)

    @property
    def member(self) -> str | None:
        """This model version's member of ``models`` (None: these are no model's keys)."""
        return None if self.model is None else self.model_member(self.model, self.version)

    @staticmethod
    def model_member(model: str, version: int) -> str:
        """A model version's member of ``models``."""
        return f"{model}/{version}"

    @staticmethod
    def parse_model_member(member: str) -> tuple[str, int] | None:
        """(name, version) of a member of ``models``; None if it is not one (written by hand, say)."""
        name, _, text = member.rpartition("/")
        version = parse_version(text)
        if not _MODEL_NAME_RE.fullmatch(name) or len(name) > MODEL_NAME_MAX or version is None:
            return None
        return name, version

    @property
    def models(self) -> str:
        """Set of the model versions ever served in this deployment, as ``<name>/<version>``: each worker adds its
        own at start; an operator retires one with SREM (until then, asked for by name it answers 503 while no
        worker serves it)."""
        return f"{self.prefix}:models"

    @property
    def requests(self) -> str:
        """List of pending work items (msgpack); producers RPUSH, workers pop from the head."""
        return f"{self.namespace}:requests"

    def reply(self, request_id: str) -> str:
        """List a worker RPUSHes a request's replies to; the API blocks on it. Expires if nobody collects it."""
        return f"{self.namespace}:reply:{request_id}"

    @property
    def workers(self) -> str:
        """Hash: worker id -> incarnation (a token per process start) of every worker that announced itself or
        holds work. Membership proves nothing: see ``common.scripts.WORKER_STATES`` for who is alive."""
        return f"{self.namespace}:workers"

    def connection_name(self, worker_id: str, incarnation: str) -> str:
        """``CLIENT SETNAME`` of every connection of one worker process: Redis drops a connection the moment its
        process dies, so ``CLIENT LIST`` shows which incarnations are still there."""
        return f"{self.namespace}:worker:{worker_id}:{incarnation}"

    def lease(self, worker_id: str) -> str:
        """Expiring key a worker holds while it makes progress on a window: set by the pop, extended by each
        publish. Gone while the worker still holds work: it stalled, and the reaper takes the work back."""
        return f"{self.namespace}:lease:{worker_id}"

    def heartbeat(self, worker_id: str) -> str:
        """Hash describing one live worker (host, pid, model, counters); expires when the worker stops beating."""
        return f"{self.namespace}:worker:{worker_id}"

    def inflight(self, worker_id: str) -> str:
        """List of the raw messages a worker has popped and not yet answered. Given back to the queue's head
        by the reaper if the worker's heartbeat expires (at-least-once delivery)."""
        return f"{self.namespace}:inflight:{worker_id}"

    @property
    def deaths(self) -> str:
        """Hash: sha1 of a raw message -> how many workers died while holding it. Such a message is a suspect:
        it runs alone, so that a poison message only ever kills its worker by itself."""
        return f"{self.namespace}:deaths"

    @property
    def dead_letter(self) -> str:
        """List of JSON records of messages set aside after killing MAX_DELIVERIES workers, with the reason."""
        return f"{self.namespace}:dead_letter"

    @property
    def reaper_lock(self) -> str:
        """Short lock so that one live worker at a time recovers dead workers' in-flight messages."""
        return f"{self.namespace}:reaper_lock"

    @property
    def stats(self) -> str:
        """Hash of cluster-wide counters (batches, texts, expired, malformed, failed) written at batch boundaries."""
        return f"{self.namespace}:stats"

    @property
    def batch_sizes(self) -> str:
        """Hash: batch size (texts per forward pass) -> how many batches had that size."""
        return f"{self.namespace}:stats:batch_sizes"

    def histogram(self, name: str) -> str:
        """Hash of one batch histogram (common/batch_metrics.py): per-bucket counts and the sum."""
        return f"{self.namespace}:stats:hist:{name}"

    def cached(self, digest: str) -> str:
        """String: one answer of the response cache (CACHE_TTL_S), msgpack ranked labels; ``digest`` hashes the model's
        fingerprint, the options and the text (api/cache.py). Expires after CACHE_TTL_S."""
        return f"{self.namespace}:cache:{digest}"

    @property
    def pattern(self) -> str:
        """A SCAN/KEYS pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

    @property
    def queued_bytes(self) -> str:
        """Bytes of the messages in the request list, kept by the push, pop and recovery scripts (admission by size;
        reset whenever the list is found empty)."""
        return f"{self.namespace}:queued_bytes"

    @property
    def cancelled(self) -> str:
        """Sorted set: request id -> its deadline, for requests whose client hung up. Workers skip their texts."""
        return f"{self.namespace}:cancelled"

    def persistent(self) -> set[str]:
        """Keys that are meant to outlive requests (everything else is per-request and must not leak)."""
        return {self.models, self.requests, self.workers, self.stats, self.batch_sizes, self.deaths, self.dead_letter,
                self.reaper_lock, self.cancelled, self.queued_bytes, *(self.histogram(name) for name in BATCH_HISTOGRAM_NAMES)}
