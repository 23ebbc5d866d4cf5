"""``python -m launcher --workers 2``: start redis-server (unless REDIS_URL already answers), the API and N
workers; stream their logs with a prefix; stop them all on Ctrl-C / SIGTERM (or when one dies).

Settings reach the children through the environment (see common.settings), e.g.
``MODEL=models/bench TORCH_THREADS=1 python -m launcher --workers 2``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from urllib.parse import urlparse

import redis

from common.settings import SharedSettings
from harness.processes import Process, RedisServer, python_env, stop_all

STOP_GRACE_S = 20.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def say(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="model worker processes (default 1)")
    parser.add_argument("--no-api", action="store_true", help="start workers only")
    args = parser.parse_args(argv)

    settings = SharedSettings()
    url = settings.redis_url
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(flush=True)
        say(f"{signal.Signals(signum).name}: stopping")
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    own_redis = None
    if settings.redis_sentinels:
        say(f"using the master Sentinel ({settings.redis_sentinels}) names {settings.redis_sentinel_master}")
    elif redis_answers(url):
        say(f"using the Redis at {urlparse(url).hostname}:{urlparse(url).port}")
    elif urlparse(url).hostname not in LOCAL_HOSTS:
        say(f"REDIS_URL {url} does not answer and is not local: start that Redis first")
        return 1
    else:
        try:
            own_redis = RedisServer(port=urlparse(url).port or 6379, log=None)
        except (RuntimeError, TimeoutError) as exc:
            say(f"redis-server did not come up: {exc}")
            return 1
        say(f"started redis (pid {own_redis.pid}) on port {own_redis.port}")

    # Each child runs in a session of its own (harness.processes.Process): Ctrl-C reaches the launcher only,
    # which stops them in order.
    env = python_env(offline=False)
    workers = [Process.python("worker", env, None, name=f"worker-{i + 1}") for i in range(args.workers)]
    api = [] if args.no_api else [Process.python("api", env, None, name="api")]
    for proc in [*workers, *api]:
        say(f"started {proc.name} (pid {proc.pid})")

    exit_code = 0
    while not stop_requested.wait(0.2):
        dead = next((p for p in [*api, *workers] if not p.alive()), None)
        if dead is not None:
            say(f"{dead.name} exited unexpectedly ({dead.proc.returncode}): stopping all")
            exit_code = 1
            break
    # Order: the API first (no new work), then the workers (they finish their batches), Redis last.
    for group in (api, workers):
        for proc, code in zip(group, stop_all(group, STOP_GRACE_S)):
            say(f"{proc.name} exited with {code}")
    if own_redis is not None:
        say(f"redis exited with {own_redis.stop()}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
