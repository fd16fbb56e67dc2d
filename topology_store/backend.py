"""What the store needs of a Redis client, and the one factory that picks it from the URL.

``redis://`` / ``rediss://`` (with ``CAMTOPO_REDIS_SENTINELS``, the primary they name): a real
client from :mod:`camtopo.connections`. ``memory://NAME``: the in-process test double of
:mod:`topology_store.memory` (tests only; docs/architecture.md). Both satisfy the Protocols
below, which name every command the writer, the publisher and the read model send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from camtopo.connections import async_redis_client, redis_client
from camtopo.settings import Settings
from topology_store.memory import memory_client
from topology_store.memory_async import AsyncMemoryRedis

MEMORY_SCHEME = "memory://"


class Pipeline(Protocol):
    """Commands queued (or, after ``watch``, run at once) and run by :meth:`execute`."""

    def get(self, name: str) -> Any: ...
    def set(self, name: str, value: Any) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def hset(self, name: str, key: Any = None, value: Any = None, mapping: Any = None) -> Any: ...
    def hdel(self, name: str, *keys: Any) -> Any: ...
    def xadd(
        self, name: str, fields: Any, *, maxlen: Any = None, approximate: bool = True
    ) -> Any: ...
    def watch(self, *names: Any) -> Any: ...
    def multi(self) -> Any: ...
    def reset(self) -> Any: ...
    def execute(self) -> list[Any]: ...


class RedisLike(Protocol):
    """The synchronous client (bytes replies) of the checkpoint writer, the topology publisher
    and the synchronous read model."""

    def get(self, name: str) -> Any: ...
    def set(self, name: str, value: Any) -> Any: ...
    def hget(self, name: str, key: str) -> Any: ...
    def hmget(self, name: str, keys: Any) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def hset(self, name: str, key: Any = None, value: Any = None, mapping: Any = None) -> Any: ...
    def hscan_iter(self, name: str, *, count: Any = None) -> Iterator[Any]: ...
    def xrange(self, name: str, min: Any = "-", max: Any = "+", count: Any = None) -> Any: ...
    def info(self, section: Any = None) -> Any: ...
    def wait(self, num_replicas: int, timeout: int) -> Any: ...
    def ping(self) -> Any: ...
    def close(self) -> None: ...
    def pipeline(self, transaction: Any = True) -> Pipeline: ...


class AsyncRedisLike(Protocol):
    """The query service's asynchronous client (bytes replies)."""

    def get(self, name: str) -> Awaitable[Any]: ...
    def hget(self, name: str, key: str) -> Awaitable[Any]: ...
    def hgetall(self, name: str) -> Awaitable[Any]: ...
    def xrange(
        self, name: str, min: Any = "-", max: Any = "+", count: Any = None
    ) -> Awaitable[Any]: ...
    def xrevrange(
        self, name: str, max: Any = "+", min: Any = "-", count: Any = None
    ) -> Awaitable[Any]: ...
    def xread(self, streams: Any, count: Any = None, block: Any = None) -> Awaitable[Any]: ...
    def ping(self) -> Awaitable[Any]: ...
    def aclose(self) -> Awaitable[None]: ...
    def pipeline(self, transaction: bool = True) -> Any: ...


def is_memory(url: str) -> bool:
    return url.startswith(MEMORY_SCHEME)


def store_client(settings: Settings, url: str | None = None) -> RedisLike:
    """The synchronous client of ``url`` (default ``CAMTOPO_REDIS_URL``)."""
    url = url or settings.redis.url
    if is_memory(url):
        return memory_client(url)
    return redis_client(settings, url, decode_responses=False)


def async_store_client(settings: Settings, url: str | None = None) -> AsyncRedisLike:
    """The query service's client of ``url`` (default ``CAMTOPO_REDIS_URL``)."""
    url = url or settings.redis.url
    if is_memory(url):
        return AsyncMemoryRedis(memory_client(url))
    return async_redis_client(settings, url)


def decoded(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """A hash reply as text."""
    return {k.decode(): v.decode() for k, v in raw.items()}


def fields(names: Iterable[int]) -> list[str]:
    """Hash fields of window indices."""
    return [str(i) for i in names]


if TYPE_CHECKING:  # both clients satisfy the Protocols (mypy checks these assignments)
    import redis
    import redis.asyncio as aioredis

    from topology_store.memory import MemoryRedis

    def _conforms(
        a: redis.Redis, b: MemoryRedis, c: aioredis.Redis, d: AsyncMemoryRedis
    ) -> tuple[RedisLike, RedisLike, AsyncRedisLike, AsyncRedisLike]:
        return a, b, c, d
