from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import service as harness
from harness.service import Service

# Every e2e service runs the default reliability settings (heartbeats, leases, deadlines). Changed, as a user
# would on such a machine: one torch thread per process (2 cores for everything), and idle workers re-checking
# for SIGTERM every 0.5 s instead of 1 s, so that the tests' many shutdowns take less time.
E2E_SETTINGS = dict(TORCH_THREADS="1", LOG_LEVEL="INFO", IDLE_BLOCK_S="0.5")


def start_service(redis_url: str, model: Path | str, logs: Path, *, workers: int, worker_module: str = "worker",
                  **env: str) -> Service:
    """Redis + API + N workers, each a real process of the project's entry points (harness.service)."""
    return harness.start_service(redis_url, logs, workers=workers, worker_module=worker_module,
                                 env={**E2E_SETTINGS, "MODEL": str(model), **env})


@pytest.fixture(scope="session")
def service(redis_server, tiny_model, tmp_path_factory) -> Iterator[Service]:
    """The shared service of the tests that leave it as they found it (2 live workers): started once per run (per
    pytest-xdist worker), as starting an API and 2 workers costs ~6 s of CPU."""
    svc = start_service(redis_server.url, tiny_model, tmp_path_factory.mktemp("logs"), workers=2,
                        MAX_BATCH_SIZE="16", MAX_BATCH_TOKENS="256")
    yield svc
    svc.stop()
