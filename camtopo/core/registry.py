"""The camera registry's model: each camera's description and state, validation of an entry,
applying an operator's change, and the difference between two versions. No I/O: the Redis
adapter is ``topology_store/camera_registry.py``; the processors' pick-up is
``processors/registry_sync.py``.

A camera's ``id`` is the id of network.json and of window labels and never changes; its
``name`` and ``location`` are what people see. Its ``fps`` and ``grid`` are those of its slot in
network.json: the engines size their window arrays from the network when they start, so a
camera can only be added into a slot network.json declared (``reserved``), and a camera whose
rate or grid changes needs a new network.json and a restart (docs/operations.md).

States: ``active`` (counted), ``reserved`` (declared in network.json, not yet installed: its
frames are refused), ``removed`` (its frames are refused and its evidence forgotten).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from camtopo.core.grid import Grid, Network, NetworkError

ACTIVE, RESERVED, REMOVED = "active", "reserved", "removed"
STATES = (ACTIVE, RESERVED, REMOVED)
FORMAT = 1  # version of the entry's JSON (docs/formats.md, "Camera registry entry")
MAX_TEXT = 200  # name and location: bounds what a client may store and an answer echoes


class RegistryError(ValueError):
    """An entry or a change the registry refuses; the message names the camera and field."""


@dataclass(frozen=True)
class CameraEntry:
    id: str
    name: str
    fps: int
    grid: Grid
    location: str = ""
    lat: float | None = None
    lon: float | None = None
    state: str = ACTIVE
    removed_ms: int | None = None  # when it was removed (epoch ms), for state ``removed``

    def __post_init__(self) -> None:
        where = f"camera {self.id!r}"
        if not isinstance(self.id, str) or not 0 < len(self.id) <= MAX_TEXT:
            raise RegistryError(f"'id' must be a camera id of 1..{MAX_TEXT} characters")
        for key in ("name", "location"):
            value = getattr(self, key)
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise RegistryError(f"{where}: {key!r} must be text of at most {MAX_TEXT} chars")
        if not self.name:
            raise RegistryError(f"{where}: 'name' must not be empty")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps < 1:
            raise RegistryError(f"{where}: 'fps' must be a whole number >= 1, got {self.fps!r}")
        if not isinstance(self.grid, Grid):
            raise RegistryError(f"{where}: 'grid' must be a grid")
        for key, bound in (("lat", 90.0), ("lon", 180.0)):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RegistryError(f"{where}: {key!r} must be a number, got {value!r}")
            if not -bound <= value <= bound:
                raise RegistryError(f"{where}: {key!r} must be in -{bound}..{bound}")
        if self.state not in STATES:
            raise RegistryError(f"{where}: 'state' must be one of {STATES}, got {self.state!r}")
        if (self.state == REMOVED) != (self.removed_ms is not None):
            raise RegistryError(f"{where}: 'removed_ms' is set exactly when state is 'removed'")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "fps": self.fps,
            "grid": self.grid.to_json(),
            "state": self.state,
        }
        if self.lat is not None:
            out["lat"], out["lon"] = self.lat, self.lon
        if self.removed_ms is not None:
            out["removed_ms"] = self.removed_ms
        return out

    @classmethod
    def from_json(cls, data: object, where: str = "entry") -> CameraEntry:
        """An entry as stored (or sent to the API); each error names ``where`` and the field."""
        if not isinstance(data, Mapping):
            raise RegistryError(f"{where}: must be a JSON object")
        unknown = set(data) - {
            "format", "id", "name", "location", "fps", "grid", "state", "lat", "lon", "removed_ms"
        }  # fmt: skip
        if unknown:
            raise RegistryError(f"{where}: unknown fields {sorted(unknown)}")
        for key in ("id", "fps", "grid"):
            if key not in data:
                raise RegistryError(f"{where}: missing field {key!r}")
        if data.get("format", FORMAT) != FORMAT:
            raise RegistryError(f"{where}: 'format' {data.get('format')!r} is not {FORMAT}")
        try:
            grid = Grid.from_json(data["grid"], "grid")
        except NetworkError as exc:
            raise RegistryError(f"{where}: {exc}") from None
        if ("lat" in data) != ("lon" in data):
            raise RegistryError(f"{where}: 'lat' and 'lon' go together")
        return cls(
            id=data["id"],
            name=data.get("name", data["id"]),
            fps=data["fps"],
            grid=grid,
            location=data.get("location", ""),
            lat=data.get("lat"),
            lon=data.get("lon"),
            state=data.get("state", ACTIVE),
            removed_ms=data.get("removed_ms"),
        )

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True).encode()


@dataclass(frozen=True)
class Registry:
    """One version of the registry: ``version`` is bumped by every change."""

    version: int = 0
    cameras: Mapping[str, CameraEntry] = field(default_factory=dict)

    def entry(self, camera: str) -> CameraEntry:
        try:
            return self.cameras[camera]
        except KeyError:
            raise RegistryError(f"unknown camera {camera!r}") from None

    def _with(self, *entries: CameraEntry) -> Registry:
        cameras = dict(self.cameras)
        cameras.update((e.id, e) for e in entries)
        return Registry(self.version + 1, cameras)

    # --- the operator's changes (each returns the next version) --------------------------
    def add(self, entry: CameraEntry, network: Network | None = None) -> Registry:
        """Install a camera: a new id, or a ``reserved`` / ``removed`` one made active again.
        With ``network``, the camera must have a slot in it with the same fps and grid."""
        if network is not None:
            check_slot(entry, network)
        old = self.cameras.get(entry.id)
        if old is not None and old.state == ACTIVE:
            raise RegistryError(f"camera {entry.id!r} is already registered (duplicate id)")
        return self._with(replace(entry, state=ACTIVE, removed_ms=None))

    def remove(self, camera: str, at_ms: int) -> Registry:
        old = self.entry(camera)
        if old.state == REMOVED:
            raise RegistryError(f"camera {camera!r} was already removed")
        return self._with(replace(old, state=REMOVED, removed_ms=at_ms))

    def rename(self, camera: str, name: str) -> Registry:
        return self._with(replace(self.entry(camera), name=name))

    def describe(
        self,
        camera: str,
        location: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> Registry:
        if (lat is None) != (lon is None):
            raise RegistryError(f"camera {camera!r}: 'lat' and 'lon' go together")
        old = self.entry(camera)
        return self._with(
            replace(
                old,
                location=old.location if location is None else location,
                lat=old.lat if lat is None else lat,
                lon=old.lon if lon is None else lon,
            )
        )

    def import_network(self, network: Network, reserved: frozenset[str] = frozenset()) -> Registry:
        """Seed from network.json: cameras not yet registered are added (``reserved`` ones as
        reserved); registered ones keep their names and states. Idempotent: importing the same
        network again changes nothing (and does not bump the version)."""
        unknown = sorted(reserved - set(network.cameras))
        if unknown:
            raise RegistryError(f"'reserved' names cameras not in 'cameras': {unknown}")
        new = [
            CameraEntry(
                c, c, network.rate(i), network.grids[i], state=RESERVED if c in reserved else ACTIVE
            )
            for i, c in enumerate(network.cameras)
            if c not in self.cameras
        ]
        return self._with(*new) if new else self

    def inactive(self, network: Network) -> frozenset[int]:
        """Indices in ``network`` of the cameras whose frames are refused (reserved, removed).
        A camera the registry does not know counts as active: a registry never seeded changes
        nothing."""
        return frozenset(
            network.camera_index(c)
            for c, e in self.cameras.items()
            if e.state != ACTIVE and c in network.cameras
        )


def check_slot(entry: CameraEntry, network: Network) -> None:
    """The camera must have a slot in the running network, at its fps and grid: the engines'
    arrays are sized from network.json at start (adding windows needs a restart)."""
    if entry.id not in network.cameras:
        raise RegistryError(
            f"camera {entry.id!r} has no slot in the running network.json: declare it there "
            "(in 'cameras', listed in 'reserved') and restart the processors"
        )
    i = network.camera_index(entry.id)
    if entry.fps != network.rate(i):
        raise RegistryError(
            f"camera {entry.id!r}: 'fps' {entry.fps} differs from its slot's {network.rate(i)} "
            "in network.json (a new rate needs a new network.json and a restart)"
        )
    if entry.grid != network.grids[i]:
        raise RegistryError(
            f"camera {entry.id!r}: 'grid' {entry.grid.to_json()} differs from its slot's "
            f"{network.grids[i].to_json()} in network.json"
        )


@dataclass(frozen=True)
class RegistryDiff:
    """What changed between two versions, by camera id."""

    added: tuple[str, ...] = ()  # new, or made active again
    removed: tuple[str, ...] = ()  # active or reserved -> removed
    described: tuple[str, ...] = ()  # name, location changed (what the service shows)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.described)


def diff(old: Registry, new: Registry) -> RegistryDiff:
    added, removed, described = [], [], []
    for c, e in sorted(new.cameras.items()):
        before = old.cameras.get(c)
        was = before.state if before is not None else None
        if e.state == ACTIVE and was != ACTIVE:
            added.append(c)
        elif e.state == REMOVED and was != REMOVED:
            removed.append(c)
        if before is not None and (before.name, before.location, before.lat, before.lon) != (
            e.name,
            e.location,
            e.lat,
            e.lon,
        ):
            described.append(c)
    return RegistryDiff(tuple(added), tuple(removed), tuple(described))


def reserved_of(data: Mapping[str, Any]) -> frozenset[str]:
    """network.json's optional ``reserved`` list: cameras declared (their windows allocated)
    but not installed yet."""
    value = data.get("reserved", [])
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise RegistryError("'reserved' must be a list of camera ids")
    return frozenset(value)
