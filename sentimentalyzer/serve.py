"""``sentimentalyzer serve --workers 2``: start redis-server (unless REDIS_URL already answers), the API and N
workers on this machine; stream their logs with a prefix; say where the service is once it is ready; stop them all
on Ctrl-C / SIGTERM (or when one dies).

Every setting of the API and the workers is a flag here too (``--help``), or an environment variable, e.g.
``MODEL=models/bench TORCH_THREADS=1 sentimentalyzer serve --workers 2``.
"""

from __future__ import annotations

import argparse
import signal
import threading
import urllib.error
import urllib.request
from urllib.parse import urlparse

import redis

from api.settings import ApiSettings
from common.cli import parse_into_environment
from common.logs import redact_url
from common.settings import SharedSettings, load_or_exit
from harness.processes import Process, RedisServer, python_env, stop_all
from worker.settings import WorkerSettings

STOP_GRACE_S = 20.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
READY_POLL_S = 0.5


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def say(message: str) -> None:
    print(f"[serve] {message}", flush=True)


def own_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="model worker processes (default 1)")
    parser.add_argument("--no-api", action="store_true", help="start workers only")


def start_redis_if_needed(settings: SharedSettings) -> tuple[bool, RedisServer | None]:
    """(usable, the redis-server started here if any): REDIS_URL's Redis or the Sentinels' master if they answer,
    else a local redis-server on REDIS_URL's port."""
    url = settings.redis_url
    where = redact_url(url)
    if settings.redis_sentinels:
        say(f"using the master Sentinel ({settings.redis_sentinels}) names {settings.redis_sentinel_master}")
        return True, None
    if redis_answers(url):
        say(f"using the Redis at {where}")
        return True, None
    if urlparse(url).hostname not in LOCAL_HOSTS:
        say(f"REDIS_URL {where} does not answer and is not local: start that Redis first")
        return False, None
    try:
        own = RedisServer(port=urlparse(url).port or 6379, log=None)
    except (RuntimeError, TimeoutError) as exc:
        say(f"redis-server did not come up: {exc}")
        return False, None
    say(f"started redis (pid {own.pid}) on port {own.port}")
    return True, own


def ready_url(settings: ApiSettings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else "[::1]" if settings.host == "::" else settings.host
    return f"http://{host}:{settings.port}"


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None, prog: str = "sentimentalyzer serve") -> int:
    args = parse_into_environment([ApiSettings, WorkerSettings], argv, prog=prog, description=__doc__.split("\n\n")[0],
                                  extra=own_arguments)
    api_settings, _ = load_or_exit(ApiSettings), load_or_exit(WorkerSettings)  # refused here, not in a child
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(flush=True)
        say(f"{signal.Signals(signum).name}: stopping")
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    usable, own_redis = start_redis_if_needed(api_settings)
    if not usable:
        return 1
    # Each child runs in a session of its own (harness.processes.Process): Ctrl-C reaches this process only, which
    # stops them in order.
    env = python_env(offline=False)
    workers = [Process.python("worker", env, None, name=f"worker-{i + 1}") for i in range(args.workers)]
    api = [] if args.no_api else [Process.python("api", env, None, name="api")]
    for proc in [*workers, *api]:
        say(f"started {proc.name} (pid {proc.pid})")
    exit_code = watch(api, workers, stop_requested, None if args.no_api else ready_url(api_settings))
    # Order: the API first (no new work), then the workers (they finish their batches), Redis last.
    for group in (api, workers):
        for proc, code in zip(group, stop_all(group, STOP_GRACE_S)):
            say(f"{proc.name} exited with {code}")
    if own_redis is not None:
        say(f"redis exited with {own_redis.stop()}")
    return exit_code


def watch(api: list[Process], workers: list[Process], stop_requested: threading.Event, url: str | None) -> int:
    """Until stopped (0) or a child dies (1); says once where the service is, when its /readyz first says ready."""
    announced = url is None
    while not stop_requested.wait(READY_POLL_S if not announced else 0.2):
        dead = next((p for p in [*api, *workers] if not p.alive()), None)
        if dead is not None:
            say(f"{dead.name} exited unexpectedly ({dead.proc.returncode}): stopping all")
            return 1
        if not announced and url is not None and is_ready(url):
            say(f"ready at {url} (docs: {url}/docs; Ctrl-C stops everything)")
            announced = True
    return 0
