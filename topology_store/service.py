"""HTTP query service over the topology store (aiohttp), with the live viewer and /metrics.

Reads go to an in-memory :class:`TopologyView` that a background task refreshes whenever the
store's change log moves (and at least every ``refresh_s``), so neighbour and graph queries do
not touch Redis; pair evidence reads the two row blobs. The same task fans change-log entries
out to the viewer's server-sent-event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from camtopo.connections import async_redis_client
from camtopo.core.grid import Network, NetworkError
from camtopo.settings import Settings
from topology_store import metrics
from topology_store.blobs import BlobError, Row, decode_row
from topology_store.graph import TopologyView, UnknownCamera
from topology_store.keys import Keys
from topology_store.openapi import openapi_document
from topology_store.store import health_doc, pair_evidence, parse_checkpoint, parse_view

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json", "/static/", "/favicon.ico")


class NotReady(Exception):
    """No processor has saved a network to the store yet."""


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


# --- request parameters -----------------------------------------------------------------------
# Every number or id a client sends is checked here, once, before it reaches int(), the network
# or Redis: a bad value is the client's mistake, answered 400 naming the parameter -- never a
# 500 (int() refusing "²" or 5,000 digits) nor a 503 (Redis refusing a malformed stream id).

MAX_DIGITS = 9  # window indices and limits: more than any network has, and cheap for int()
MAX_ID_CHARS = 200  # camera ids; only bounds what an error message echoes
_U64 = 2**64 - 1  # each half of a Redis stream id is an unsigned 64-bit integer
# [0-9], not \d: \d matches every Unicode digit.
_STREAM_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


class BadParameter(Exception):
    """A request parameter the client got wrong: answered 400 with the parameter named."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter {name!r} {problem}")
        self.name = name


class StreamId(NamedTuple):
    """A change-log (Redis stream) id, ``ms-seq``."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


LAST_STREAM_ID = StreamId(_U64, _U64)


@dataclass(frozen=True)
class WindowRef:
    """A window as the client named it: ``camera:index``, or a global index (camera None)."""

    camera: str | None
    index: int


def _show(raw: str) -> str:
    """The client's value for an error message: quoted, escaped and cut short."""
    return repr(raw) if len(raw) <= 40 else f"{raw[:40]!r}... ({len(raw)} characters)"


def parse_digits(name: str, raw: str) -> int:
    """A whole number of ASCII digits. ``str.isdigit`` alone is not enough: it accepts "²",
    which int() refuses, and "١", which int() reads as 1."""
    if not (0 < len(raw) <= MAX_DIGITS and raw.isascii() and raw.isdigit()):
        raise BadParameter(
            name, f"must be a whole number of at most {MAX_DIGITS} digits 0-9, got {_show(raw)}"
        )
    return int(raw)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = parse_digits(name, raw)
    if not low <= value <= high:
        raise BadParameter(name, f"must be in {low}..{high}, got {value}")
    return value


def parse_stream_id(name: str, raw: str) -> StreamId:
    """``ms-seq`` or ``ms`` (seq 0), each part an unsigned 64-bit integer, as Redis takes it."""
    match = _STREAM_ID.fullmatch(raw)
    if match is None or int(match[1]) > _U64 or int(match[2] or 0) > _U64:
        raise BadParameter(name, f"must be a change id like 1700000000000-0, got {_show(raw)}")
    return StreamId(int(match[1]), int(match[2] or 0))


def camera_param(request: web.Request, name: str) -> str:
    """A camera id from the path; whether the network has it is the view's 404."""
    camera = request.match_info[name]
    if not 0 < len(camera) <= MAX_ID_CHARS:
        raise BadParameter(name, f"must be a camera id of 1..{MAX_ID_CHARS} characters")
    return camera


def window_param(request: web.Request, name: str) -> WindowRef:
    """The syntax of a window query parameter (``cam007:17`` or a global index); no Redis, so
    a malformed window is a 400 even while Redis is down."""
    raw = request.query.get(name)
    if raw is None:
        raise BadParameter(name, "is required (e.g. cam007:17)")
    camera, colon, number = raw.rpartition(":")
    if colon and not 0 < len(camera) <= MAX_ID_CHARS:
        raise BadParameter(name, f"must be 'camera:index' or a global index, got {_show(raw)}")
    return WindowRef(camera if colon else None, parse_digits(name, number))


def resolve_window(network: Network, name: str, ref: WindowRef) -> int:
    """The global window of ``ref``: an index outside the network is a 400, an unknown camera
    a 404 (as on the camera routes)."""
    if ref.camera is None:
        if ref.index >= network.n_windows:
            raise BadParameter(name, f"global window must be in 0..{network.n_windows - 1}")
        return ref.index
    camera = network.camera_index(ref.camera)
    size = network.grids[camera].n_windows
    if ref.index >= size:
        raise BadParameter(name, f"window of camera {ref.camera!r} must be in 0..{size - 1}")
    return network.global_window(camera, ref.index)


class QueryState:
    """The service's Redis connection, network and cached view, and its SSE subscribers."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str | None = None,
        network: Network | None = None,
        prefix: str = "camtopo",
        refresh_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.keys = Keys(prefix, settings.redis_shards)
        self.redis = async_redis_client(settings, redis_url)
        self.network = network
        self.refresh_s = refresh_s
        self.view: TopologyView | None = None
        self.last_change_id = "0-0"
        self.subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._initialised = False
        self._memo_view: TopologyView | None = None
        self._memo: dict[str, bytes] = {}

    # --- loading ------------------------------------------------------------------------------
    async def ensure_network(self) -> Network:
        if self.network is None:
            raw = await self.redis.get(self.keys.network)
            if raw is None:
                raise NotReady("no processor has saved a network to this store yet")
            self.network = Network.from_json(json.loads(raw))
        return self.network

    async def refresh(self) -> TopologyView:
        network = await self.ensure_network()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.edges)
            pipe.hgetall(self.keys.topo_state)
            edges, state = await pipe.execute()
        self.view = parse_view(network, _text(edges), _text(state))
        return self.view

    async def cached(self, name: str, make: Callable[[TopologyView], Any]) -> bytes:
        """A whole-graph answer as JSON bytes, computed once per view (graph, partitions)."""
        view = await self.current()
        if self._memo_view is not view:
            self._memo_view, self._memo = view, {}
        if name not in self._memo:
            self._memo[name] = json.dumps(make(view)).encode()
        return self._memo[name]

    async def current(self) -> TopologyView:
        return self.view if self.view is not None else await self.refresh()

    async def changes_after(
        self, after: StreamId, count: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Change-log entries after ``after``, oldest first."""
        if after == LAST_STREAM_ID:  # nothing follows it, and Redis refuses it as "(" start
            return []
        entries = await self.redis.xrange(self.keys.changes, min=f"({after}", count=count)
        return [(eid.decode(), json.loads(fields[b"event"])) for eid, fields in entries]

    async def row(self, window: int) -> Row | None:
        network = await self.ensure_network()
        shard = int(network.window_camera[window]) % self.settings.redis_shards
        key = self.keys.rows(shard)
        blob = await self.redis.hget(key, str(window))
        if blob is None:
            return None
        return decode_row(blob, network.n_cameras, network.n_windows, f"{key}[{window}]")

    # --- the change-log follower --------------------------------------------------------------
    async def follow(self) -> None:
        """Tail the change stream: refresh the view on news and fan entries out to viewers."""
        backoff = 0.2
        while True:
            try:
                if not self._initialised:
                    last = await self.redis.xrevrange(self.keys.changes, count=1)
                    self.last_change_id = last[0][0].decode() if last else "0-0"
                    self._initialised = True
                with contextlib.suppress(NotReady):
                    await self.refresh()
                reply = await self.redis.xread(
                    {self.keys.changes: self.last_change_id},
                    block=int(self.refresh_s * 1000),
                    count=500,
                )
                for _stream, entries in reply or []:
                    for eid, fields in entries:
                        self.last_change_id = eid.decode()
                        event = json.loads(fields[b"event"])
                        for queue in list(self.subscribers):
                            if queue.qsize() < 1000:  # a stalled viewer must not hold memory
                                queue.put_nowait((self.last_change_id, event))
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or restarting: keep serving the cached view
                log.warning("change-log follower: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def start(self) -> None:
        # Learn where the log ends before serving, so no change after startup is missed.
        with contextlib.suppress(aioredis.RedisError):
            last = await self.redis.xrevrange(self.keys.changes, count=1)
            self.last_change_id = last[0][0].decode() if last else "0-0"
        self._initialised = True
        self._task = asyncio.create_task(self.follow(), name="change-log follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self.subscribers):
            queue.put_nowait(None)
        await self.redis.aclose()


STATE = web.AppKey("state", QueryState)


# --- middleware -------------------------------------------------------------------------------


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "?"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BadParameter as exc:
        status = 400
        return web.json_response({"error": str(exc), "parameter": exc.name}, status=400)
    except (UnknownCamera, NetworkError) as exc:
        status = 404
        return _json_error(404, str(exc))
    except NotReady as exc:
        status = 503
        return _json_error(503, str(exc))
    except BlobError as exc:
        status = 500
        return _json_error(500, f"corrupt stored row: {exc}")
    except aioredis.RedisError as exc:
        # The error names Redis's host and port: for the log, not for whoever asked.
        log.warning("%s %s: Redis unavailable: %s", request.method, route, exc)
        status = 503
        return _json_error(503, "Redis unavailable")
    except Exception:
        log.exception("%s %s failed", request.method, route)
        status = 500
        return _json_error(500, "internal error")
    finally:
        if route != "/api/stream":
            metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(route, str(status)).inc()


def bearer_auth(token: str | None) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if token is None or path == "/" or path.startswith(OPEN_PATHS):
            return await handler(request)
        given = request.headers.get("Authorization", "")
        supplied = given[7:] if given.startswith("Bearer ") else None
        # EventSource cannot send headers, so the viewer's stream passes the token as a query.
        supplied = supplied or request.query.get("access_token")
        # aiohttp keeps header bytes that are not UTF-8 as lone surrogates; surrogateescape
        # turns them back into those bytes (a plain encode() raised, a 500) so they just differ.
        if supplied is None or not hmac.compare_digest(
            supplied.encode("utf-8", "surrogateescape"), token.encode()
        ):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="camtopo"'},
            )
        return await handler(request)

    return auth


# --- handlers ---------------------------------------------------------------------------------


def _state(request: web.Request) -> QueryState:
    return request.app[STATE]


async def healthz(request: web.Request) -> web.Response:
    try:
        await _state(request).redis.ping()
    except aioredis.RedisError as exc:
        # Open endpoint: the error's host and port go to the log only.
        log.warning("healthz: Redis unavailable: %s", exc)
        return web.json_response({"status": "down", "redis": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    meta = parse_checkpoint(_text(await state.redis.hgetall(state.keys.checkpoint)))
    try:
        view = await state.refresh()
    except NotReady:
        return web.json_response({"status": "empty", "redis": True, "cameras": 0})
    doc = health_doc(meta, view)
    doc["viewers"] = len(state.subscribers)
    return web.json_response(doc)


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(bool(_state(request).settings.api_token)))


async def cameras(request: web.Request) -> web.Response:
    view = await _state(request).current()
    degree = {c: 0 for c in view.cameras}
    for rec in view.edges.values():
        degree[rec["a"]] += 1
        degree[rec["b"]] += 1
    return web.json_response(
        {"cameras": [{"camera": c, "neighbours": degree[c]} for c in view.cameras]}
    )


async def neighbours(request: web.Request) -> web.Response:
    camera = camera_param(request, "camera")
    view = await _state(request).current()
    return web.json_response(view.neighbours(camera))


async def overlaps(request: web.Request) -> web.Response:
    a, b = camera_param(request, "a"), camera_param(request, "b")
    view = await _state(request).current()
    return web.json_response(view.window_overlaps(a, b))


async def evidence(request: web.Request) -> web.Response:
    state = _state(request)
    ref_a, ref_b = window_param(request, "a"), window_param(request, "b")
    network = await state.ensure_network()
    i, j = resolve_window(network, "a", ref_a), resolve_window(network, "b", ref_b)
    if network.window_camera[i] == network.window_camera[j]:
        raise BadParameter(
            "b", "is in the same camera as 'a'; exclusion counts only pairs of different cameras"
        )
    row_i, row_j = await asyncio.gather(state.row(i), state.row(j))
    return web.json_response(pair_evidence(network, i, j, row_i, row_j, state.settings))


async def graph(request: web.Request) -> web.Response:
    body = await _state(request).cached("graph", TopologyView.graph_json)
    return web.Response(body=body, content_type="application/json")


async def graphml(request: web.Request) -> web.Response:
    view = await _state(request).current()
    return web.Response(text=view.graphml(), content_type="application/graphml+xml")


async def partitions(request: web.Request) -> web.Response:
    state = _state(request)
    size = state.settings.partition_max_cameras
    body = await state.cached("partitions", lambda view: view.partitions(size))
    return web.Response(body=body, content_type="application/json")


async def changes(request: web.Request) -> web.Response:
    state = _state(request)
    after = parse_stream_id("after", request.query.get("after", "0-0"))
    limit = query_int(request, "limit", 100, 1, 1000)
    out = [{"id": eid, **event} for eid, event in await state.changes_after(after, limit)]
    return web.json_response({"changes": out, "last": out[-1]["id"] if out else str(after)})


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``change`` event per topology change, ids from the change log."""
    state = _state(request)
    # Checked, and the missed changes read, before the response starts: once the 200 is sent,
    # a bad id or a Redis failure can only end the stream, not be told to the client.
    last_id = request.headers.get("Last-Event-ID", "")
    after = parse_stream_id("Last-Event-ID", last_id) if last_id else None
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    # Subscribed before the replay is read, so no change between the two is missed.
    state.subscribers.add(queue)
    metrics.SSE_CLIENTS.inc()
    try:
        missed = await state.changes_after(after) if after is not None else []
        await response.prepare(request)
        # Replay what a reconnecting viewer missed, then go live.
        for eid, event in missed:
            await response.write(
                f"id: {eid}\nevent: change\ndata: {json.dumps(event)}\n\n".encode()
            )
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            eid, event = item
            await response.write(
                f"id: {eid}\nevent: change\ndata: {json.dumps(event)}\n\n".encode()
            )
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.subscribers.discard(queue)
        metrics.SSE_CLIENTS.dec()
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


# --- the app ----------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    redis_url: str | None = None,
    network: Network | None = None,
    prefix: str = "camtopo",
    refresh_s: float = 2.0,
) -> web.Application:
    state = QueryState(settings, redis_url, network, prefix, refresh_s)
    app = web.Application(middlewares=[errors_and_metrics, bearer_auth(settings.api_token)])
    app[STATE] = state

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    async def close_streams(app: web.Application) -> None:
        # Open event streams would otherwise hold shutdown for its whole timeout.
        for queue in list(state.subscribers):
            queue.put_nowait(None)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_streams)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/api/cameras", cameras)
    app.router.add_get("/api/cameras/{camera}/neighbours", neighbours)
    app.router.add_get("/api/overlaps/{a}/{b}", overlaps)
    app.router.add_get("/api/evidence", evidence)
    app.router.add_get("/api/graph", graph)
    app.router.add_get("/api/graph.graphml", graphml)
    app.router.add_get("/api/partitions", partitions)
    app.router.add_get("/api/changes", changes)
    app.router.add_get("/api/stream", stream)
    return app


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    network: Network | None = None,
) -> None:
    app = create_app(settings, network=network)
    web.run_app(
        app,
        host=host or settings.http_host,
        port=port or settings.http_port,
        print=log.info,
        shutdown_timeout=5,
    )
