from __future__ import annotations

import pytest

from common.redis_factory import sync_client
from common.settings import WorkerSettings


@pytest.fixture
def setup(redis_server, key_prefix):
    """A worker's settings, its Redis client and keys of this test's own, on the session's redis-server."""
    settings = WorkerSettings(redis_url=redis_server.url, key_prefix=key_prefix, reply_ttl_s=30)
    client = sync_client(settings, longest_block_s=2)
    yield settings, client, settings.keys()
    client.close()
