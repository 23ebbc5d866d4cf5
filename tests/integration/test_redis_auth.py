"""A Redis with a password: the URL carries it to every client; a wrong one is a clean 503."""

import asyncio

import pytest

from api.cluster import ClusterView
from api.errors import ErrorKind, ServiceError
from api.settings import ApiSettings
from common.keys import Keys
from common.redis_factory import async_client, sync_client
from tests.helpers import RedisServer
from worker.settings import WorkerSettings


@pytest.fixture
def protected_redis(tmp_path):
    server = RedisServer(tmp_path, password="s3cret")
    yield server.port
    server.stop()


def test_password_in_the_url_reaches_workers_and_api(protected_redis):
    url = f"redis://:s3cret@127.0.0.1:{protected_redis}/0"
    assert sync_client(WorkerSettings(redis_url=url), longest_block_s=1).ping()

    async def check(settings: ApiSettings):
        client = async_client(settings, longest_block_s=1, max_connections=4)
        try:
            return await ClusterView(client, Keys("auth")).queue_depth()
        finally:
            await client.aclose()

    assert asyncio.run(check(ApiSettings(redis_url=url))) == 0
    wrong = ApiSettings(redis_url=f"redis://:wrong@127.0.0.1:{protected_redis}/0")
    with pytest.raises(ServiceError) as info:
        asyncio.run(check(wrong))
    assert info.value.kind == ErrorKind.UNAVAILABLE and "wrong" not in info.value.message
