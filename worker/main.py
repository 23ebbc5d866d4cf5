"""Worker entry point: ``python -m worker`` (settings from the environment: worker/settings.py)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis

from common.cli import parse_into_environment
from common.clock import RedisClock
from common.logs import setup_logging
from common.model_card import BACKEND_CHOICE_FIELD
from common.redis_factory import sync_client
from common.scripts import RecoveryMode
from common.settings import load_or_exit
from common.tracing import check_or_exit, tracer_provider_from_env
from engine.autotune.choice import summary
from engine.predictor import Predictor
from engine.runtimes import ModelLoadError
from worker.heartbeat import Heartbeat, default_worker_id
from worker.loop import BatchLoop, BatchPolicy, PassObserver
from worker.model import load_predictor
from worker.recovery import Recovery
from worker.redis_queue import RedisRequestQueue, WorkerIdTaken
from worker.settings import WorkerSettings

log = logging.getLogger("worker")

BACKOFF_START_S = 0.1
BACKOFF_CAP_S = 5.0


def wait_for_redis(client: redis.Redis, stop: threading.Event) -> bool:
    """Block until Redis answers PING, backing off (capped) between tries. False if stopped first."""
    delay = BACKOFF_START_S
    while not stop.is_set():
        try:
            client.ping()
            return True
        except redis.RedisError as exc:
            log.warning("Redis not reachable (%s); retrying in %.1fs", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
    return False


def serve(loop: BatchLoop, recovery: Recovery, worker_id: str, incarnation: str, client: redis.Redis,
          stop: threading.Event) -> None:
    """Run batches until stopped. A Redis failure never stops the worker: reconnect with capped backoff, give
    back what it held (the window in hand is re-queued, not lost), go on. Commands are never retried blindly:
    a pop whose answer was lost is recovered from the in-flight list instead of being re-sent."""
    delay = BACKOFF_START_S
    while not loop.stopping:
        try:
            loop.run_once()
            delay = BACKOFF_START_S
        except WorkerIdTaken as exc:
            log.error("%s; stopping", exc)
            raise
        except redis.RedisError as exc:
            log.error("Redis error in the batch loop: %s", exc)
            stop.wait(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
            if wait_for_redis(client, stop):
                try:
                    recovery.release(worker_id, incarnation)
                except redis.RedisError as again:
                    log.error("could not give back in-flight messages yet: %s", again)


def backend_choice(predictor: Predictor) -> str:
    """BACKEND=auto's decision as JSON (the table /info shows); empty for a named backend or the simulated one."""
    choice = getattr(predictor, "choice", None)  # TransformersPredictor's, when it measured (or read) one
    return json.dumps(summary(choice)) if choice is not None else ""


def describe(worker_id: str, settings: WorkerSettings, predictor: Predictor, loop: BatchLoop,
             clock: RedisClock) -> Callable[[], dict[str, str | int]]:
    """The heartbeat hash: who the worker is, then what it has done (its counters and where its time went)."""
    identity = {
        "worker_id": worker_id,
        "host": socket.gethostname(),
        **predictor.card.fields(),  # model, labels, token limit, fingerprint, backend (BACKEND=auto: the one it chose)
        "device": predictor.device,
        "backend_setting": settings.backend,
        BACKEND_CHOICE_FIELD: backend_choice(predictor),
        "max_batch_size": settings.max_batch_size,
        "max_batch_tokens": loop.policy.max_batch_tokens,
        "started_at": f"{time.time():.3f}",
    }

    def fields() -> dict[str, str | int]:
        profile = {phase: f"{seconds:.3f}" for phase, seconds in asdict(loop.profile()).items()}
        # last_progress: when the batch loop last finished a step (a pop, a publish); lease_s: how long it may
        # hold a window without one. Far apart while it holds work: it is stalled (the reaper says so too).
        progress = {"last_progress": f"{loop.last_progress:.3f}", "lease_s": f"{loop.lease.seconds:.3f}",
                    "clock_offset_s": f"{clock.offset_s:.3f}"}
        return {**identity, **asdict(loop.totals), "last_batch_size": loop.last_batch_size, **progress, **profile}

    return fields


def pass_tracer(predictor: Predictor) -> PassObserver | None:
    """With tracing on (OTEL_TRACES_EXPORTER, common/tracing.py), what records a span per forward pass."""
    provider = tracer_provider_from_env("sentimentalyzer-worker")
    if provider is None:
        return None
    from worker.tracing import PassTracer

    return PassTracer(provider.get_tracer("sentimentalyzer.worker"), predictor.backend)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this process is in Redis: its worker id, and a token of this process (with the id it names the worker's
    connections, its registration and its lease, so a restart under the same id — a container: same hostname,
    PID 1 — is told apart from a second live process)."""

    worker_id: str
    incarnation: str


def build_loop(settings: WorkerSettings, predictor: Predictor, client: redis.Redis, who: Identity,
               clock: RedisClock) -> BatchLoop:
    """The batch loop over the Redis queue, with the batch policy of the settings."""
    queue = RedisRequestQueue(client, settings.served_keys(), settings.reply_ttl_s, who.worker_id,
                              who.incarnation, suspect_deaths=settings.dead_letter_policy().suspect_deaths, clock=clock)
    # MAX_BATCH_TOKENS unset: the budget the predictor runs best with (BACKEND=auto measured it).
    max_batch_tokens = predictor.max_batch_tokens if settings.max_batch_tokens is None else settings.max_batch_tokens
    policy = BatchPolicy(settings.max_batch_size, settings.max_batch_wait_ms / 1000, settings.idle_block_s,
                         max_batch_tokens, settings.work_lease_s)
    return BatchLoop(queue, predictor, policy, clock=clock, observer=pass_tracer(predictor))


def take_over_id(recovery: Recovery, who: Identity) -> bool:
    """Claim the worker id: refused (False) while another live process holds it. A worker id is reused when a
    container restarts (same hostname, PID 1): whatever the previous incarnation held, it died holding."""
    other = recovery.registered_elsewhere(who.worker_id, who.incarnation)
    if other is not None:
        log.error("worker id %r is in use by a live process (incarnation %s); give each worker its own "
                  "WORKER_ID (or leave it unset: <hostname>-<pid>)", who.worker_id, other)
        return False
    requeued, dead = recovery.recover(who.worker_id, RecoveryMode.DIED)
    if requeued or dead:
        log.warning("previous run of %s died holding %d message(s): %d re-queued, %d dead-lettered",
                    who.worker_id, requeued + dead, requeued, dead)
    return True


def heartbeat_of(settings: WorkerSettings, who: Identity, loop: BatchLoop, predictor: Predictor, clock: RedisClock,
                 on_id_taken: Callable[[str], object]) -> Heartbeat:
    """The heartbeat thread, with a client of its own (the main one may be blocked in a wait for work); after each
    beat it re-measures Redis's clock and runs the reaper."""
    keys = settings.served_keys()
    beat_client = sync_client(settings, longest_block_s=0, name=keys.connection_name(who.worker_id, who.incarnation))
    reaper = Recovery(beat_client, keys, reply_ttl_s=settings.reply_ttl_s, dead_letter=settings.dead_letter_policy(),
                      clock=clock)

    def after_beat() -> None:
        clock.sync(beat_client.time)  # clocks drift: re-measured once per beat, one cheap command
        reaper.reap(lock_ttl_s=settings.heartbeat_interval_s * 2)

    return Heartbeat(beat_client, keys, who.worker_id, who.incarnation, interval_s=settings.heartbeat_interval_s,
                     ttl_s=settings.heartbeat_ttl_s, describe=describe(who.worker_id, settings, predictor, loop, clock),
                     after_beat=after_beat, on_id_taken=on_id_taken)


DESCRIPTION = ("A model worker: takes windows of texts from the Redis queue, runs them through the model in batched "
               "forward passes and publishes the answers. Needs no port; run as many as the hardware takes.")


def main(argv: list[str] | None = None, prog: str = "python -m worker") -> int:
    parse_into_environment([WorkerSettings], argv, prog=prog, description=DESCRIPTION)
    settings = load_or_exit(WorkerSettings)
    check_or_exit()
    setup_logging(settings.log_level, "worker", settings.log_format)
    who = Identity(settings.worker_id or default_worker_id(), uuid.uuid4().hex[:12])
    try:
        predictor = load_predictor(settings)
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 2
    predictor.warm_up(settings.max_batch_size)

    clock = RedisClock()  # deadlines are compared on Redis's clock (common/clock.py)
    name = settings.served_keys().connection_name(who.worker_id, who.incarnation)
    client = sync_client(settings, longest_block_s=max(settings.idle_block_s, settings.max_batch_wait_ms / 1000),
                         name=name)
    recovery = Recovery(client, settings.served_keys(), reply_ttl_s=settings.reply_ttl_s,
                        dead_letter=settings.dead_letter_policy(), clock=clock)
    loop = build_loop(settings, predictor, client, who, clock)
    stop, id_taken = threading.Event(), threading.Event()

    def stop_after_batch() -> None:
        stop.set()
        loop.request_stop()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop_after_batch()

    def on_id_taken(other: str) -> None:
        log.error("worker id %r was registered by another live process (incarnation %s); stopping",
                  who.worker_id, other)
        id_taken.set()
        stop_after_batch()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not wait_for_redis(client, stop):
        return 0
    try:
        clock.sync(client.time)
        if not take_over_id(recovery, who):
            return 1
    except redis.RedisError as exc:
        log.error("could not recover this worker's previous in-flight messages: %s", exc)
        return 1
    heartbeat = heartbeat_of(settings, who, loop, predictor, clock, on_id_taken)
    try:
        heartbeat.start()  # the first beat also adds the model version to the deployment's models
    except redis.RedisError as exc:
        log.error("could not announce the worker: %s", exc)
        return 1
    log.info("worker %s ready: model %s as %s version %d, backend %s, max batch %d, token budget %d, queue %s",
             who.worker_id, predictor.name, settings.served_model_name, settings.model_version, predictor.backend,
             settings.max_batch_size, loop.policy.max_batch_tokens, settings.served_keys().requests)
    return run_until_stopped(loop, recovery, who, client, stop, heartbeat, id_taken)


def run_until_stopped(loop: BatchLoop, recovery: Recovery, who: Identity, client: redis.Redis,
                      stop: threading.Event, heartbeat: Heartbeat, id_taken: threading.Event) -> int:
    """Serve until stopped, then give back anything still held and withdraw. Exit 1 if another process took the id."""
    try:
        serve(loop, recovery, who.worker_id, who.incarnation, client, stop)
    except WorkerIdTaken:
        return 1
    finally:
        try:
            recovery.release(who.worker_id, who.incarnation)  # normally nothing: the batch in hand was published
        except redis.RedisError as exc:
            log.error("could not give back in-flight messages (the reaper will): %s", exc)
        heartbeat.stop()
    log.info("worker %s stopped after %d batches (%d texts)", who.worker_id, loop.totals.batches, loop.totals.texts)
    return 1 if id_taken.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
