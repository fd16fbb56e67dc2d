"""The camera registry in the query service: what it shows (names, locations; removed cameras
and their edges hidden) and the HTTP writes (docs/operations.md, "Camera registry").

Writes always need the bearer token: with ``CAMTOPO_API_TOKEN`` set, the service's
authentication already asked for it; without one (reads open on loopback) a write is refused
403, so no one who merely reaches the port can remove a camera. ``camtopo cameras`` (with Redis
access) is the way then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from camtopo.core.grid import Network, NetworkError
from camtopo.core.registry import (
    REMOVED,
    CameraEntry,
    Registry,
    RegistryError,
    reserved_of,
)
from camtopo.settings import Settings
from topology_store.backend import AsyncRedisLike, store_client
from topology_store.camera_registry import CameraRegistryStore, decode_entries, parse_version
from topology_store.graph import TopologyView
from topology_store.keys import Keys

_ENTRY_FIELDS = {"name", "location", "lat", "lon", "fps", "grid"}


async def read_registry(redis: AsyncRedisLike, keys: Keys, known: Registry) -> Registry:
    """The stored registry: ``known`` itself while the version has not moved (one GET)."""
    version = parse_version(await redis.get(keys.camera_version))
    if version == known.version:
        return known
    raw = await redis.hgetall(keys.camera_entries)
    return decode_entries(version, raw)


def hide_removed(view: TopologyView, registry: Registry) -> TopologyView:
    """``view`` without removed cameras and their edges (their evidence is being forgotten by
    the processors; until the next topology update the store may still hold the edges)."""
    gone = {c for c, e in registry.cameras.items() if e.state == REMOVED}
    if not gone.intersection(view.cameras):
        return view
    return TopologyView(
        tuple(c for c in view.cameras if c not in gone),
        {k: r for k, r in view.edges.items() if r["a"] not in gone and r["b"] not in gone},
        view.range_end_ms,
        view.updated_ms,
    )


def describe(registry: Registry, camera: str) -> dict[str, Any]:
    """What the service shows of a camera beside its id."""
    entry = registry.cameras.get(camera)
    if entry is None:
        return {"name": camera, "location": ""}
    out: dict[str, Any] = {"name": entry.name, "location": entry.location}
    if entry.lat is not None:
        out["lat"], out["lon"] = entry.lat, entry.lon
    return out


def named_neighbours(answer: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """A neighbours answer with the registry's names and locations."""
    answer.update(describe(registry, answer["camera"]))
    for n in answer["neighbours"]:
        n.update(describe(registry, n["camera"]))
    return answer


# --- writes -----------------------------------------------------------------------------------
class RegistryWrites:
    """The service's writes: a synchronous client in a thread, the same transaction as
    ``camtopo cameras`` (:class:`CameraRegistryStore`)."""

    def __init__(self, settings: Settings, redis_url: str | None, keys: Keys) -> None:
        self._settings, self._url, self._keys = settings, redis_url, keys
        self._store: CameraRegistryStore | None = None

    def store(self) -> CameraRegistryStore:
        if self._store is None:
            self._store = CameraRegistryStore(store_client(self._settings, self._url), self._keys)
        return self._store

    async def change(self, change: Callable[[Registry], Registry]) -> Registry:
        return await asyncio.to_thread(lambda: self.store().change(change))

    async def network(self) -> Network | None:
        raw = await asyncio.to_thread(lambda: self.store().client.get(self._keys.network))
        return Network.from_json(json.loads(raw)) if raw is not None else None


async def body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="the body must be a JSON object")
    return data


def _refusal(exc: RegistryError) -> web.Response:
    text = str(exc)
    status = 404 if text.startswith("unknown camera") else 409 if "already" in text else 400
    return web.json_response({"error": text}, status=status)


Write = Callable[[web.Request], Awaitable[Callable[[Registry], Registry]]]


def write_route(
    settings: Settings,
    writes: Callable[[web.Request], RegistryWrites],
    refreshed: Callable[[web.Request], Awaitable[Any]],
    make: Write,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A write handler: refused without a configured token, else the change applied and the
    service's view refreshed, so the next read shows it."""

    async def handler(request: web.Request) -> web.Response:
        if settings.service.api_token is None:
            return web.json_response(
                {
                    "error": "camera registry writes need CAMTOPO_API_TOKEN (reads are open "
                    "without one); use 'camtopo cameras' with access to Redis instead"
                },
                status=403,
            )
        try:
            registry = await writes(request).change(await make(request))
        except (RegistryError, NetworkError) as exc:
            return _refusal(RegistryError(str(exc)))
        await refreshed(request)
        camera = request.match_info.get("camera")
        if camera is None:
            return web.json_response({"version": registry.version})
        return web.json_response(
            {"version": registry.version, "camera": registry.cameras[camera].to_json()}
        )

    return handler


def add_change(writes: Callable[[web.Request], RegistryWrites]) -> Write:
    async def make(request: web.Request) -> Callable[[Registry], Registry]:
        data = await body(request)
        network = await writes(request).network()
        camera = data.get("id")
        if network is not None and isinstance(camera, str) and camera in network.cameras:
            slot = network.camera_index(camera)
            data.setdefault("fps", network.rate(slot))
            data.setdefault("grid", network.grids[slot].to_json())
        extra = set(data) - _ENTRY_FIELDS - {"id"}
        if extra:
            raise RegistryError(f"unknown fields {sorted(extra)}")
        entry = CameraEntry.from_json(data, "body")
        return lambda r: r.add(entry, network)

    return make


async def remove_change(request: web.Request) -> Callable[[Registry], Registry]:
    camera, now = request.match_info["camera"], int(time.time() * 1000)
    return lambda r: r.remove(camera, now)


async def rename_change(request: web.Request) -> Callable[[Registry], Registry]:
    name = (await body(request)).get("name")
    if not isinstance(name, str):
        raise RegistryError("field 'name' (text) is required")
    camera = request.match_info["camera"]
    return lambda r: r.rename(camera, name)


async def describe_change(request: web.Request) -> Callable[[Registry], Registry]:
    data = await body(request)
    extra = set(data) - {"location", "lat", "lon"}
    if extra:
        raise RegistryError(f"unknown fields {sorted(extra)}")
    camera = request.match_info["camera"]
    location, lat, lon = data.get("location"), data.get("lat"), data.get("lon")
    if location is not None and not isinstance(location, str):
        raise RegistryError("'location' must be text")
    for key, value in (("lat", lat), ("lon", lon)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RegistryError(f"{key!r} must be a number")
    return lambda r: r.describe(camera, location, lat, lon)


async def import_change(request: web.Request) -> Callable[[Registry], Registry]:
    data = await body(request)
    network = Network.from_json(data)
    reserved = reserved_of(data)
    return lambda r: r.import_network(network, reserved)


def registry_json(registry: Registry) -> dict[str, Any]:
    return {
        "version": max(registry.version, 0),
        "cameras": [registry.cameras[c].to_json() for c in sorted(registry.cameras)],
    }


# --- OpenAPI ----------------------------------------------------------------------------------
_OBJ = {"application/json": {"schema": {"type": "object"}}}


def _write_op(summary: str, description: str, camera: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": description + " Needs the bearer token (403 when the service has none).",
        "responses": {
            "200": {"description": "the registry's new version (and the camera's entry)",
                    "content": _OBJ},
            "400": {"description": "invalid entry: `error` names the field", "content": _OBJ},
            "401": {"description": "missing or wrong bearer token"},
            "403": {"description": "no CAMTOPO_API_TOKEN configured: writes refused"},
            "404": {"description": "unknown camera", "content": _OBJ},
            "409": {"description": "duplicate id, or already removed", "content": _OBJ},
        },
    }  # fmt: skip
    if camera:
        op["parameters"] = [
            {"name": "camera", "in": "path", "required": True, "schema": {"type": "string"},
             "example": "cam007"}
        ]  # fmt: skip
    op["requestBody"] = {"required": not summary.startswith("Remove"), "content": _OBJ}
    return op


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The registry's operations, merged into the service's document."""
    return {
        "/api/registry": {
            "get": {
                "summary": "The camera registry: every entry (removed ones too) and its version",
                "responses": {"200": {"description": "OK", "content": _OBJ}},
            }
        },
        "/api/cameras": {
            "post": _write_op(
                "Add a camera",
                "Body: id, and optionally name, location, lat/lon, fps, grid (fps and grid "
                "default to the camera's slot in network.json, and must match it).",
                camera=False,
            )
        },
        "/api/cameras/import": {
            "post": _write_op(
                "Seed the registry from a network.json body (idempotent)", "", camera=False
            )
        },
        "/api/cameras/{camera}/remove": {
            "post": _write_op(
                "Remove a camera",
                "Its frames become dead letters and its edges disappear.",
                camera=True,
            )
        },
        "/api/cameras/{camera}/rename": {
            "post": _write_op("Rename a camera", 'Body: {"name": ...}.', camera=True)
        },
        "/api/cameras/{camera}/describe": {
            "post": _write_op(
                "Describe a camera's location", "Body: location, lat and lon.", camera=True
            )
        },
    }
