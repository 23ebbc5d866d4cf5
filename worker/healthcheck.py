"""Container health check: exit 0 if a worker on this host beats and makes progress (common.scripts.WorkerState).

    python -m worker.healthcheck
"""

from __future__ import annotations

import socket
import sys

import redis

from common.redis_factory import sync_client
from common.scripts import Scripts, worker_states
from worker.settings import WorkerSettings


def main() -> int:
    settings = WorkerSettings()
    keys = settings.served_keys()
    client = sync_client(settings, longest_block_s=0)  # REDIS_URL's server, or the master Sentinel names
    host = socket.gethostname()
    try:
        for worker in worker_states(Scripts(client, keys).worker_states()):
            if worker.live and client.hget(keys.heartbeat(worker.worker_id), "host") == host.encode():
                return 0
    except redis.RedisError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"unhealthy: no live, progressing worker on host {host}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
