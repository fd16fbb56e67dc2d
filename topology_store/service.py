"""HTTP query service over the topology store (aiohttp), with the live viewer and /metrics.

Reads go to an in-memory :class:`TopologyView` that a background task refreshes whenever the
store's change log moves (and at least every ``refresh_s``), so neighbour and graph queries do
not touch Redis; pair evidence reads the two row blobs. The same task fans change-log entries
out to the viewer's server-sent-event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
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
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from camtopo.core.grid import Network, NetworkError
from camtopo.core.registry import Registry
from camtopo.errors import CamtopoError
from camtopo.settings import Settings
from topology_store import camera_routes, metrics
from topology_store.backend import async_store_client
from topology_store.blobs import BlobError, Row
from topology_store.graph import TopologyView, UnknownCamera
from topology_store.keys import Keys
from topology_store.openapi import openapi_document
from topology_store.read_model import ReadModel, health_doc

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Paths anyone may read: the viewer's page and files (they hold no data), the liveness probe
# and the API's description. /metrics joins them unless CAMTOPO_METRICS_AUTH is on.
OPEN_PATHS = ("/healthz", "/openapi.json", "/static/", "/favicon.ico")
STREAM_PATH = "/api/stream"


class NotReady(Exception):
    """No processor has saved a network to the store yet."""


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
        self.keys = Keys(prefix, settings.redis.shards)
        self.redis = async_store_client(settings, redis_url)
        self.network = network
        self.model = ReadModel(network, settings, self.keys) if network is not None else None
        self.registry = Registry()  # the camera registry: names shown, removed cameras hidden
        self.writes = camera_routes.RegistryWrites(settings, redis_url, self.keys)
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
        return (await self.read_model()).network

    async def read_model(self) -> ReadModel:
        """The read model of the stored network (read once, when a processor has saved it)."""
        if self.model is None:
            raw = await self.redis.get(self.keys.network)
            if raw is None:
                raise NotReady("no processor has saved a network to this store yet")
            self.network = Network.from_json(json.loads(raw))
            self.model = ReadModel(self.network, self.settings, self.keys)
        return self.model

    async def refresh(self) -> TopologyView:
        model = await self.read_model()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.edges)
            pipe.hgetall(self.keys.topo_state)
            edges, state = await pipe.execute()
        view = model.decode_view(edges, state)
        if self.settings.processor.camera_registry:
            self.registry = await camera_routes.read_registry(self.redis, self.keys, self.registry)
            view = camera_routes.hide_removed(view, self.registry)
        self.view = view
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
        return ReadModel.decode_changes(entries)

    async def row(self, window: int) -> Row | None:
        model = await self.read_model()
        key, field = model.row_location(window)
        return model.decode_row(window, await self.redis.hget(key, field))

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
                    for eid, event in ReadModel.decode_changes(entries):
                        self.last_change_id = eid
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
STREAM_KEY = web.AppKey("stream_key", bytes)
CORS_ORIGINS = web.AppKey("cors_origins", frozenset)


# --- middleware -------------------------------------------------------------------------------


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# aiohttp's own errors (unknown route, wrong method, body too large) keep these headers.
_KEPT_HEADERS = ("Allow", "Retry-After")


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
        if status < 400:
            raise
        # aiohttp answers these in text/plain; every error of this API is JSON.
        kept = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
        return _json_error(status, (exc.reason or "error").lower(), kept)
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


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only. A name other than localhost may
    resolve beyond loopback, so it counts as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ExposedWithoutToken(CamtopoError):
    """Listening beyond loopback with no token and without CAMTOPO_API_AUTH=off."""


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to serve the topology beyond loopback without a token, unless told to."""
    if settings.service.api_token is not None or is_loopback(host):
        return
    if not settings.service.api_auth:
        log.warning(
            "serving on %s WITHOUT a token (CAMTOPO_API_AUTH=off): anyone who reaches this "
            "port can read the camera network's movement model",
            host,
        )
        return
    raise ExposedWithoutToken(
        f"refusing to listen on {host!r} without CAMTOPO_API_TOKEN: set a token "
        "(docs/security.md), bind to 127.0.0.1, or set CAMTOPO_API_AUTH=off"
    )


# --- stream tokens ----------------------------------------------------------------------------
# EventSource cannot send an Authorization header, so the viewer's event stream takes a
# short-lived token in its URL instead of the API token: "<expiry>.<HMAC-SHA256 of expiry>".
# Its key is derived from the API token, so rotating the token voids every stream token, and a
# stream token in a log or a browser's history is worth minutes, not the API token.


def stream_key(token: SecretStr) -> bytes:
    secret = token.get_secret_value().encode()
    return hmac.new(secret, b"camtopo stream token v1", hashlib.sha256).digest()


def make_stream_token(key: bytes, expires: int) -> str:
    return f"{expires}.{hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()}"


def stream_token_valid(key: bytes, raw: str, now: float) -> bool:
    expires, dot, _mac = raw.partition(".")
    if not (dot and 0 < len(expires) <= 12 and expires.isascii() and expires.isdigit()):
        return False
    good = make_stream_token(key, int(expires)).encode()
    # surrogateescape: a query that is not UTF-8 just differs (as for the header below).
    return hmac.compare_digest(raw.encode("utf-8", "surrogateescape"), good) and int(expires) > now


def _bearer(request: web.Request) -> bytes | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    # aiohttp keeps header bytes that are not UTF-8 as lone surrogates; surrogateescape turns
    # them back into those bytes (a plain encode() raised, a 500) so they just differ.
    return value.strip().encode("utf-8", "surrogateescape")


def bearer_auth(settings: Settings) -> Middleware:
    token = (
        settings.service.api_token.get_secret_value().encode()
        if settings.service.api_token
        else None
    )
    key = stream_key(settings.service.api_token) if settings.service.api_token else None
    open_paths = OPEN_PATHS if settings.service.metrics_auth else (*OPEN_PATHS, "/metrics")

    def refuse(message: str) -> web.Response:
        # The message never repeats what was sent: it may be a token.
        return _json_error(401, message, {"WWW-Authenticate": 'Bearer realm="camtopo"'})

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if token is None or key is None or path == "/" or path.startswith(open_paths):
            return await handler(request)
        supplied = _bearer(request)
        if supplied is not None and hmac.compare_digest(supplied, token):
            return await handler(request)
        raw_stream = request.query.get("stream_token")
        if path == STREAM_PATH and supplied is None and raw_stream is not None:
            if stream_token_valid(key, raw_stream, time.time()):
                return await handler(request)
            return refuse("expired or invalid stream token: get a new one from /api/stream-token")
        if "access_token" in request.query:
            return refuse("tokens are accepted only in the Authorization: Bearer header")
        return refuse("missing or wrong bearer token")

    return auth


def cors_origins(settings: Settings) -> frozenset[str]:
    return frozenset(o.strip() for o in settings.service.cors_origins.split(",") if o.strip())


def cors(settings: Settings) -> Middleware:
    """Preflight requests from allowed origins; the response headers are added in
    :func:`_response_headers`. No allowed origin (the default) = no CORS headers at all."""
    origins = cors_origins(settings)

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Before authentication: a browser's preflight carries no Authorization header.
        if (
            request.method == "OPTIONS"
            and request.headers.get("Origin") in origins
            and "Access-Control-Request-Method" in request.headers
        ):
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Authorization, Last-Event-ID",
                    "Access-Control-Max-Age": "600",
                },
            )
        return await handler(request)

    return preflight


def limits(settings: Settings) -> Middleware:
    """Bounds on what one request may cost: URL length, body size, requests served at once.
    Over the concurrency limit a request is refused at once (503, Retry-After), never queued:
    a queue would only turn an overload into hung clients."""
    busy = asyncio.Semaphore(settings.service.max_concurrent)
    retry = {"Retry-After": "1"}

    @web.middleware
    async def bound(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(request.raw_path) > settings.service.max_url_chars:
            return _json_error(414, f"URL longer than {settings.service.max_url_chars} characters")
        if (request.content_length or 0) > settings.service.max_body_bytes:
            return _json_error(413, f"body larger than {settings.service.max_body_bytes} bytes")
        if request.path == STREAM_PATH:  # long-lived: bounded by http_max_streams instead
            return await handler(request)
        if busy.locked():
            return _json_error(503, "too many requests at once; retry shortly", retry)
        async with busy:
            return await handler(request)

    return bound


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors included: CORS for allowed origins, and no software version."""
    response.headers["Server"] = "camtopo"
    origin = request.headers.get("Origin")
    if origin is not None and origin in request.app[CORS_ORIGINS]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"


class AccessLogger(AbstractAccessLogger):
    """The access log without query strings or headers: a stream token (or a token someone
    put in a URL by mistake) must not land in the log, nor a Referer that carries one."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )


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
    meta = ReadModel.decode_meta(await state.redis.hgetall(state.keys.checkpoint))
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
    settings = _state(request).settings
    return web.json_response(
        openapi_document(
            settings.service.api_token is not None, metrics_secured=settings.service.metrics_auth
        )
    )


async def stream_token(request: web.Request) -> web.Response:
    """A signed token for the event stream's URL (the caller has shown the API token)."""
    settings = _state(request).settings
    if STREAM_KEY not in request.app:  # no token configured: the stream is open
        return web.json_response({"stream_token": None, "expires_in_s": None})
    ttl = settings.service.stream_token_ttl_s
    value = make_stream_token(request.app[STREAM_KEY], int(time.time() + ttl))
    return web.json_response(
        {"stream_token": value, "expires_in_s": ttl}, headers={"Cache-Control": "no-store"}
    )


async def cameras(request: web.Request) -> web.Response:
    state = _state(request)
    view = await state.current()
    degree = {c: 0 for c in view.cameras}
    for rec in view.edges.values():
        degree[rec["a"]] += 1
        degree[rec["b"]] += 1
    return web.json_response(
        {
            "cameras": [
                {"camera": c, "neighbours": degree[c], **camera_routes.describe(state.registry, c)}
                for c in view.cameras
            ]
        }
    )


async def neighbours(request: web.Request) -> web.Response:
    camera = camera_param(request, "camera")
    state = _state(request)
    view = await state.current()
    answer = camera_routes.named_neighbours(view.neighbours(camera), state.registry)
    return web.json_response(answer)


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
    return web.json_response((await state.read_model()).pair_evidence(i, j, row_i, row_j))


async def graph(request: web.Request) -> web.Response:
    body = await _state(request).cached("graph", TopologyView.graph_json)
    return web.Response(body=body, content_type="application/json")


async def graphml(request: web.Request) -> web.Response:
    view = await _state(request).current()
    return web.Response(text=view.graphml(), content_type="application/graphml+xml")


async def partitions(request: web.Request) -> web.Response:
    state = _state(request)
    size = state.settings.store.partition_max_cameras
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
    if len(state.subscribers) >= state.settings.service.max_streams:
        return _json_error(503, "too many open event streams; retry later", {"Retry-After": "5"})
    # Checked, and the missed changes read, before the response starts: once the 200 is sent,
    # a bad id or a Redis failure can only end the stream, not be told to the client.
    # A new EventSource cannot set Last-Event-ID: the viewer passes ?after= when it opens one.
    after: StreamId | None = None
    if last_id := request.headers.get("Last-Event-ID", ""):
        after = parse_stream_id("Last-Event-ID", last_id)
    elif "after" in request.query:
        after = parse_stream_id("after", request.query["after"])
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    # Subscribed before the replay is read, so no change between the two is missed. Every change
    # after `position` reaches this queue (the follower moves it and fans out with no await).
    state.subscribers.add(queue)
    position = state.last_change_id
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
        if after is None:
            # Where the log stood: a client that has seen no change yet still reconnects (the
            # browser's Last-Event-ID, the viewer's ?after=) without losing what happens meanwhile.
            await response.write(
                f"id: {position}\nevent: position\ndata: {json.dumps(position)}\n\n".encode()
            )
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


# The viewer's few files by name, not a static directory route: aiohttp's answers a missing file
# with an empty 404 of its own, where every error here is JSON.
STATIC_FILES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name)


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
    app = web.Application(
        middlewares=[errors_and_metrics, limits(settings), cors(settings), bearer_auth(settings)],
        # No route reads a body; this bounds what a reader would take, should one ever do.
        client_max_size=settings.service.max_body_bytes,
    )
    app[STATE] = state
    if settings.service.api_token is not None:
        app[STREAM_KEY] = stream_key(settings.service.api_token)
    app[CORS_ORIGINS] = cors_origins(settings)
    app.on_response_prepare.append(_response_headers)

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
    app.router.add_get("/static/{name}", static_file)
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
    app.router.add_post("/api/stream-token", stream_token)
    add_registry_routes(app, settings)
    return app


async def registry(request: web.Request) -> web.Response:
    state = _state(request)
    state.registry = await camera_routes.read_registry(state.redis, state.keys, state.registry)
    return web.json_response(camera_routes.registry_json(state.registry))


def add_registry_routes(app: web.Application, settings: Settings) -> None:
    """The camera registry's routes (topology_store/camera_routes.py)."""

    def writes(request: web.Request) -> camera_routes.RegistryWrites:
        return _state(request).writes

    async def refreshed(request: web.Request) -> None:
        with contextlib.suppress(NotReady):
            await _state(request).refresh()

    def route(make: camera_routes.Write) -> Handler:
        return camera_routes.write_route(settings, writes, refreshed, make)

    app.router.add_get("/api/registry", registry)
    app.router.add_post("/api/cameras", route(camera_routes.add_change(writes)))
    app.router.add_post("/api/cameras/import", route(camera_routes.import_change))
    app.router.add_post("/api/cameras/{camera}/remove", route(camera_routes.remove_change))
    app.router.add_post("/api/cameras/{camera}/rename", route(camera_routes.rename_change))
    app.router.add_post("/api/cameras/{camera}/describe", route(camera_routes.describe_change))


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    network: Network | None = None,
) -> None:
    host = host or settings.service.host
    check_exposure(settings, host)
    app = create_app(settings, network=network)
    web.run_app(
        app,
        host=host,
        port=port or settings.service.port,
        print=log.info,
        shutdown_timeout=5,
        access_log_class=AccessLogger,
    )
