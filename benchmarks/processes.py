"""Real processes of the project's entry points, for the benchmarks and the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def python_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(overrides)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's or LitServe's worker processes), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class RedisServer:
    """A private redis-server on a free port (in memory, noeviction, 10 ms timer like production)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--maxmemory-policy", "noeviction", "--hz", "100"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url)
        wait_until(self._answers, 10, "redis-server to start")

    @classmethod
    def on_port(cls, port: int, workdir: Path) -> "RedisServer":
        """A new, empty server on a given port (a restarted Redis)."""
        return cls(workdir, port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Process:
    """A project entry point (``python -m <module>``) as a child process, its output in a log file.

    ``group=True`` runs it in its own process group and signals the whole group: for servers that spawn
    processes of their own and don't pass signals on (LitServe's inference workers would outlive it)."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path, *args: str, group: bool = False) -> None:
        self.module = module
        self.log_path = log_path
        self.group = group
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=group)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.group:
            try:
                os.killpg(self.proc.pid, signum)  # the group outlives its leader: signal it even if the leader is gone
            except ProcessLookupError:
                pass
        elif self.alive():
            self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int | None:
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            code = self.proc.wait()
        if self.group:
            self._reap_group(timeout)
        self._log.close()
        return code

    def _reap_group(self, timeout: float) -> None:
        """Wait for the rest of the process group to exit after SIGTERM; SIGKILL what is left."""
        def gone() -> bool:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        try:
            wait_until(gone, timeout, f"the process group of {self.module} to exit", interval=0.1)
        except TimeoutError:
            self.signal(signal.SIGKILL)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")
