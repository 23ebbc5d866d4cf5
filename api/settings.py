"""The API processes' settings (``python -m api``), on top of the shared ones and the input limits
(common/settings.py): where to listen, deadlines, admission, authentication, the Open Inference Protocol's model
name and the response cache. Every field's description states its trade-off; the README's settings table is
checked against them by a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from common.settings import EMPTY_IS_UNSET, InputLimits, SharedSettings

# Room a work item's message takes beyond its text's UTF-8 bytes (msgpack map: request id, index, deadline, ...).
MESSAGE_OVERHEAD_BYTES = 256


class ApiSettings(SharedSettings, InputLimits):
    """The API's own: where it listens, deadlines, admission, authentication, the response cache."""

    host: str = Field("127.0.0.1", description="Address the API binds to (`0.0.0.0` in containers).")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    api_processes: int = Field(
        1,
        ge=1,
        description="API server processes of `python -m api` on one port, each with its own SO_REUSEPORT "
        "socket so the kernel spreads connections evenly (one process tops out at ~2,000 requests/s on this "
        "machine's cores); a process that dies is restarted. They share nothing but Redis and their metrics files "
        "(PROMETHEUS_MULTIPROC_DIR): a scrape of any of them answers for all (scrape replicas individually).",
    )
    prometheus_multiproc_dir: Path | None = Field(
        None,
        description="prometheus-client's multiprocess directory: each API process keeps its counters and histograms "
        "there, so that one scrape sums the whole `python -m api`. Unset: with API_PROCESSES > 1 the API makes a "
        "fresh temporary one (removed at exit); set: that directory, emptied at start when API_PROCESSES > 1 (one "
        "per `python -m api`). Costs a memory-mapped write per observation: measured 0.9 us per counter increment (0.3 single-process) and "
        "2.0 us per histogram observation (0.8), a few us per request.",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Deadline of a request from arrival: past it the client gets 504 and workers skip the "
        "item. Longer rides out bursts; shorter frees clients and capacity sooner.",
    )
    max_queue_depth: int = Field(
        2000,
        ge=1,
        description="Queue length (texts) beyond which new requests get 429 + Retry-After. Bounds the latency "
        "of admitted requests (depth / throughput); too low rejects bursts the workers could absorb.",
    )
    max_in_flight: int = Field(
        512,
        ge=1,
        description="Concurrent requests one API process waits on (each holds a Redis connection for its "
        "blocking wait; the pool is sized from this). Beyond it: 429.",
    )
    max_queue_bytes: int = Field(
        1_048_576,
        ge=4096,
        description="Size of the queued texts (bytes of their messages, all API processes together) beyond which new "
        "requests get 429 + Retry-After. Bounds queued work where texts are long: 2,000 texts of 2,000 characters "
        "are ~100x the work of 2,000 short reviews. Too low rejects bursts of long texts the workers could absorb.",
    )
    max_client_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Fraction of MAX_QUEUE_DEPTH texts and of MAX_QUEUE_BYTES one client may have waiting in one API "
        "process (beyond: 429), so that one caller cannot fill the queue for everyone. 1: no per-client limit.",
    )
    client_id_header: str | None = Field(
        None,
        description="Header naming the client for MAX_CLIENT_SHARE (its first comma-separated value), e.g. "
        "`X-Forwarded-For` behind a proxy that sets it. Unset: the peer address. Only trust a header your proxy "
        "overwrites: clients can send any value.",
    )
    retry_after_s: int = Field(1, ge=1, description="`Retry-After` header value sent with 429.")
    api_key: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        description="If set, the prediction routes (`/predict`, `/predict/batch`, `/v2/models/.../infer`), `/info` "
        "and `/metrics` require `Authorization: Bearer <key>` (probes and docs stay open). Unset or empty: no "
        "authentication, for a trusted network only.",
    )
    served_model_name: str = Field(
        "sentimentalyzer",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="The model's name in the Open Inference Protocol routes (`/v2/models/<name>/...`), which "
        "tritonclient, the KServe SDK and perf_analyzer are given. Other names answer 404.",
    )
    cache_ttl_s: int = Field(
        0,
        ge=0,
        description="Response cache: how long an answer is kept in Redis and given again, without queueing, to "
        "the same text with the same options for the same model; 0 turns the cache off. Pays off where texts "
        "repeat (the same review, headline); each entry takes ~100 bytes of Redis memory plus its key, for its TTL.",
    )
    cache_redis_url: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        description="A separate Redis for the response cache (e.g. one with `maxmemory` and `allkeys-lru`, which "
        "the queue's Redis must not have). Unset: the cache shares REDIS_URL's Redis (bounded by CACHE_TTL_S only).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ApiSettings":
        # Limits under which a valid call of the largest allowed size could never be admitted: 429 forever. The
        # largest is a batch of text pairs, both texts of the longest (4 bytes per character at most in UTF-8).
        largest_call_bytes = self.max_batch_texts * (2 * 4 * self.max_text_chars + MESSAGE_OVERHEAD_BYTES)
        client_texts = self.max_client_share * self.max_queue_depth
        client_chars = self.max_client_share * self.max_queue_bytes
        if self.max_queue_depth < self.max_batch_texts:
            raise ValueError(f"max_queue_depth ({self.max_queue_depth}) is below max_batch_texts "
                             f"({self.max_batch_texts}): a full-size batch call could never be admitted")
        if self.max_queue_bytes < largest_call_bytes:
            raise ValueError(f"max_queue_bytes ({self.max_queue_bytes}) is below the {largest_call_bytes} bytes a "
                             "full-size batch call of the longest texts can take: it could never be admitted")
        if client_texts < self.max_batch_texts or client_chars < self.max_batch_texts * 2 * self.max_text_chars:
            raise ValueError(f"max_client_share ({self.max_client_share:g}) leaves one client less than one "
                             "full-size batch call (max_batch_texts pairs of max_text_chars) of the queue")
        return self
