"""The query service's OpenAPI 3 document (hand-written: the API is small and stable)."""

from __future__ import annotations

from typing import Any

from topology_store.camera_routes import openapi_paths

_JSON = {"application/json": {"schema": {"type": "object"}}}
# A change-log id, as the service checks it (each part an unsigned 64-bit integer).
_STREAM_ID = {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}


def _op(summary: str, description: str = "", params: list[dict[str, Any]] | None = None,
        content: dict[str, Any] | None = None, secured: bool = True) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": content or _JSON},
            "404": {"description": "unknown camera", "content": _JSON},
            "503": {"description": "Redis unavailable or no topology saved yet", "content": _JSON},
        },
    }
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
        op["responses"]["400"] = {
            "description": "bad parameter: `error` says what is wrong, `parameter` names it",
            "content": _JSON,
        }
    if secured:
        op["responses"]["401"] = {"description": "missing or wrong bearer token"}
    else:
        op["security"] = []
    return op


def _param(where: str, name: str, example: str | int, required: bool = True,
           schema: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "in": where, "required": required,
            "schema": schema or {"type": "string"}, "example": example}  # fmt: skip


def _path_param(name: str, example: str) -> dict[str, Any]:
    return _param("path", name, example, schema={"type": "string", "maxLength": 200})


def _window_param(name: str, example: str) -> dict[str, Any]:
    schema = {
        "type": "string",
        "pattern": "^(.{1,200}:)?[0-9]{1,9}$",
        "description": "`camera:index` (index within the camera's grid) or a global index",
    }
    return _param("query", name, example, schema=schema)


def openapi_document(token_required: bool, metrics_secured: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "camtopo topology query service",
            "version": "1.0.0",
            "description": (
                "Activity topology of a camera network estimated by exclusion: cameras, "
                "handover neighbours, window overlaps, pair evidence, graph, partitions."
            ),
        },
        "paths": {
            "/healthz": {"get": _op("Liveness: Redis reachable", secured=False)},
            "/health": {"get": _op("Checkpoint age, topology time, counts of cameras and edges")},
            "/metrics": {
                "get": _op(
                    "Prometheus metrics",
                    content={"text/plain": {"schema": {"type": "string"}}},
                    secured=metrics_secured,
                )
            },
            "/api/cameras": {"get": _op("Cameras with their number of neighbours")},
            "/api/cameras/{camera}/neighbours": {
                "get": _op(
                    "Handover candidates of a camera, strongest evidence first",
                    "Each neighbour has its weight (min C' both ways of the strongest window "
                    "pair), C' out and in, support, co-occurrences and transit time (null for "
                    "overlaps). `rules_out` = 1 - k/n: searching these k cameras instead of "
                    "all n other cameras rules out that fraction of the network.",
                    [_path_param("camera", "cam007")],
                )
            },
            "/api/overlaps/{a}/{b}": {
                "get": _op(
                    "Adjacent window pairs of two cameras, with C', O and P both ways",
                    params=[_path_param("a", "cam007"), _path_param("b", "cam008")],
                )
            },
            "/api/evidence": {
                "get": _op(
                    "Evidence for one window pair from the stored counts",
                    "O (opportunities), P (co-occupied), E = O - P (exclusions) and C' both "
                    "ways; `adjacent` when C' > C* both ways.",
                    [_window_param("a", "cam007:17"), _window_param("b", "cam008:52")],
                )
            },
            "/api/graph": {"get": _op("The camera graph as JSON")},
            "/api/graph.graphml": {
                "get": _op(
                    "The camera graph as GraphML",
                    content={"application/graphml+xml": {"schema": {"type": "string"}}},
                )
            },
            "/api/partitions": {
                "get": _op(
                    "Groups of strongly connected cameras (paper section 8)",
                    "Connected components of the camera graph, larger ones split by "
                    "label propagation; each with internal and cut edge counts.",
                )
            },
            "/api/changes": {
                "get": _op(
                    "Topology-change log after a stream id",
                    params=[
                        _param("query", "after", "0-0", False, _STREAM_ID),
                        _param(
                            "query",
                            "limit",
                            100,
                            False,
                            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        ),
                    ],
                )
            },
            "/api/stream": {
                "get": _op(
                    "Server-sent events, one `change` event per topology change",
                    "Send Last-Event-ID (or `after`, for a new EventSource) to replay what was "
                    "missed; without either, a `position` event (the log's last id) follows "
                    "the connection. EventSource cannot send "
                    "headers: instead of the bearer token it may pass `stream_token`, from "
                    "POST /api/stream-token (valid for minutes, accepted on this path only).",
                    [
                        _param("header", "Last-Event-ID", "1700000000000-0", False, _STREAM_ID),
                        _param("query", "after", "1700000000000-0", False, _STREAM_ID),
                        _param("query", "stream_token", "1700000300.9f86d081884c7d65", False),
                    ],
                    content={"text/event-stream": {"schema": {"type": "string"}}},
                )
            },
            "/api/stream-token": {
                "post": _op(
                    "A short-lived signed token for the event stream's URL",
                    "`stream_token` (null when the service needs no token) and `expires_in_s`.",
                )
            },
        },
    }
    for path, ops in openapi_paths().items():
        doc["paths"].setdefault(path, {}).update(ops)
    if token_required:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc
