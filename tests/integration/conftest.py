from __future__ import annotations

import pytest
import redis

from common.redis_factory import sync_client
from worker.settings import WorkerSettings


@pytest.fixture
def setup(redis_server, key_prefix):
    """A worker's settings, its Redis client and keys (those of the model version it serves: the default name, version
    1) under a prefix of this test's own, on the session's redis-server."""
    settings = WorkerSettings(redis_url=redis_server.url, key_prefix=key_prefix, reply_ttl_s=30)
    client = sync_client(settings, longest_block_s=2)
    yield settings, client, settings.served_keys()
    client.close()


@pytest.fixture
def env(setup):
    """A worker's Redis client and keys (the ``setup`` fixture without the settings)."""
    _, client, keys = setup
    return client, keys


@pytest.fixture
def connect(redis_server):
    """Open a connection named as ``worker``'s process names its own: to Redis, that process is there."""
    opened = []

    def open_for(keys, worker, incarnation=None):
        client = redis.Redis.from_url(redis_server.url, client_name=keys.connection_name(worker, incarnation or
                                                                                         f"{worker}-i"))
        client.ping()
        opened.append(client)
        return client

    yield open_for
    for client in opened:
        client.close()
