"""``python -m launcher --workers 2``: start redis-server (unless REDIS_URL already answers), the API and N
workers; stream their logs with a prefix; stop them all on Ctrl-C / SIGTERM (or when one dies).

Settings reach the children through the environment (see common.settings), e.g.
``MODEL=models/bench TORCH_THREADS=1 python -m launcher --workers 2``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

from common.settings import SharedSettings

STOP_GRACE_S = 20.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def redis_server_command(url: str) -> list[str]:
    """A throwaway local redis-server for REDIS_URL: in memory only, never evicting queue items, and with a
    10 ms timer so that short blocking waits (MAX_BATCH_WAIT_MS) end on time."""
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"REDIS_URL {url} does not answer and is not local: start that Redis first")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it (Debian/Ubuntu: apt-get install -y redis-server) "
                         "or point REDIS_URL at a running Redis")
    return [binary, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--hz", "100"]


class Children:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # Ctrl-C reaches us only; we stop the children in order
        self.procs[name] = proc
        threading.Thread(target=self._pipe, args=(name, proc), daemon=True).start()
        print(f"[launcher] started {name} (pid {proc.pid}): {' '.join(command)}", flush=True)
        return proc

    @staticmethod
    def _pipe(name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    def first_exited(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def stop(self, names: list[str]) -> None:
        """SIGTERM the named children together, then wait; SIGKILL whoever outlives the grace period."""
        for name in names:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[launcher] {name} did not stop in {STOP_GRACE_S:.0f}s: killing it", flush=True)
                proc.kill()
                proc.wait()
            print(f"[launcher] {name} exited with {proc.returncode}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="model worker processes (default 1)")
    parser.add_argument("--no-api", action="store_true", help="start workers only")
    args = parser.parse_args(argv)

    shared = SharedSettings()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    python = sys.executable
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    children = Children()
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"\n[launcher] {signal.Signals(signum).name}: stopping", flush=True)
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if not redis_answers(shared.redis_url):
        children.start("redis", redis_server_command(shared.redis_url), env)
        deadline = time.monotonic() + 10
        while not redis_answers(shared.redis_url):
            if time.monotonic() > deadline or children.first_exited():
                children.stop(list(children.procs))
                print("[launcher] redis-server did not come up", flush=True)
                return 1
            stop_requested.wait(0.1)
    else:
        print(f"[launcher] using the Redis at {urlparse(shared.redis_url).hostname}:{urlparse(shared.redis_url).port}",
              flush=True)

    workers = [f"worker-{i + 1}" for i in range(args.workers)]
    for name in workers:
        children.start(name, [python, "-m", "worker"], env)
    if not args.no_api:
        children.start("api", [python, "-m", "api"], env)

    exit_code = 0
    while not stop_requested.wait(0.2):
        dead = children.first_exited()
        if dead is not None:
            print(f"[launcher] {dead} exited unexpectedly ({children.procs[dead].returncode}): stopping all", flush=True)
            exit_code = 1
            break
    # Order: the API first (no new work), then the workers (they finish their batches), Redis last.
    order = [n for n in ("api",) if n in children.procs] + workers + [n for n in ("redis",) if n in children.procs]
    children.stop(order)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
