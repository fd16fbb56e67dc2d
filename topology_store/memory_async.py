"""The query service's asynchronous client over the ``memory://`` test double
(:mod:`topology_store.memory`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from topology_store.memory import MemoryPipeline, MemoryRedis


class AsyncMemoryRedis:
    """The ``redis.asyncio`` commands the query service uses, over a :class:`MemoryRedis`."""

    POLL_S = 0.05  # how often a blocking XREAD looks for new entries

    def __init__(self, client: MemoryRedis) -> None:
        self.client = client

    async def get(self, name: str) -> bytes | None:
        return self.client.get(name)

    async def hget(self, name: str, key: str) -> bytes | None:
        return self.client.hget(name, key)

    async def hmget(self, name: str, keys: Iterable[str]) -> list[bytes | None]:
        return self.client.hmget(name, keys)

    async def hgetall(self, name: str) -> dict[bytes, bytes]:
        return self.client.hgetall(name)

    async def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        return self.client.xrange(name, min, max, count)

    async def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        return self.client.xrevrange(name, max, min, count)

    async def xread(
        self, streams: Mapping[str, str], count: int | None = None, block: int | None = None
    ) -> list[list[Any]]:
        deadline = time.monotonic() + (block or 0) / 1000
        while True:
            reply = self.client.xread(streams, count)
            if reply or block is None or time.monotonic() >= deadline:
                return reply
            await asyncio.sleep(self.POLL_S)

    async def ping(self) -> bool:
        return self.client.ping()

    async def aclose(self) -> None:
        pass

    def pipeline(self, transaction: bool = True) -> AsyncMemoryPipeline:
        return AsyncMemoryPipeline(self.client.pipeline(transaction))


class AsyncMemoryPipeline:
    def __init__(self, pipe: MemoryPipeline) -> None:
        self._pipe = pipe

    async def __aenter__(self) -> AsyncMemoryPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pipe.reset()

    def __getattr__(self, command: str) -> Any:
        return getattr(self._pipe, command)

    async def execute(self) -> list[Any]:
        return self._pipe.execute()
