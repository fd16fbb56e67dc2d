"""The camera registry in Redis (or the ``memory://`` test double): entries in one hash, a
version beside them in the same hash slot. A change is an optimistic transaction (WATCH the
version, write the changed entries and the new version in MULTI/EXEC, retry if another writer
came first), so two operators' changes never lose one another. Readers poll the version alone
(one GET) and read the entries only when it moved. The model is :mod:`camtopo.core.registry`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from camtopo.core.registry import CameraEntry, Registry, RegistryError
from topology_store.backend import RedisLike
from topology_store.keys import Keys

Change = Callable[[Registry], Registry]


def parse_version(raw: bytes | None) -> int:
    return int(raw) if raw is not None else 0


def decode_entries(version: int, raw: dict[bytes, bytes]) -> Registry:
    cameras = {}
    for key, value in raw.items():
        camera = key.decode()
        try:
            cameras[camera] = CameraEntry.from_json(json.loads(value), f"stored camera {camera!r}")
        except ValueError as exc:  # RegistryError, or not JSON: someone wrote it by hand
            raise RegistryError(f"corrupt registry entry: {exc}") from exc
    return Registry(version, cameras)


class CameraRegistryStore:
    def __init__(self, client: RedisLike, keys: Keys, attempts: int = 20) -> None:
        self.client = client
        self.keys = keys
        self.attempts = attempts

    def version(self) -> int:
        return parse_version(self.client.get(self.keys.camera_version))

    def load(self) -> Registry:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.camera_version)
        pipe.hgetall(self.keys.camera_entries)
        version, raw = pipe.execute()
        return decode_entries(parse_version(version), raw)

    def change(self, change: Change) -> Registry:
        """Apply ``change`` to the stored registry atomically; returns the new version. A
        change that returns the registry unchanged writes nothing."""
        for _ in range(self.attempts):
            pipe = self.client.pipeline(transaction=True)
            try:
                pipe.watch(self.keys.camera_version)
                old = decode_entries(
                    parse_version(pipe.get(self.keys.camera_version)),
                    pipe.hgetall(self.keys.camera_entries),
                )
                new = change(old)
                if new is old:
                    return old
                changed = {c: e.encode() for c, e in new.cameras.items() if old.cameras.get(c) != e}
                pipe.multi()
                if changed:
                    pipe.hset(self.keys.camera_entries, mapping=changed)
                pipe.set(self.keys.camera_version, new.version)
                pipe.execute()
                return new
            except redis.WatchError:
                continue  # another writer came first: apply the change to theirs
            finally:
                pipe.reset()
        raise RegistryError(f"the registry kept changing under {self.attempts} attempts")
