"""A Redis high-availability set as real processes (Debian's ``redis-server`` and ``redis-sentinel``): a master, a
replica of it, and a Sentinel watching them that promotes the replica when the master is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from harness.processes import Process, RedisServer, free_port, wait_until

MASTER_NAME = "mymaster"


def sentinel_binary() -> str | None:
    return shutil.which("redis-sentinel")


class SentinelSet:
    """Master and replica on free ports, and one Sentinel (quorum 1) that calls the master down after
    ``down_after_ms`` without an answer. Ready (the replica in sync, the Sentinel aware of it) when constructed."""

    def __init__(self, workdir: Path, *, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        binary = sentinel_binary()
        if binary is None:
            raise RuntimeError("redis-sentinel not found: install it (Debian/Ubuntu: apt-get install -y "
                               "redis-sentinel)")
        for name in ("master", "replica"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        self.master = RedisServer(workdir / "master", log=workdir / "master.log")
        self.replica = RedisServer(workdir / "replica", log=workdir / "replica.log",
                                   extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.port = free_port()
        config = workdir / "sentinel.conf"  # Sentinel rewrites its file as it learns: one of its own
        config.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {workdir}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
        self.sentinel = Process([binary, str(config)], {}, workdir / "sentinel.log", name="sentinel")
        self.client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            wait_until(self._replica_in_sync, 30, "the replica to sync and the Sentinel to see it", interval=0.1)
        except TimeoutError:
            self.stop()
            raise

    @property
    def address(self) -> str:
        """REDIS_SENTINELS for the service."""
        return f"127.0.0.1:{self.port}"

    def master_port(self) -> int:
        host, port = self.client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def _replica_in_sync(self) -> bool:
        try:
            link = self.replica.client.info("replication").get("master_link_status")
            replicas = self.client.sentinel_slaves(MASTER_NAME)
        except redis.RedisError:
            return False
        return link == "up" and any(r.get("port") == self.replica.port for r in replicas)

    def stop(self) -> None:
        self.client.close()
        self.sentinel.stop(10)
        for server in (self.replica, self.master):
            if server.process.alive():
                server.stop()
