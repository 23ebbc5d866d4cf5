"""Clients of the master Sentinel names (REDIS_SENTINELS): the addresses, what REDIS_URL still says, and the
queue's client rules (no retries, blocking pool) kept. The failover itself: tests/e2e/test_sentinel.py."""

import pytest
import redis.asyncio
from pydantic import ValidationError
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from common.redis_factory import async_client, async_waiting_client, sync_client
from common.settings import SharedSettings

SENTINELS = dict(redis_sentinels=" s1:26379, s2:26380", redis_sentinel_master="queue", redis_sentinel_password="sp",
                 redis_url="rediss://user:pw@ignored:1/3")


def test_sentinel_addresses_are_parsed_and_bad_ones_refused():
    assert SharedSettings(**SENTINELS).sentinel_addresses() == [("s1", 26379), ("s2", 26380)]
    assert SharedSettings().sentinel_addresses() == []
    for bad in ("s1", "s1:port", "s1:1,,s2:2"):
        with pytest.raises(ValidationError, match="redis_sentinels"):
            SharedSettings(redis_sentinels=bad)


def test_a_worker_client_asks_the_sentinels_for_the_master_and_keeps_the_urls_credentials():
    client = sync_client(SharedSettings(**SENTINELS), longest_block_s=1.0, name="w")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "queue" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"], kwargs["client_name"]) == (3, "user", "pw", "w")
    assert "Managed" in kwargs.get("connection_class", pool.connection_class).__name__
    assert kwargs["retry"].get_retries() == 0 and kwargs["socket_timeout"] == 3.0  # no retries; 1 s block + margin
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("s1", 26379), ("s2", 26380)]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"


def test_an_api_client_of_the_master_has_a_blocking_pool_and_the_cache_client_stays_on_its_url():
    settings = SharedSettings(**SENTINELS)
    client = async_client(settings, longest_block_s=10, max_connections=7)
    pool = client.connection_pool
    assert isinstance(pool, AsyncSentinelPool) and isinstance(pool, redis.asyncio.BlockingConnectionPool)
    assert pool.max_connections == 7 and pool.service_name == "queue"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (3, "user", "pw")  # REDIS_URL's, as the worker's
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel["password"] == "sp" and sentinel["socket_timeout"] == settings.redis_connect_timeout_s
    cache = async_client(settings, longest_block_s=0, max_connections=3, url="redis://cache:6379/1")
    assert not isinstance(cache.connection_pool, AsyncSentinelPool)
    assert cache.connection_pool.connection_kwargs["host"] == "cache"


@pytest.mark.parametrize("url,tls", [("rediss://user:pw@ignored:1/3", True), ("redis://ignored:1/3", False)])
def test_the_master_is_reached_over_tls_when_redis_url_says_rediss(url, tls):
    """With Sentinel the address comes from the Sentinels, but REDIS_URL's scheme still says whether the master
    speaks TLS: both the worker's and the API's clients follow it."""
    settings = SharedSettings(**{**SENTINELS, "redis_url": url})
    for client in (sync_client(settings, longest_block_s=1.0),
                   async_client(settings, longest_block_s=1.0, max_connections=2)):
        connection_class = client.connection_pool.connection_class
        assert "Managed" in connection_class.__name__
        assert ("SSL" in connection_class.__name__) is tls, connection_class


@pytest.mark.parametrize("sentinels", [False, True], ids=["redis-url", "sentinel"])
def test_the_waits_client_has_no_socket_timeout_and_a_pool_that_never_waits(sentinels):
    """The requests' pushes and waits (api/round_trip.py): each request bounds its round trips by its deadline, and
    admission holds them to the pool's size, so a pool short of connections raises rather than queues a request."""
    settings = SharedSettings(**SENTINELS) if sentinels else SharedSettings(redis_connect_timeout_s=1.5)
    pool = async_waiting_client(settings, max_connections=9).connection_pool
    assert not isinstance(pool, redis.asyncio.BlockingConnectionPool) and pool.max_connections == 9
    assert isinstance(pool, AsyncSentinelPool) is sentinels
    kwargs = pool.connection_kwargs
    assert kwargs["socket_timeout"] is None and kwargs["retry"].get_retries() == 0 and kwargs["retry_on_error"] == []
    assert kwargs["socket_connect_timeout"] == settings.redis_connect_timeout_s and kwargs["socket_keepalive"]
