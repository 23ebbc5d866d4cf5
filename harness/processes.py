"""Child processes: the project's entry points and a private redis-server, started, watched and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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


class ProcessExited(RuntimeError):
    """A process we were waiting on exited first: what we waited for will not happen."""


def wait_while_alive(process: Process, condition: Callable[[], bool], timeout: float, what: str,
                     interval: float = 0.05) -> None:
    """``wait_until``, but give up as soon as ``process`` exits: a server that failed to start (its port taken, a
    bad setting) will never answer, and waiting out the timeout only delays its log reaching the reader."""
    def met() -> bool:
        if not process.alive():
            raise ProcessExited(f"{process.name} exited with code {process.proc.returncode} while waiting for {what}")
        return condition()

    wait_until(met, timeout, what, interval)


def python_env(*, offline: bool = True, **overrides: str) -> dict[str, str]:
    """Our environment for a child running the project's code: this checkout first on the path, unbuffered
    output, and (``offline``, for tests and benchmarks) no Hugging Face Hub access."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if offline:
        env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(overrides)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the API's server processes, LitServe's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _listening_sockets(port: int) -> set[str] | None:
    """The sockets listening on ``port`` (any address), as /proc/<pid>/fd links name them: ``socket:[inode]``; None
    where there is no /proc to read them from (not Linux)."""
    found: set[str] = set()
    tables = [Path(t) for t in ("/proc/net/tcp", "/proc/net/tcp6") if Path(t).exists()]
    if not tables:
        return None
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(f"socket:[{fields[9]}]")
    return found


class Process:
    """A child process; its output goes to a log file, or (``log=None``) to ours, each line prefixed ``[name]``.

    It runs in a session of its own, so a Ctrl-C at our terminal reaches us only and we stop children in order.
    Signals go to the process; ``group=True`` sends them to its whole process group instead: for servers that
    spawn processes of their own and don't pass signals on (LitServe's inference workers would outlive it)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log: Path | None, *, name: str,
                 group: bool = False) -> None:
        self.name = name
        self.log_path = log
        self.group = group
        self._log = open(log, "wb") if log is not None else None
        self.proc = subprocess.Popen(list(command), cwd=ROOT, env=dict(env),
                                     stdout=self._log or subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if self._log is None:
            threading.Thread(target=self._stream, name=f"output of {name}", daemon=True).start()

    @classmethod
    def python(cls, module: str, env: Mapping[str, str], log: Path | None, *args: str, name: str | None = None,
               group: bool = False) -> Process:
        """``python -m <module>`` of this checkout."""
        return cls([sys.executable, "-m", module, *args], env, log, name=name or module, group=group)

    def _stream(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            sys.stdout.write(f"[{self.name}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def listens_on(self, port: int) -> bool:
        """Whether this process (or a child: the API's server processes) holds the socket listening on ``port``.
        A port from free_port() is only free when picked: until this process binds it, another may take it, and a
        readiness check would then be answered by that one. Without /proc (not Linux) it cannot tell: True."""
        sockets = _listening_sockets(port)
        if sockets is None:
            return True
        for pid in (self.pid, *children(self.pid)):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                        return True
                except OSError:
                    continue
        return False

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

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait up to ``timeout`` for a clean exit, else SIGKILL. Returns the exit code."""
        return stop_all([self], timeout)[0]

    def _finish(self, deadline: float) -> int:
        try:
            code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            code = self.proc.wait()
        if self.group:
            self._reap_group(max(1.0, deadline - time.monotonic()))
        if self._log is not None:
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
            wait_until(gone, timeout, f"the process group of {self.name} to exit", interval=0.1)
        except TimeoutError:
            self.signal(signal.SIGKILL)

    def output(self) -> str:
        """What the process wrote so far (log file mode only)."""
        if self.log_path is None:
            raise ValueError(f"the output of {self.name} is streamed, not kept")
        if self._log is not None and not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def stop_all(processes: Sequence[Process], timeout: float = 30) -> list[int]:
    """SIGTERM every process at once, then wait for each against one deadline; SIGKILL whoever outlives it.
    Returns their exit codes, in order."""
    for proc in processes:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    return [proc._finish(deadline) for proc in processes]


def redis_server_command(port: int, workdir: Path, password: str | None = None,
                         extra: Sequence[str] = ()) -> list[str]:
    """A throwaway redis-server: in memory only, never evicting queue items, and with a 10 ms timer (``hz 100``)
    so that short blocking waits (MAX_BATCH_WAIT_MS) end on time."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (Debian/Ubuntu: apt-get install -y redis-server) "
                           "or point REDIS_URL at a running Redis")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--maxmemory-policy", "noeviction", "--hz", "100",
            *(["--requirepass", password] if password else []), *extra]


class RedisServer:
    """A private redis-server on a free port (or a given one), ready when constructed. Its output is dropped
    unless ``log`` names a file (or is None: streamed to ours). ``password``: clients must authenticate (the
    password is in ``url``). ``extra``: more redis-server arguments (``--replicaof host port``)."""

    def __init__(self, workdir: Path | None = None, port: int | None = None, *,
                 log: Path | None = Path(os.devnull), password: str | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        command = redis_server_command(self.port, workdir or Path(tempfile.gettempdir()), password, extra)
        self.process = Process(command, os.environ, log, name="redis")
        self.client = redis.Redis.from_url(self.url)
        # Its own socket, not just an answer on the port: free_port() only picked a port that was free then.
        wait_while_alive(self.process, lambda: self._answers() and self.process.listens_on(self.port), 10,
                         "redis-server to start")

    @classmethod
    def on_port(cls, port: int, workdir: Path) -> RedisServer:
        """A new, empty server on a given port (a restarted Redis)."""
        return cls(workdir, port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _answers(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"redis-server exited with {self.process.proc.returncode} (port {self.port} taken?)")
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> int:
        self.client.close()
        return self.process.stop(10)
