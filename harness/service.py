"""The service as real processes: an API (``python -m api``) and workers (``python -m worker``) on one Redis, or
the naive server (``python -m naive``); readiness by the servers' own ``/readyz``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.keys import DEFAULT_MODEL_NAME, Keys
from harness.processes import Process, ProcessExited, free_port, python_env, stop_all, wait_while_alive


def live_workers(url: str) -> int:
    """Live workers as the server at ``url`` reports them on ``/readyz``: -1 if it does not answer, 0 if it is
    not ready (or has no workers: the naive server)."""
    try:
        # Plain HTTP: verify=False spares building a TLS context with the CA bundle (~15 ms of CPU per call, which
        # readiness polls every 0.1 s would spend while processes start).
        r = httpx.get(f"{url}/readyz", timeout=2, verify=False)
    except httpx.HTTPError:
        return -1
    return r.json().get("workers", 0) if r.status_code == 200 else 0


def ready(url: str, workers: int = 0) -> bool:
    """The server at ``url`` answers and reports at least ``workers`` live workers (the naive server has none)."""
    return live_workers(url) >= workers >= 0


@dataclass
class Service:
    """An API and its workers on one Redis, under a key prefix of their own. ``env`` is what every process gets
    (settings as environment variables, see common/settings.py); later workers get it as it is then."""

    url: str
    redis_url: str
    prefix: str
    env: dict[str, str]
    logs: Path
    api: Process
    worker_module: str = "worker"
    workers: list[Process] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        """The keys of the model version the workers serve unless told otherwise (``env``'s SERVED_MODEL_NAME and
        MODEL_VERSION)."""
        return Keys(self.prefix).served(self.env.get("SERVED_MODEL_NAME", DEFAULT_MODEL_NAME),
                                        int(self.env.get("MODEL_VERSION", "1")))

    def start_worker(self, name: str | None = None, env: Mapping[str, str] | None = None) -> Process:
        """Start a worker with ``env`` over the service's (another SERVED_MODEL_NAME, MODEL, MODEL_VERSION...)."""
        name = name or f"worker-{len(self.workers) + 1}"
        worker = Process.python(self.worker_module, {**self.env, **(env or {})}, self.logs / f"{name}.log", name=name)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> int:
        return live_workers(self.url)

    def wait_ready(self, workers: int, timeout: float = 90) -> None:
        """Until the API answers and exactly ``workers`` workers are live; on timeout, or as soon as the API exits,
        stop everything and raise with the processes' logs. (Workers are not watched: a test may have stopped one
        on purpose and wait for the others.)"""
        try:
            port = int(self.url.rsplit(":", 1)[1])
            wait_while_alive(self.api, lambda: self.live_workers() == workers and self.api.listens_on(port), timeout,
                             f"the API with {workers} live workers", interval=0.1)
        except (TimeoutError, ProcessExited) as failure:
            self.stop()
            raise AssertionError(f"service did not come up ({failure}):\n{self.dump_logs()}") from None

    def stop_workers(self) -> None:
        stop_all(self.workers)
        self.workers = []

    def stop(self) -> None:
        """The API first (no new work), then the workers together (each finishes its batch in hand)."""
        self.api.stop()
        stop_all(self.workers)

    def dump_logs(self) -> str:
        return "\n".join(f"--- {p.name} {p.pid}\n{p.output()[-3000:]}" for p in [self.api, *self.workers])


def start_service(redis_url: str, logs: Path, *, workers: int, env: Mapping[str, str], worker_module: str = "worker",
                  ready_timeout: float = 90) -> Service:
    """Start an API and ``workers`` workers on the Redis at ``redis_url`` under a fresh key prefix, and wait until
    they are all live. ``env``: settings for every process (MODEL, BACKEND, ...), over the service's defaults."""
    port = free_port()
    prefix = f"svc-{uuid.uuid4().hex[:8]}"
    environment = python_env(**{**env, "REDIS_URL": redis_url, "KEY_PREFIX": prefix, "PORT": str(port)})
    service = Service(f"http://127.0.0.1:{port}", redis_url, prefix, environment, logs,
                      Process.python("api", environment, logs / "api.log"), worker_module)
    for _ in range(workers):
        service.start_worker()
    service.wait_ready(workers, ready_timeout)
    return service


@dataclass
class NaiveServer:
    url: str
    process: Process

    def stop(self) -> int:
        return self.process.stop()


def start_naive(log: Path, *, env: Mapping[str, str], ready_timeout: float = 120) -> NaiveServer:
    """The naive baseline on a free port (``env``: MODEL, BACKEND, ...), ready when this returns."""
    port = free_port()
    server = NaiveServer(f"http://127.0.0.1:{port}",
                         Process.python("naive", python_env(**{**env, "PORT": str(port)}), log))
    try:
        wait_while_alive(server.process, lambda: ready(server.url) and server.process.listens_on(port), ready_timeout,
                         "the naive server", interval=0.2)
    except (TimeoutError, ProcessExited) as failure:
        server.stop()
        raise AssertionError(f"naive server did not come up ({failure}):\n{server.process.output()[-3000:]}") from None
    return server
