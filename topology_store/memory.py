"""An in-process Redis for tests: the commands the topology store and the query service use,
with Redis's semantics for them (bytes replies, MULTI/EXEC with WATCH, capped streams,
``run_id``), selected by a ``memory://NAME`` URL (:func:`topology_store.backend.store_client`).

A test double, not a production option: nothing is persisted or replicated, and one process
sees it. Clients of the same ``memory://NAME`` share one :class:`MemoryServer`, so a processor
and a query service in one test see the same data. :meth:`MemoryServer.fail_next` makes the
next commands raise as an outage would; :meth:`MemoryServer.restart` is a restart, or with a
:meth:`MemoryServer.snapshot` a failover to a replica that lacks the writes since.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis

Value = bytes | dict[bytes, bytes] | list[tuple[bytes, dict[bytes, bytes]]]
_SERVERS: dict[str, MemoryServer] = {}
_SERVERS_LOCK = threading.Lock()


def memory_server(url: str) -> MemoryServer:
    """The in-process server of ``memory://NAME`` (made on first use)."""
    name = url.removeprefix("memory://")
    with _SERVERS_LOCK:
        if name not in _SERVERS:
            _SERVERS[name] = MemoryServer()
        return _SERVERS[name]


def memory_client(url: str) -> MemoryRedis:
    """A new client of ``memory://NAME`` (its own object, as each real client is)."""
    return MemoryRedis(memory_server(url))


def forget_server(url: str) -> None:
    """Drop the server of ``memory://NAME`` (its data goes with it)."""
    with _SERVERS_LOCK:
        _SERVERS.pop(url.removeprefix("memory://"), None)


def _b(value: Any) -> bytes:
    """A value as Redis stores it (redis-py's encoding: numbers as their text)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise redis.DataError("Invalid input of type: 'bool'")
    if isinstance(value, int | float):
        return repr(value).encode()
    raise redis.DataError(f"Invalid input of type: {type(value).__name__!r}")


def _stream_id(raw: str | bytes, *, low: bool) -> tuple[tuple[int, int], bool]:
    """(ms, seq) of a range bound and whether it is exclusive (``(`` prefix)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    exclusive = text.startswith("(")
    text = text.lstrip("(")
    if text in ("-", "+"):
        return ((0, 0) if text == "-" else (2**64, 0)), False
    ms, _, seq = text.partition("-")
    try:
        return (int(ms), int(seq) if seq else (0 if low else 2**64)), exclusive
    except ValueError:
        raise redis.ResponseError(
            "Invalid stream ID specified as stream command argument"
        ) from None


def _parse_id(eid: bytes) -> tuple[int, int]:
    ms, _, seq = eid.decode().partition("-")
    return int(ms), int(seq)


class MemoryServer:
    """The data of one ``memory://NAME``, and the test controls."""

    def __init__(self) -> None:
        self.data: dict[str, Value] = {}
        self.versions: dict[str, int] = {}  # key -> writes so far (WATCH compares them)
        self.lock = threading.RLock()
        self.last_id = (0, 0)
        self.failures = 0
        self.fail_after = 0
        self.failure: type[Exception] = redis.ConnectionError
        self.run_id = uuid.uuid4().hex
        self.commands = 0  # commands served, for tests that count round trips

    def fail_next(
        self, n: int, error: type[Exception] = redis.ConnectionError, *, after: int = 0
    ) -> None:
        """The ``n`` commands after the next ``after`` (a pipeline's execute is one command)
        raise ``error``, as in an outage."""
        self.failures, self.failure, self.fail_after = n, error, after

    def snapshot(self) -> dict[str, Value]:
        with self.lock:
            return copy.deepcopy(self.data)

    def restart(self, data: dict[str, Value] | None = None) -> None:
        """Another server answers from now on (new ``run_id``): with ``data`` (a
        :meth:`snapshot`) it lost every write since; without, it lost none."""
        with self.lock:
            if data is not None:
                self.data = copy.deepcopy(data)
                for key in self.versions:
                    self.versions[key] += 1
            self.run_id = uuid.uuid4().hex


class MemoryRedis:
    """The commands of ``redis.Redis`` (``decode_responses=False``) the store uses, on a
    :class:`MemoryServer`."""

    def __init__(self, server: MemoryServer | None = None) -> None:
        self.server = server if server is not None else MemoryServer()
        self._lock = self.server.lock

    @property
    def _data(self) -> dict[str, Value]:
        return self.server.data

    @property
    def _versions(self) -> dict[str, int]:
        return self.server.versions

    # --- plumbing -----------------------------------------------------------------------------
    def _command(self) -> None:
        server = self.server
        server.commands += 1
        if server.fail_after > 0:
            server.fail_after -= 1
        elif server.failures > 0:
            server.failures -= 1
            raise server.failure("memory:// outage (fail_next)")

    def _typed(self, key: str, kind: type) -> Any:
        value = self._data.get(key)
        if value is not None and not isinstance(value, kind):
            raise redis.ResponseError(
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            )
        return value

    def _touch(self, key: str) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1

    def _hash(self, key: str, create: bool = False) -> dict[bytes, bytes] | None:
        value: dict[bytes, bytes] | None = self._typed(key, dict)
        if value is None and create:
            value = self._data[key] = {}
        return value

    # --- strings ------------------------------------------------------------------------------
    def get(self, name: str) -> bytes | None:
        with self._lock:
            self._command()
            value: bytes | None = self._typed(name, bytes)
            return value

    def set(self, name: str, value: Any) -> bool:
        with self._lock:
            self._command()
            self._typed(name, bytes)
            self._data[name] = _b(value)
            self._touch(name)
            return True

    def delete(self, *names: str) -> int:
        with self._lock:
            self._command()
            gone = [n for n in names if self._data.pop(n, None) is not None]
            for n in gone:
                self._touch(n)
            return len(gone)

    # --- hashes -------------------------------------------------------------------------------
    def hget(self, name: str, key: str) -> bytes | None:
        with self._lock:
            self._command()
            value = self._hash(name)
            return None if value is None else value.get(_b(key))

    def hmget(self, name: str, keys: Iterable[str]) -> list[bytes | None]:
        with self._lock:
            self._command()
            value = self._hash(name) or {}
            return [value.get(_b(k)) for k in keys]

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        with self._lock:
            self._command()
            return dict(self._hash(name) or {})

    def hset(
        self,
        name: str,
        key: str | None = None,
        value: Any = None,
        mapping: Mapping[Any, Any] | None = None,
    ) -> int:
        items = dict(mapping or {})
        if key is not None:
            items[key] = value
        if not items:
            raise redis.DataError("'hset' with no key value pairs")
        with self._lock:
            self._command()
            stored = self._hash(name, create=True)
            assert stored is not None
            new = sum(_b(k) not in stored for k in items)
            stored.update({_b(k): _b(v) for k, v in items.items()})
            self._touch(name)
            return new

    def hdel(self, name: str, *keys: str) -> int:
        with self._lock:
            self._command()
            stored = self._hash(name) or {}
            gone = [k for k in map(_b, keys) if stored.pop(k, None) is not None]
            if name in self._data and not stored:
                del self._data[name]  # Redis drops an emptied hash
            self._touch(name)
            return len(gone)

    def hscan_iter(self, name: str, count: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            self._command()
            items = list((self._hash(name) or {}).items())
        yield from items

    # --- streams ------------------------------------------------------------------------------
    def xadd(
        self,
        name: str,
        fields: Mapping[Any, Any],
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> bytes:
        with self._lock:
            self._command()
            stream: list[tuple[bytes, dict[bytes, bytes]]] | None = self._typed(name, list)
            if stream is None:
                stream = self._data[name] = []
            ms = int(time.time() * 1000)
            last_ms, last_seq = self.server.last_id
            self.server.last_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
            eid = "{}-{}".format(*self.server.last_id).encode()
            stream.append((eid, {_b(k): _b(v) for k, v in fields.items()}))
            if maxlen is not None and len(stream) > maxlen:
                del stream[: len(stream) - maxlen]
            self._touch(name)
            return eid

    def _entries(self, name: str, low: str, high: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        (lo, lo_x), (hi, hi_x) = _stream_id(low, low=True), _stream_id(high, low=False)
        stream: list[tuple[bytes, dict[bytes, bytes]]] = self._typed(name, list) or []
        out = []
        for eid, fields in stream:
            at = _parse_id(eid)
            if (lo < at or (lo == at and not lo_x)) and (at < hi or (at == hi and not hi_x)):
                out.append((eid, dict(fields)))
        return out

    def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        with self._lock:
            self._command()
            return self._entries(name, min, max)[:count]

    def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        with self._lock:
            self._command()
            return self._entries(name, min, max)[::-1][:count]

    def xread(
        self, streams: Mapping[str, str], count: int | None = None, block: int | None = None
    ) -> list[list[Any]]:
        """Without blocking: entries after each stream's id (the async client polls)."""
        with self._lock:
            self._command()
            out: list[list[Any]] = []
            for name, after in streams.items():
                entries = self._entries(name, f"({after}", "+")[:count]
                if entries:
                    out.append([name.encode(), entries])
            return out

    # --- server -------------------------------------------------------------------------------
    def info(self, section: str | None = None) -> dict[str, Any]:
        with self._lock:
            self._command()
            return {"run_id": self.server.run_id, "redis_version": "memory"}

    def wait(self, num_replicas: int, timeout: int) -> int:
        with self._lock:
            self._command()
            return 0  # no replicas: a checkpoint with WAIT counts a shortfall, as with one Redis

    def ping(self) -> bool:
        with self._lock:
            self._command()
            return True

    def close(self) -> None:
        pass

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        return MemoryPipeline(self, transaction)


class MemoryPipeline:
    """Queued commands run at :meth:`execute`, atomically (one lock). After :meth:`watch`
    commands run at once until :meth:`multi`, and :meth:`execute` raises ``WatchError`` if a
    watched key was written meanwhile, as redis-py's pipeline does."""

    def __init__(self, client: MemoryRedis, transaction: bool) -> None:
        self._client = client
        self._queue: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._watched: dict[str, int] = {}
        self._immediate = False

    def __enter__(self) -> MemoryPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def __getattr__(self, command: str) -> Any:
        if command.startswith("_") or command == "pipeline" or not hasattr(MemoryRedis, command):
            raise AttributeError(command)

        def queue(*args: Any, **kwargs: Any) -> Any:
            if self._immediate:
                return getattr(self._client, command)(*args, **kwargs)
            self._queue.append((command, args, kwargs))
            return self

        return queue

    def watch(self, *names: str) -> None:
        with self._client.server.lock:
            self._watched.update({n: self._client.server.versions.get(n, 0) for n in names})
        self._immediate = True

    def multi(self) -> None:
        self._immediate = False

    def reset(self) -> None:
        self._queue, self._watched, self._immediate = [], {}, False

    def execute(self) -> list[Any]:
        client, server = self._client, self._client.server
        with server.lock:
            try:
                client._command()
                if any(server.versions.get(k, 0) != v for k, v in self._watched.items()):
                    raise redis.WatchError("Watched variable changed.")
                # One command, not each of its parts.
                failures, after = server.failures, server.fail_after
                server.failures = server.fail_after = 0
                try:
                    return [getattr(client, c)(*a, **kw) for c, a, kw in self._queue]
                finally:
                    server.failures, server.fail_after = failures, after
            finally:
                self.reset()
