from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers import Process, free_port, python_env, wait_until


@dataclass
class Service:
    """Redis + API + N workers, each a real process of the project's entry points."""

    url: str
    redis_url: str
    prefix: str
    env: dict[str, str]
    logs: Path
    api: Process | None = None
    workers: list[Process] = field(default_factory=list)

    worker_module: str = "worker"

    def start_worker(self, name: str) -> Process:
        worker = Process(self.worker_module, self.env, self.logs / f"{name}.log")
        self.workers.append(worker)
        return worker

    def live_workers(self) -> int:
        try:
            r = httpx.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return -1
        return r.json().get("workers", 0) if r.status_code == 200 else 0

    def stop(self) -> None:
        for proc in [self.api, *self.workers]:
            if proc is not None:
                proc.stop()

    def dump_logs(self) -> str:
        return "\n".join(f"--- {p.module} {p.pid}\n{p.output()[-3000:]}" for p in [self.api, *self.workers] if p)


def start_service(redis_url: str, model: Path | str, logs: Path, *, workers: int, worker_module: str = "worker",
                  **env: str) -> Service:
    port = free_port()
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    settings = dict(REDIS_URL=redis_url, KEY_PREFIX=prefix, MODEL=str(model), PORT=str(port), TORCH_THREADS="1",
                    LOG_LEVEL="INFO", HEARTBEAT_INTERVAL_S="0.5", HEARTBEAT_TTL_S="3", IDLE_BLOCK_S="0.5")
    environment = python_env(**{**settings, **env})
    service = Service(f"http://127.0.0.1:{port}", redis_url, prefix, environment, logs, worker_module=worker_module)
    service.api = Process("api", environment, logs / "api.log")
    for i in range(workers):
        service.start_worker(f"worker-{i + 1}")
    try:
        wait_until(lambda: service.live_workers() == workers, 90, f"API ready with {workers} workers", interval=0.2)
    except TimeoutError:
        service.stop()
        raise AssertionError(f"service did not come up:\n{service.dump_logs()}") from None
    return service


@pytest.fixture(scope="module")
def service(redis_server, tiny_model, tmp_path_factory) -> Iterator[Service]:
    svc = start_service(redis_server.url, tiny_model, tmp_path_factory.mktemp("logs"), workers=2,
                        MAX_BATCH_SIZE="16", MAX_BATCH_TOKENS="256")
    yield svc
    svc.stop()
