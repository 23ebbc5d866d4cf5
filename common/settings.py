"""Settings, read from environment variables (names are the field names, case-insensitive).

Each process builds the settings it needs in its entry point (``ApiSettings()``, ``WorkerSettings()``, ...);
nothing is read at import time. The API's own settings are in common/api_settings.py. Every field's description states its trade-off; the README's settings
table is checked against these classes by a test.
"""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings

from common.keys import Keys
from common.model_settings import BACKEND_PATTERN, BACKENDS_HELP, ModelSettings
from common.model_settings import SETTINGS_CONFIG as _CONFIG

S = TypeVar("S", bound=BaseSettings)

# Compose passes `VAR=` for a variable the user left unset (`${API_KEY:-}`): for an optional setting that means
# unset, not an empty key nobody can send or a number that does not parse.
EMPTY_IS_UNSET = BeforeValidator(lambda value: None if value == "" else value)


class SharedSettings(BaseSettings):
    model_config = _CONFIG

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis server shared by all API processes and workers. `rediss://` for TLS; "
        "`redis://:password@host:port/db` for a password.",
    )
    redis_sentinels: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        pattern=r"^\s*[^\s,:]+:\d+\s*(,\s*[^\s,:]+:\d+\s*)*$",
        description="Redis Sentinel addresses, `host:port[,host:port...]`: the queue's Redis is whichever master "
        "they name REDIS_SENTINEL_MASTER, and API processes and workers follow a failover without a restart "
        "(requests fail fast with 503 until the new master is elected). REDIS_URL then gives only the database, "
        "user, password and TLS (`rediss://`); its host is not used. Unset: REDIS_URL's server, no failover.",
    )
    redis_sentinel_master: str = Field(
        "mymaster",
        min_length=1,
        description="The master's name in the Sentinels' configuration (`sentinel monitor <name> ...`).",
    )
    redis_sentinel_password: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        description="Password of the Sentinels themselves (their `requirepass`), if they have one; the master's is "
        "REDIS_URL's.",
    )
    redis_connect_timeout_s: float = Field(
        1.0,
        gt=0,
        description="How long to wait for a TCP connection to Redis. Short: a dead Redis gives a fast 503 "
        "instead of piling up waiters; too short fails on a slow network.",
    )
    key_prefix: str = Field(
        "sentimentalyzer",
        description="Prefix of every Redis key. Lets several deployments share one Redis; the API and its "
        "workers must agree on it.",
    )
    reply_ttl_s: int = Field(
        60,
        ge=1,
        description="Expiry of reply lists. Replies nobody collects (client timed out) vanish after this; too "
        "short could expire a reply before a slow API reads it.",
    )
    log_level: str = Field("INFO", description="Python logging level of the process.")

    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinel."""
        pairs = [part.strip().rsplit(":", 1) for part in (self.redis_sentinels or "").split(",") if part.strip()]
        return [(host, int(port)) for host, port in pairs]


class InputLimits(BaseSettings):
    """Validation limits of the HTTP API, shared by the batched API and the naive baseline."""

    model_config = _CONFIG

    max_text_chars: int = Field(
        2000,
        ge=1,
        description="Longest accepted text, in characters (longer: 422). Texts are also truncated to the "
        "model's maximum token length (512 for DistilBERT); a higher limit only adds tokenization work.",
    )
    max_batch_texts: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most texts in one `/predict/batch` call (more: 422). Each text is one queue item; large "
        "calls let one client fill many batches ahead of others.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest accepted request body (larger: 413), checked before parsing.",
    )


class WorkerSettings(SharedSettings, ModelSettings):
    max_batch_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most texts a worker takes from the queue at once (its window); no forward pass holds "
        "more. A larger window gives length grouping more to choose from but holds more texts per worker.",
    )
    backend: str = Field(
        "auto",
        pattern=BACKEND_PATTERN,
        description="The worker's default is `auto`: at its first start on a model and CPU it measures the "
        "installed backends on the model (agreement with PyTorch fp32 on fixed sentences, throughput at this "
        "worker's batch policy), runs the fastest exact one, and caches the decision in EXPORT_CACHE_DIR so "
        "later starts skip the measuring (~20-40 s on 2 cores). " + BACKENDS_HELP,
    )
    max_batch_tokens: Annotated[int | None, EMPTY_IS_UNSET] = Field(
        None,
        ge=0,
        description="Padded-token budget of one forward pass (longest text x texts). The window is grouped by "
        "token length into passes within it, so short texts don't pay for a long one's padding. Unset: "
        "BACKEND=auto measures 256/512/1024 for the chosen backend (the best runtime differs in what it likes), "
        "an explicit BACKEND uses 512 (cache-friendly on CPUs; on GPUs use thousands). 0: the whole window in "
        "one pass, arrival order.",
    )
    max_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a worker holding a non-full batch waits for more texts, counted from the oldest "
        "text's enqueue time. 0 runs what is there at once: on a busy worker the queue fills during each "
        "pass anyway. Raise it on GPUs, where fuller batches are almost free. Redis wakes blocked clients "
        "on its timer (`hz`, 10 by default: 100 ms steps; we run Redis with `hz 100`).",
    )
    idle_block_s: float = Field(
        1.0,
        gt=0,
        le=30,
        description="How long one blocking wait on an empty queue lasts before the worker re-checks for "
        "shutdown. Arrivals wake it at once; this only bounds how fast SIGTERM is noticed when idle.",
    )
    simulated_batch_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="`BACKEND=simulated` only: fixed cost (a) of one forward pass, slept, not computed. Models "
        "an accelerator's per-pass overhead; with a large a, fuller batches pay off.",
    )
    simulated_text_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="`BACKEND=simulated` only: cost per text (b) of one forward pass. Both 0: a no-op worker, "
        "to measure the API + Redis path's own ceiling.",
    )
    heartbeat_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a worker refreshes its heartbeat and runs the reaper, which gives the work of "
        "workers that are gone (no connection left) or stalled (lease expired) to the others. A killed worker's "
        "texts run again within about this long; shorter costs a few more Redis commands per second.",
    )
    heartbeat_ttl_s: int = Field(
        5,
        ge=1,
        description="Heartbeat expiry: a worker whose whole process is silent this long (frozen, partitioned) stops "
        "counting for `/readyz`. Deaths are not detected by it (see HEARTBEAT_INTERVAL_S, WORK_LEASE_S). Must "
        "exceed the interval; shorter risks flapping under load.",
    )
    work_lease_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="Least time a worker may hold a window without progress (a published pass) before the others "
        "take it back and run it; raised to 4x the slowest recent pass. A frozen worker's texts run again after "
        "about this + HEARTBEAT_INTERVAL_S: keep both well inside the API's REQUEST_TIMEOUT_S. Too short re-runs "
        "windows of a healthy but slow worker (answers stay right: the first reply wins).",
    )
    max_deliveries: int = Field(
        3,
        ge=1,
        description="Worker deaths or stalls a message may be held through before it is dead-lettered (its client "
        "gets a 500 naming the reason). Higher tolerates more unrelated crashes; lower stops a poison message sooner.",
    )
    dead_letter_max: int = Field(
        1000,
        ge=1,
        description="Most records kept in the dead-letter list (newest first); older ones are dropped.",
    )
    dead_letter_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="The dead-letter list expires this long after its last record.",
    )
    dead_letter_keep_text: bool = Field(
        False,
        description="Keep a dead-lettered message's text in its record (to reproduce what crashed the workers). Off "
        "by default: records hold the request id, the text's sha1 and size, not user data.",
    )
    worker_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Name of this worker in Redis keys; default `<hostname>-<pid>`. Must be unique among running "
        "workers: a second process under a live worker's id refuses to start.",
    )

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> "WorkerSettings":
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be greater than heartbeat_interval_s")
        return self


class NaiveSettings(ModelSettings, InputLimits):
    log_level: str = Field("INFO", description="Python logging level of the process.")
    host: str = Field("127.0.0.1", description="Address the naive server binds to.")
    port: int = Field(8001, ge=1, le=65535, description="Port the naive baseline listens on.")


def load_or_exit(cls: type[S]) -> S:
    """Settings for an entry point from the environment; invalid or contradicting ones end the process (exit 2)
    with one line per problem naming the variable, instead of a traceback."""
    try:
        return cls()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper()
            # A field's error names its variable; a check across fields (a model validator) has no location.
            print(f"invalid setting {where}: {error['msg']}" if where else f"invalid settings: {error['msg']}",
                  file=sys.stderr)
        raise SystemExit(2) from None


def setting_names() -> set[str]:
    """Every environment variable any entry point reads (upper case), for documentation checks."""
    from common.api_settings import ApiSettings  # here: that module builds on this one

    names: set[str] = set()
    for cls in (ApiSettings, WorkerSettings, NaiveSettings):
        names.update(name.upper() for name in cls.model_fields)
    return names
