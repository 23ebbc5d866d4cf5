"""The API processes' settings (``python -m api``), on top of the shared ones and the input limits
(common/settings.py): where to listen, deadlines, admission, authentication, the Open Inference Protocol's model
name and the response cache. Every field's description states its trade-off; the README's table of common settings is
checked against them by a test.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from common.settings import EMPTY_IS_UNSET, REDIS_URL_PATTERN, InputLimits, SharedSettings

# Room a work item's message takes beyond its text's UTF-8 bytes (msgpack map: request id, index, deadline, ...;
# at most ~340 with every option, a traceparent and a client's X-Request-ID of the longest: tests/unit/test_protocol.py).
MESSAGE_OVERHEAD_BYTES = 352
# One origin of CORS_ALLOW_ORIGINS: `*`, or what a browser's Origin header holds (a path never matches one).
_ORIGIN = r"(\*|[A-Za-z][A-Za-z0-9+.\-]*://[^\s/,]+)"
# What API_KEY may hold: visible ASCII (a header's bytes, as every client sends them).
API_KEY_CHARS = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class QueueLimits:
    """The settings that must admit a call of the largest allowed size."""

    max_queue_depth: int
    max_queue_bytes: int
    max_batch_texts: int
    max_text_chars: int
    max_client_share: float

    def largest_call_bytes(self) -> int:
        # The largest call is a batch of text pairs, both texts of the longest (4 bytes per character at most in
        # UTF-8), each text a message.
        return self.max_batch_texts * (2 * 4 * self.max_text_chars + MESSAGE_OVERHEAD_BYTES)

    def failing(self) -> str | None:
        """Which check fails: "depth", "bytes", "share"; None when a full-size call can be admitted."""
        if self.max_queue_depth < self.max_batch_texts:
            return "depth"
        if self.max_queue_bytes < self.largest_call_bytes():
            return "bytes"
        # A client's share counts what the queue counts, its messages' bytes (api/admission.py): one client alone
        # must be able to place a full-size call, whatever its characters.
        if (self.max_client_share * self.max_queue_depth < self.max_batch_texts
                or self.max_client_share * self.max_queue_bytes < self.largest_call_bytes()):
            return "share"
        return None


def _lowest(limits: QueueLimits, field: str, high: int = 1 << 50) -> int | None:
    """The lowest value of ``field`` (the others as they are) with which every check passes; None if none does."""
    low = getattr(limits, field)
    if replace(limits, **{field: high}).failing() is not None:
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if replace(limits, **{field: middle}).failing() is None else (middle + 1, high)
    return low


def _highest(limits: QueueLimits, field: str) -> int | None:
    """The highest value of ``field`` (1 at least; the others as they are) with which every check passes."""
    low, high = 1, getattr(limits, field)
    if replace(limits, **{field: low}).failing() is not None:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if replace(limits, **{field: middle}).failing() is None else (low, middle - 1)
    return low


def _fixes(limits: QueueLimits, raise_: tuple[str, ...], lower: tuple[str, ...]) -> str:
    """``set X to at least N, or lower Y to at most M or Z to at most K``: each alone makes every check pass."""
    raised = [f"set {f.upper()} to at least {v}" for f in raise_ if (v := _lowest(limits, f)) is not None]
    lowered = [f"{f.upper()} to at most {v}" for f in lower if (v := _highest(limits, f)) is not None]
    parts = raised + ([f"lower {' or '.join(lowered)}"] if lowered else [])
    if not parts:  # no one variable will do: both queue limits, to what one client's share needs
        depth = max(limits.max_batch_texts, math.ceil(limits.max_batch_texts / limits.max_client_share))
        queue_bytes = math.ceil(limits.largest_call_bytes() / limits.max_client_share)
        parts = [f"set MAX_QUEUE_DEPTH to at least {depth} and MAX_QUEUE_BYTES to at least {queue_bytes}"]
    return ", or ".join(parts)


def limits_problem(limits: QueueLimits) -> str | None:
    """Why a call of the largest allowed size could never be admitted, in the variables' names, with what works."""
    failing = limits.failing()
    texts, chars = f"MAX_BATCH_TEXTS={limits.max_batch_texts}", f"MAX_TEXT_CHARS={limits.max_text_chars}"
    if failing == "depth":
        return (f"MAX_QUEUE_DEPTH={limits.max_queue_depth} is below {texts}: a full-size batch call could never be "
                f"admitted (429 forever). Fix: {_fixes(limits, ('max_queue_depth',), ('max_batch_texts',))}")
    if failing == "bytes":
        return (f"MAX_QUEUE_BYTES={limits.max_queue_bytes} is below the {limits.largest_call_bytes()} bytes a "
                f"full-size batch call can take ({texts} text pairs of {chars} characters, up to 4 bytes each in "
                f"UTF-8, plus {MESSAGE_OVERHEAD_BYTES} bytes per message): it could never be admitted (429 forever). "
                f"Fix: {_fixes(limits, ('max_queue_bytes',), ('max_text_chars', 'max_batch_texts'))}")
    if failing == "share":
        share = max(limits.max_batch_texts / limits.max_queue_depth,
                    limits.largest_call_bytes() / limits.max_queue_bytes)
        needed = math.ceil(share * 100) / 100
        fix = f"set MAX_CLIENT_SHARE to at least {needed:g}, or " if needed <= 1 else ""
        return (f"MAX_CLIENT_SHARE={limits.max_client_share:g} leaves one client less than one full-size batch call "
                f"({texts} text pairs of {chars} characters: up to {limits.largest_call_bytes()} bytes queued) of "
                f"MAX_QUEUE_DEPTH={limits.max_queue_depth} texts / "
                f"MAX_QUEUE_BYTES={limits.max_queue_bytes} bytes. Fix: {fix}"
                f"{_fixes(limits, ('max_queue_depth', 'max_queue_bytes'), ('max_text_chars', 'max_batch_texts'))}")
    return None


class ApiSettings(SharedSettings, InputLimits):
    """The API's own: where it listens, deadlines, admission, authentication, the response cache."""

    host: str = Field("127.0.0.1", description="Address the API binds to (`0.0.0.0` in containers).")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    keep_alive_s: int = Field(
        75,
        ge=1,
        le=3600,
        description="Seconds an idle keep-alive connection stays open (uvicorn's own default is 5). Keep it above the "
        "idle timeout of whatever pools connections to the API (ALB, ingress-nginx 60; Go's clients 90; Google Cloud's "
        "load balancers 600), so that the pool closes an idle connection first: otherwise a request sent just as the "
        "API closes it is reset (a 502 at a proxy; docs/deployment.md). Each idle connection holds a socket.",
    )
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
        description="Queue length (texts) beyond which new requests get 429 + Retry-After; each model version has "
        "its own queue. Bounds the latency of admitted requests (depth / throughput); too low rejects bursts the "
        "workers could absorb.",
    )
    max_in_flight: int = Field(
        512,
        ge=1,
        description="Concurrent requests one API process waits on, per model version (each holds a Redis connection "
        "for its blocking wait; each version's pool is sized from this, so a model whose workers are stuck holds none "
        "of another's). Beyond it: 429. One client may hold MAX_CLIENT_SHARE of them.",
    )
    max_queue_bytes: int = Field(
        2_097_152,
        ge=4096,
        description="Size of the queued texts (bytes of their messages, all API processes together, per model "
        "version) beyond which new "
        "requests get 429 + Retry-After. Bounds queued work where texts are long: 2,000 texts of 2,000 characters "
        "are ~100x the work of 2,000 short reviews. Too low rejects bursts of long texts the workers could absorb. "
        "The default is the least that leaves one client's share (MAX_CLIENT_SHARE 0.5) room for a full-size batch "
        "call (MAX_BATCH_TEXTS text pairs of MAX_TEXT_CHARS characters of 4 bytes each in UTF-8).",
    )
    max_client_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Fraction of each limit one client may hold in one API process (beyond: 429): MAX_IN_FLIGHT "
        "requests (one at least), MAX_QUEUE_DEPTH texts, MAX_QUEUE_BYTES (counted as the queue counts them: an "
        "emoji weighs 4 bytes), so that one caller can neither fill the queue nor take every request slot. Lower "
        "leaves more to the others but caps a client that is alone, and all that reaches the API from one address "
        "(a proxy, without CLIENT_ID_HEADER) is one client. 1: no per-client limit.",
    )
    client_id_header: str | None = Field(
        None,
        description="Header naming the client for MAX_CLIENT_SHARE and the access log, behind proxies that each "
        "append to it the address they got the request from, e.g. `X-Forwarded-For` (nginx: "
        "`$proxy_add_x_forwarded_for`): the client is what the outermost of the TRUSTED_PROXY_HOPS proxies appended, "
        "never a value to its left (which the client chose). Unset: the peer address.",
    )
    trusted_proxy_hops: int = Field(
        1,
        ge=1,
        le=32,
        description="How many proxies in front of the API append to CLIENT_ID_HEADER (e.g. a cloud load balancer "
        "and nginx: 2). The client is the N-th comma-separated value from the right; a header with fewer values "
        "(a request that bypassed a proxy) falls back to the peer address. Too high: clients choose their own "
        "identity, a fresh share per request; too low: the client is a proxy's address, one share for everyone "
        "behind it. Needs CLIENT_ID_HEADER.",
    )
    retry_after_s: int = Field(1, ge=1, description="`Retry-After` header value sent with 429.")
    access_log: bool = Field(
        True,
        description="One log line per request (logger `api.access`, level INFO, every route and status): method, "
        "path, status, duration, request id, texts, client (who MAX_CLIENT_SHARE counts: CLIENT_ID_HEADER, "
        "TRUSTED_PROXY_HOPS); no query string, body or header beyond those. Costs ~13 us of the API process's CPU "
        "per request in text lines, ~18 in JSON (benchmarks.overhead, same run: ~136 and ~138 us per /predict with "
        "it, ~124 without, ~10%); false saves it, and so does LOG_LEVEL=WARNING.",
    )
    api_key: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        repr=False,  # never in the settings' repr, so never in a line that shows them
        description="If set, every route but the probes (`/healthz`, `/readyz`, `/health`, `/v2/health/live`, "
        "`/v2/health/ready`) and the docs (`/docs`, `/redoc`, `/openapi.json`) requires `Authorization: Bearer <key>`, "
        "checked before the request's body is read (401 without it). Visible ASCII only (`!` to `~`: letters, "
        "digits, punctuation; no spaces), all an HTTP header carries intact: other keys are refused at start. Unset "
        "or empty: no authentication, for a trusted network only.",
    )
    cors_allow_origins: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        pattern=rf"^\s*{_ORIGIN}(\s*,\s*{_ORIGIN})*\s*$",
        description="Browser origins allowed to call the API from their pages (CORS), comma-separated "
        "`scheme://host[:port]` as browsers send them (no path, no trailing slash), e.g. "
        "`https://app.example.com,http://localhost:3000`; `*`: any origin. Preflights are answered (200) and "
        "answers carry the Access-Control headers: methods GET and POST; request headers Content-Type, "
        "Authorization, X-Request-ID, Content-Encoding and Inference-Header-Content-Length; X-Request-ID, the timing "
        "headers and X-Cache readable. Unset: no CORS and no cost per request (browsers refuse cross-origin calls; "
        "a preflight gets 405). An origin allowed lets any page served from it use the API with the key its users "
        "give it; `*`, every page.",
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
        repr=False,
        pattern=REDIS_URL_PATTERN,
        description="A separate Redis for the response cache (e.g. one with `maxmemory` and `allkeys-lru`, which "
        "the queue's Redis must not have). Unset: the cache shares REDIS_URL's Redis (bounded by CACHE_TTL_S only).",
    )

    @field_validator("api_key")
    @classmethod
    def _sendable_key(cls, key: str | None) -> str | None:
        # A header is latin-1 bytes on the wire, and clients encode it as ASCII (or refuse): a key of other
        # characters could never be sent, and every request would get 401. The message never shows the key.
        if key is not None and not API_KEY_CHARS.fullmatch(key):
            raise ValueError("an API key may only hold visible ASCII characters (! to ~: letters, digits and "
                             "punctuation; no spaces, accents or other non-ASCII characters), the characters an HTTP "
                             "header carries intact: no client could send this one. Fix: set API_KEY to such a key, "
                             "e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return key

    @model_validator(mode="after")
    def _consistent(self) -> "ApiSettings":
        # Limits under which a valid call of the largest allowed size could never be admitted: 429 forever. The
        # message names the variables to change and values that work (the others kept as they are).
        problem = limits_problem(self.limits())
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _proxy_hops_need_a_header(self) -> "ApiSettings":
        if self.trusted_proxy_hops != 1 and self.client_id_header is None:
            raise ValueError(f"TRUSTED_PROXY_HOPS={self.trusted_proxy_hops} has no effect without CLIENT_ID_HEADER "
                             "(every client would be its peer address). Fix: set CLIENT_ID_HEADER to the header your "
                             "proxies append the client's address to (e.g. X-Forwarded-For), or unset "
                             "TRUSTED_PROXY_HOPS")
        return self

    def limits(self) -> QueueLimits:
        return QueueLimits(self.max_queue_depth, self.max_queue_bytes, self.max_batch_texts, self.max_text_chars,
                           self.max_client_share)
