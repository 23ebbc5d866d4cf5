"""The two systems under test, each started as real processes on loopback."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.processes import Process, RedisServer, children, cpu_seconds, free_port, python_env, wait_until

PROFILE_FIELDS = ("pop_s", "decode_s", "infer_s", "tokenize_s", "forward_s", "publish_s")


@dataclass
class System:
    name: str
    url: str
    processes: dict[str, int]  # role -> pid, for CPU accounting
    redis: RedisServer | None = None
    prefix: str | None = None

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(pid) for role, pid in self.processes.items()}

    def batch_sizes(self) -> dict[int, int]:
        if self.redis is None:
            return {}
        raw = self.redis.client.hgetall(f"{self.prefix}:stats:batch_sizes")
        return {int(k): int(v) for k, v in raw.items()}

    def worker_profile(self) -> dict[str, float]:
        """Cumulative seconds per phase, summed over workers, from their heartbeat hashes."""
        if self.redis is None:
            return {}
        total = dict.fromkeys(PROFILE_FIELDS, 0.0)
        for member in self.redis.client.smembers(f"{self.prefix}:workers"):
            beat = self.redis.client.hgetall(f"{self.prefix}:worker:{member.decode()}")
            for name in PROFILE_FIELDS:
                total[name] += float(beat.get(name.encode(), 0))
        return total


def service_ready(url: str, workers: int, *, exact: bool = False) -> bool:
    """``/readyz`` answers 200 with at least (``exact``: exactly) ``workers`` live workers."""
    try:
        r = httpx.get(f"{url}/readyz", timeout=2)
    except httpx.HTTPError:
        return False
    if r.status_code != 200:
        return False
    live = r.json().get("workers", workers)
    return live == workers if exact else live >= workers


def warm_up(url: str, texts: list[str], n: int = 20) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for text in texts[:n]:
            client.post("/predict", json={"text": text}).raise_for_status()


@contextmanager
def naive_system(model: str, logs: Path, env: dict[str, str]) -> Iterator[System]:
    port = free_port()
    proc = Process("naive", python_env(MODEL=model, PORT=str(port), **env), logs / "naive.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: service_ready(url, 0), 120, "naive server ready", interval=0.2)
        yield System("naive", url, {"naive": proc.pid})
    finally:
        proc.stop()


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
    proc = Process("benchmarks.peers.litserve_server",
                   python_env(MODEL=model, PORT=str(port), LITSERVE_MAX_BATCH_SIZE=str(max_batch_size),
                              LITSERVE_BATCH_TIMEOUT_S=str(batch_timeout_s), **env),
                   logs / "litserve.log", group=True)
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
    port = free_port()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    environment = python_env(REDIS_URL=redis.url, KEY_PREFIX=prefix, MODEL=model, PORT=str(port),
                             HEARTBEAT_INTERVAL_S="0.5", HEARTBEAT_TTL_S="5", **env)
    api = Process("api", environment, logs / "api.log")
    worker_procs = [Process("worker", environment, logs / f"worker-{i + 1}.log") for i in range(workers)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: service_ready(url, workers), 180, f"batched service ready with {workers} workers", interval=0.2)
        processes = {"api": api.pid, "redis": redis.pid}
        processes.update({f"worker-{i + 1}": w.pid for i, w in enumerate(worker_procs)})
        yield System("batched", url, processes, redis, prefix)
    finally:
        api.stop()
        for w in worker_procs:
            w.stop()
        redis.stop()
