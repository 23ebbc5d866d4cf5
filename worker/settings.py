"""A worker's settings (``python -m worker``): Redis and keys, the model (engine/settings.py), and its batching,
heartbeat, lease and dead-letter policies. Every field's description states its trade-off."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from common.keys import MAX_MODEL_VERSION, Keys
from common.scripts import DeadLetterPolicy
from common.settings import EMPTY_IS_UNSET, SharedSettings
from engine.settings import BACKEND_PATTERN, BACKENDS_HELP, ModelSettings


class WorkerSettings(SharedSettings, ModelSettings):
    """The worker's own: batching, heartbeats and leases, dead letters."""

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
        "on its timer (`hz`, 10 by default: 100 ms steps; we run Redis with `hz 100`). Must stay under half of "
        "WORK_LEASE_S: the wait is held under the lease.",
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
        "take it back and run it; raised to 4x the slowest recent pass, but not past a third of the requests' "
        "time budget (REQUEST_TIMEOUT_S) unless this floor is higher. A frozen worker's texts run again after "
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

    model_version: int = Field(
        1,
        ge=1,
        le=MAX_MODEL_VERSION,
        description="The version this worker serves SERVED_MODEL_NAME as (its own queue). A name's unpinned requests "
        "go to its highest version with a live worker, so starting workers of version N+1 moves the name to them; "
        "`/v2/models/<name>/versions/<v>/infer` pins one. Workers of one version must serve the same model.",
    )

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> "WorkerSettings":
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be greater than heartbeat_interval_s")
        return self

    @model_validator(mode="after")
    def _wait_fits_in_the_lease(self) -> "WorkerSettings":
        # A worker waiting for batch-mates holds its window under the lease; a wait that outlasts it (plus the pass
        # after it) is taken for a freeze by the reaper: the window runs twice and a death is counted against it.
        if self.max_batch_wait_ms >= self.work_lease_s * 1000 / 2:
            raise ValueError(f"MAX_BATCH_WAIT_MS ({self.max_batch_wait_ms:g}) must be under half of WORK_LEASE_S "
                             f"({self.work_lease_s:g} s): a worker waiting for batch-mates holds its window under "
                             "the lease, and a longer wait is taken for a freeze (the window runs twice). Lower "
                             f"MAX_BATCH_WAIT_MS or raise WORK_LEASE_S above {2 * self.max_batch_wait_ms / 1000:g}")
        return self

    def served_keys(self) -> Keys:
        """The keys of the model version this worker serves (its queue, its registry, its replies)."""
        return self.keys().served(self.served_model_name, self.model_version)

    def dead_letter_policy(self) -> DeadLetterPolicy:
        return DeadLetterPolicy(self.max_deliveries, self.dead_letter_max, self.dead_letter_ttl_s,
                                self.dead_letter_keep_text)
