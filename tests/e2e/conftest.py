from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import service as harness
from harness.service import Service

# Every e2e service: one torch thread per process (the machine has 2 cores for everything), and heartbeats,
# death detection and idle wake-ups faster than the defaults, so that start, failover and shutdown happen within
# a test's seconds.
E2E_SETTINGS = dict(TORCH_THREADS="1", LOG_LEVEL="INFO", HEARTBEAT_INTERVAL_S="0.5", HEARTBEAT_TTL_S="3",
                    IDLE_BLOCK_S="0.5")


def start_service(redis_url: str, model: Path | str, logs: Path, *, workers: int, worker_module: str = "worker",
                  **env: str) -> Service:
    """Redis + API + N workers, each a real process of the project's entry points (harness.service)."""
    return harness.start_service(redis_url, logs, workers=workers, worker_module=worker_module,
                                 env={**E2E_SETTINGS, "MODEL": str(model), **env})


@pytest.fixture(scope="module")
def service(redis_server, tiny_model, tmp_path_factory) -> Iterator[Service]:
    svc = start_service(redis_server.url, tiny_model, tmp_path_factory.mktemp("logs"), workers=2,
                        MAX_BATCH_SIZE="16", MAX_BATCH_TOKENS="256")
    yield svc
    svc.stop()
