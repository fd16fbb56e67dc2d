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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from camtopo.core.grid import Network, NetworkError
from camtopo.settings import Settings
from topology_store import metrics
from topology_store.blobs import BlobError, Row, decode_row
from topology_store.graph import TopologyView, UnknownCamera
from topology_store.keys import Keys
from topology_store.openapi import openapi_document
from topology_store.store import (
    health_doc,
    pair_evidence,
    parse_checkpoint,
    parse_view,
    window_index,
)

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json", "/static/", "/favicon.ico")


class NotReady(Exception):
    """No processor has saved a network to the store yet."""


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


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
        self.redis = aioredis.Redis.from_url(
            redis_url or settings.redis_url, socket_connect_timeout=5, socket_timeout=10
        )
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
    route = (
        request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    )
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
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
        status = 503
        return _json_error(503, f"Redis unavailable: {exc}")
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
        if supplied is None or not hmac.compare_digest(supplied.encode(), token.encode()):
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
        return web.json_response({"status": "down", "redis": str(exc)}, status=503)
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
    view = await _state(request).current()
    return web.json_response(view.neighbours(request.match_info["camera"]))


async def overlaps(request: web.Request) -> web.Response:
    view = await _state(request).current()
    return web.json_response(view.window_overlaps(request.match_info["a"], request.match_info["b"]))


async def evidence(request: web.Request) -> web.Response:
    state = _state(request)
    network = await state.ensure_network()
    try:
        a, b = request.query["a"], request.query["b"]
    except KeyError as exc:
        return _json_error(400, f"query parameter {exc.args[0]!r} is required (e.g. cam007:17)")
    i, j = window_index(network, a), window_index(network, b)
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
    after = request.query.get("after", "0-0")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        return _json_error(400, "limit must be an integer")
    entries = await state.redis.xrange(state.keys.changes, min=f"({after}", count=limit)
    out = [{"id": eid.decode(), **json.loads(f[b"event"])} for eid, f in entries]
    return web.json_response({"changes": out, "last": out[-1]["id"] if out else after})


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``change`` event per topology change, ids from the change log."""
    state = _state(request)
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    # Replay what a reconnecting viewer missed, then go live.
    after = request.headers.get("Last-Event-ID")
    state.subscribers.add(queue)
    metrics.SSE_CLIENTS.inc()
    try:
        if after:
            for eid, fields in await state.redis.xrange(state.keys.changes, min=f"({after}"):
                payload = json.dumps(json.loads(fields[b"event"]))
                await response.write(
                    f"id: {eid.decode()}\nevent: change\ndata: {payload}\n\n".encode()
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
