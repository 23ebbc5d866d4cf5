"""The systems under test, each started as real processes on loopback (harness/), with what the benchmarks read
of them: CPU per role, and for the batched service the batch sizes and worker profile from Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.counters import PHASES
from common.keys import Keys
from harness.processes import Process, RedisServer, children, cpu_seconds, free_port, python_env, wait_until
from harness.service import start_naive, start_service


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
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
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
        wait_until(lambda: litserve_ready(url), 180, "LitServe ready", interval=0.2)
        yield System("litserve", url, {"litserve": proc.pid, **{f"litserve-{i + 1}": c
                                                               for i, c in enumerate(children(proc.pid))}})
    finally:
        proc.stop()


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
