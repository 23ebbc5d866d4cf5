"""The systems under test, each started as real processes on loopback (harness/), with what the benchmarks read
of them: CPU per role, and for the batched service the batch sizes and worker profile from Redis."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from common.counters import PHASES
from common.keys import Keys
from harness.processes import Process, RedisServer, children, cpu_seconds, free_port, python_env, wait_while_alive
from harness.service import start_naive, start_service

K = TypeVar("K")
T = TypeVar("T")


@dataclass
class System:
    name: str
    url: str
    processes: dict[str, int]  # role -> pid, for CPU accounting
    redis: RedisServer | None = None
    keys: Keys | None = None

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(pid) for role, pid in self.processes.items()}

    def batch_sizes(self) -> dict[int, int]:
        if self.redis is None or self.keys is None:
            return {}
        raw = self.redis.client.hgetall(self.keys.batch_sizes)
        return {int(k): int(v) for k, v in raw.items()}

    def pass_counts(self) -> tuple[int, int]:
        """Texts answered by forward passes and passes run so far, summed over workers (the stats hash)."""
        if self.redis is None or self.keys is None:
            return 0, 0
        texts, passes = self.redis.client.hmget(self.keys.stats, "texts", "batches")
        return int(texts or 0), int(passes or 0)

    def worker_profile(self) -> dict[str, float]:
        """Cumulative seconds per phase, summed over workers, from their heartbeat hashes."""
        if self.redis is None or self.keys is None:
            return {}
        total = dict.fromkeys(PHASES, 0.0)
        for member in self.redis.client.hkeys(self.keys.workers):
            beat = self.redis.client.hgetall(self.keys.heartbeat(member.decode()))
            for name in PHASES:
                total[name] += float(beat.get(name.encode(), 0))
        return total


def warm_up(url: str, texts: list[str], n: int = 20) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for text in texts[:n]:
            client.post("/predict", json={"text": text}).raise_for_status()


@contextmanager
def naive_system(model: str, logs: Path, env: dict[str, str]) -> Iterator[System]:
    naive = start_naive(logs / "naive.log", env={**env, "MODEL": model})
    try:
        yield System("naive", naive.url, {"naive": naive.process.pid})
    finally:
        naive.stop()


def litserve_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2, verify=False).status_code == 200  # plain HTTP: no TLS context
    except httpx.HTTPError:
        return False


@contextmanager
def litserve_system(model: str, logs: Path, env: dict[str, str], *, max_batch_size: int,
                    batch_timeout_s: float) -> Iterator[System]:
    """The peer: the same model and predictor code behind LitServe's own batching (benchmarks/peers)."""
    port = free_port()
    environment = python_env(MODEL=model, PORT=str(port), LITSERVE_MAX_BATCH_SIZE=str(max_batch_size),
                             LITSERVE_BATCH_TIMEOUT_S=str(batch_timeout_s), **env)
    proc = Process.python("benchmarks.peers.litserve_server", environment, logs / "litserve.log", group=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_while_alive(proc, lambda: litserve_ready(url), 180, "LitServe ready", interval=0.2)
        yield System("litserve", url, {"litserve": proc.pid, **{f"litserve-{i + 1}": c
                                                               for i, c in enumerate(children(proc.pid))}})
    finally:
        # Not the 30 s a clean exit is given: after load, a process of LitServe's outlived SIGTERM for all of them
        # (seen in the quick benchmark, its API process gone); how LitServe ends is not what is measured.
        proc.stop(timeout=5)


@contextmanager
def batched_system(model: str, logs: Path, env: dict[str, str], *, workers: int) -> Iterator[System]:
    redis = RedisServer(logs)
    try:
        # Heartbeats every 0.5 s: the worker profile read from them at the end of a run is at most that stale.
        service = start_service(redis.url, logs, workers=workers, ready_timeout=180,
                                env={**env, "MODEL": model, "HEARTBEAT_INTERVAL_S": "0.5"})
        try:
            processes = {"api": service.api.pid, "redis": redis.pid}
            processes.update({w.name: w.pid for w in service.workers})
            yield System("batched", service.url, processes, redis, service.keys)
        finally:
            service.stop()
    finally:
        redis.stop()


class Entry(Generic[T]):
    """One system of a ``Lineup``: its context manager, made when it starts, and what entering it gave."""

    def __init__(self, factory: Callable[[], AbstractContextManager[T]]) -> None:
        self.factory = factory
        self.started: Future[T] | None = None
        self.stopped: Future[None] | None = None
        self._manager: AbstractContextManager[T] | None = None
        self._lock = threading.Lock()

    def enter(self) -> T:
        manager = self.factory()
        value = manager.__enter__()
        self._manager = manager
        return value

    def exit(self, *exc_info: Any) -> None:
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.__exit__(*(exc_info or (None, None, None)))


class Lineup:
    """The systems a benchmark measures one after another, each given as a function that makes its context
    manager (``lambda: naive_system(...)``).

    In turn (``ahead=False``, the full runs): a system starts when it is first asked for (``get``) and stops when
    done with (``stop``), so that nothing else runs while one is measured. Ahead (``ahead=True``, the quick runs,
    which check that everything works rather than measure): systems start in background threads in the order they
    are added, one per core at a time (each start is mostly a process importing and loading on one core: more at
    once would only slow them all down), so that the start-ups overlap each other and the measurements of the
    systems before them; ``stop`` stops one in the background. A system's factory may ``get`` one added before
    it, which it then waits for. Leaving the lineup stops what still runs, after waiting for every start."""

    def __init__(self, *, ahead: bool) -> None:
        self.ahead = ahead
        self._starts = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="start") if ahead else None
        self._stops = ThreadPoolExecutor(16, thread_name_prefix="stop") if ahead else None
        self._entries: list[Entry[Any]] = []
        self._later: list[Future[Any]] = []

    def add(self, factory: Callable[[], AbstractContextManager[T]]) -> Entry[T]:
        entry = Entry(factory)
        self._entries.append(entry)
        if self._starts is not None:
            entry.started = self._starts.submit(entry.enter)
        return entry

    def get(self, entry: Entry[T]) -> T:
        """The started system (started now, in turn; waited for, ahead). Still given after ``stop``."""
        if entry.started is None:
            started: Future[T] = Future()
            entry.started = started
            try:
                started.set_result(entry.enter())
            except BaseException as error:
                started.set_exception(error)
                raise
        return entry.started.result()

    def as_started(self, entries: Mapping[K, Entry[T]]) -> Iterator[tuple[K, T]]:
        """``(key, system)`` for each entry: in turn, in the given order, each started when the previous one is
        done with; ahead, in the order their starts end, so that no started system waits for a slower one."""
        if self._starts is None:
            for key, entry in entries.items():
                yield key, self.get(entry)
            return
        keys = {entry.started: key for key, entry in entries.items()}
        for started in as_completed(keys):
            yield keys[started], started.result()

    def stop(self, entry: Entry[Any]) -> None:
        if self._stops is None:
            entry.exit()
        elif entry.stopped is None:
            entry.stopped = self._stops.submit(entry.exit)

    def stop_later(self, stop: Callable[[], object]) -> None:
        """Stop something that is not a system of the lineup (``stop`` stops it): now in turn, in the background
        ahead (waited for on leaving)."""
        if self._stops is None:
            stop()
        else:
            self._later.append(self._stops.submit(stop))

    def __enter__(self) -> Lineup:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is not None:  # what has not started yet need not
            for entry in self._entries:
                if entry.started is not None:
                    entry.started.cancel()
        for entry in self._entries:
            if entry.started is not None:
                wait(entry.started)  # a failed start: its error is raised where it is asked for
        errors = [error for stopping in self._later if (error := wait(stopping))]
        for entry in reversed(self._entries):  # the later ones may use the earlier ones (a Redis)
            error = wait(entry.stopped) if entry.stopped is not None else None
            try:
                entry.exit(*exc_info)
            except BaseException as failure:  # stop the others first
                error = error or failure
            if error:
                errors.append(error)
        for pool in (self._starts, self._stops):
            if pool is not None:
                pool.shutdown()
        if errors and exc_info[0] is None:
            raise errors[0]


def wait(future: Future[Any]) -> BaseException | None:
    """Wait for ``future``; what it raised, if anything (cancelled: nothing)."""
    try:
        future.result()
    except CancelledError:
        return None
    except BaseException as error:
        return error
    return None
