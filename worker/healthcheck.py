"""Container health check: exit 0 if a worker on this host has a live heartbeat in Redis.

    python -m worker.healthcheck
"""

from __future__ import annotations

import socket
import sys

import redis

from common.settings import SharedSettings


def main() -> int:
    settings = SharedSettings()
    keys = settings.keys()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    host = socket.gethostname()
    try:
        for member in client.smembers(keys.workers):
            if client.hget(keys.heartbeat(member.decode()), "host") == host.encode():
                return 0
    except redis.RedisError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"unhealthy: no live heartbeat from host {host}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
