"""API entry point: ``python -m api`` runs ``API_PROCESSES`` uvicorn servers on one port.

With several processes each binds its own ``SO_REUSEPORT`` listening socket, so the kernel spreads new
connections evenly over them. (uvicorn's own ``--workers`` shares one socket: whichever process wakes first
accepts a whole burst of connections, and with keep-alive clients one process ends up serving most of the
load while the others idle — measured in the scale-out benchmark, docs/benchmarks.md.) A process that dies is
restarted; SIGTERM/SIGINT drain them all (admitted requests finish) and exit 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import uvicorn

from api.http_protocol import CoalescingHttpToolsProtocol
from api.settings import ApiSettings
from common.cli import parse_into_environment
from common.logs import setup_logging
from common.settings import load_or_exit
from common.tracing import check_or_exit

log = logging.getLogger("api")

DESCRIPTION = ("The API: HTTP in (our JSON, text-embeddings-inference's /predict and /info, the Hugging Face Inference "
               "API's shape, the Open Inference Protocol v2), texts onto the Redis queue, the workers' answers back.")

# A process that dies sooner than this after its start is not restarted: it would only die again (port taken,
# bad settings); the whole API exits non-zero instead of crash-looping.
MIN_UPTIME_S = 10.0


def _ignore_signals() -> None:
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handlers it found at start, so the
    # default ones would turn a clean drain into death-by-signal (exit 143). A drained shutdown exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)


def _config(settings: ApiSettings) -> uvicorn.Config:
    return uvicorn.Config(
        "api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # httptools, each response in one write (api/http_protocol.py)
        log_level=settings.log_level.lower(),
        access_log=False,  # uvicorn's line costs more than the request itself at high rates; ours is ACCESS_LOG's
        log_config=None,  # uvicorn's lines go through our handler (setup_logging): LOG_FORMAT's format
        # SIGTERM: stop accepting, let admitted requests finish (they end by their deadline at the latest).
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 2,
        limit_concurrency=None,  # admission is the gateway's job (429 with Retry-After, not 503)
    )


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind to the same address too (Linux: SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_one(shared_port: bool) -> None:
    """One API server process. ``shared_port``: bind with SO_REUSEPORT beside the other processes."""
    settings = ApiSettings()
    setup_logging(settings.log_level, "api", settings.log_format)  # a spawned process starts with no logging set up
    _ignore_signals()
    server = uvicorn.Server(_config(settings))
    server.run(sockets=[reuse_port_socket(settings.host, settings.port)] if shared_port else None)


def shared_metrics_dir(settings: ApiSettings) -> tuple[Path, bool]:
    """The servers' prometheus-client multiprocess directory, empty, in the environment they inherit (the library
    reads it at import: before any server starts). Returns it and whether it is ours to remove at exit."""
    if settings.prometheus_multiproc_dir is not None:
        path, own = settings.prometheus_multiproc_dir, False
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's values would be summed with ours
            stale.unlink()
    else:
        path, own = Path(tempfile.mkdtemp(prefix="sentimentalyzer-metrics-")), True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path, own


def supervise(count: int, metrics_dir: Path) -> int:
    """Run ``count`` server processes; restart any that dies; on SIGTERM/SIGINT stop them all and wait."""
    from prometheus_client import multiprocess  # after PROMETHEUS_MULTIPROC_DIR is set

    context = multiprocessing.get_context("spawn")
    stopping = False

    started: dict[int, float] = {}

    def start() -> BaseProcess:
        proc = context.Process(target=serve_one, args=(True,), name="api-server")
        proc.start()
        started[proc.pid] = time.monotonic()
        return proc

    procs = [start() for _ in range(count)]

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s: draining %d API processes", signal.Signals(signum).name, len(procs))
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn drains

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed = False
    while procs:
        # Blocks until a process exits: no polling.
        multiprocessing.connection.wait([p.sentinel for p in procs])
        for proc in [p for p in procs if not p.is_alive()]:
            procs.remove(proc)
            # Its counters and histograms stay in the sums (a restart is no reset); its live gauges go.
            multiprocess.mark_process_dead(proc.pid, str(metrics_dir))
            if stopping:
                continue
            uptime = time.monotonic() - started.pop(proc.pid)
            if uptime < MIN_UPTIME_S:
                log.error("API process %d exited with %s after %.1fs; stopping the others", proc.pid,
                          proc.exitcode, uptime)
                failed = True
                on_signal(signal.SIGTERM, None)
            else:
                log.error("API process %d exited with %s; starting another", proc.pid, proc.exitcode)
                procs.append(start())
    return 1 if failed else 0


def main(argv: list[str] | None = None, prog: str = "python -m api") -> int:
    parse_into_environment([ApiSettings], argv, prog=prog, description=DESCRIPTION)
    settings = load_or_exit(ApiSettings)
    check_or_exit()
    setup_logging(settings.log_level, "api", settings.log_format)
    if settings.api_processes == 1:
        serve_one(shared_port=False)
        return 0
    metrics_dir, own = shared_metrics_dir(settings)
    try:
        return supervise(settings.api_processes, metrics_dir)
    finally:
        if own:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
