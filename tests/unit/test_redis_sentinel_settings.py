"""The Redis client factory with CAMTOPO_REDIS_SENTINELS: which client it builds (nothing is
connected here; the failover itself is tests/integration/test_redis_failover.py)."""

from __future__ import annotations

import pytest
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel

from camtopo.connections import (
    RedisSettingsError,
    _AsyncSentinelConnection,
    _SentinelConnection,
    _SentinelSSLConnection,
    async_redis_client,
    redis_client,
)
from camtopo.settings import Settings


def _settings(**redis_fields: object) -> Settings:
    return Settings(redis={"url": "redis://127.0.0.1:6379/5", **redis_fields})


def test_without_sentinels_the_url_is_the_server() -> None:
    client = redis_client(_settings())
    pool = client.connection_pool
    assert not isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.connection_kwargs["port"] == 6379 and pool.connection_kwargs["db"] == 5


def test_with_sentinels_the_primary_is_asked_of_them_and_the_url_gives_the_database() -> None:
    settings = _settings(sentinels="127.0.0.1:26379, 127.0.0.1:26380", sentinel_master="ha")
    client = redis_client(settings, decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "ha"
    assert pool.connection_class is _SentinelConnection
    assert pool.connection_kwargs["db"] == 5 and pool.connection_kwargs["decode_responses"]
    sentinels = [(s.connection_pool.connection_kwargs["host"],
                  s.connection_pool.connection_kwargs["port"])
                 for s in pool.sentinel_manager.sentinels]  # fmt: skip
    assert sentinels == [("127.0.0.1", 26379), ("127.0.0.1", 26380)]


def test_tls_and_credentials_reach_the_primary_not_the_sentinels() -> None:
    tls = {"url": "rediss://127.0.0.1:6380/0", "sentinels": "127.0.0.1:26379"}
    settings = Settings(redis={**tls, "username": "camtopo", "password": "s3cret"})
    pool = redis_client(settings).connection_pool
    assert pool.connection_class is _SentinelSSLConnection
    assert pool.connection_kwargs["username"] == "camtopo"
    assert pool.connection_kwargs["password"] == "s3cret"
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] is None and sentinel_kwargs["ssl_cert_reqs"] == "required"


def test_the_query_service_client_follows_the_sentinels_too() -> None:
    client = async_redis_client(_settings(sentinels="127.0.0.1:26379"))
    assert isinstance(client.connection_pool, aiosentinel.SentinelConnectionPool)
    assert client.connection_pool.connection_class is _AsyncSentinelConnection


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:port", ":26379", "a:1,,b:2"])
def test_a_malformed_sentinel_list_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(RedisSettingsError, match="CAMTOPO_REDIS_SENTINELS"):
        redis_client(_settings(sentinels=bad))
