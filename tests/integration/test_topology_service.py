"""The HTTP query service against a REAL Redis filled from a small estimator run."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.service import create_app
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis
TOKEN = "s3cret-s3cret-s3cret"


@pytest.fixture(scope="module")
def filled(redis_server) -> tuple[TopologyStore, synthetic.SyntheticNetwork]:
    net = synthetic.make_network(12, seed=2)
    settings = Settings(redis={"shards": 8})
    est = synthetic.run(net, settings, 3000)
    store = TopologyStore(
        redis_server.url, net.network, settings, prefix=f"s{uuid.uuid4().hex[:6]}"
    )
    store.checkpoint(est, 0, {0: 1})
    store.update_topology(est, 300_000)
    return store, net


def serve(store: TopologyStore, test: Callable[[TestClient], Awaitable[None]], **kw: Any) -> None:
    settings = store.settings.replace(service=kw)

    async def main() -> None:
        app = create_app(
            settings, redis_url=store.redis.connection_pool.connection_kwargs and _url(store),
            prefix=store.keys.prefix, refresh_s=0.2,
        )  # fmt: skip
        async with TestClient(TestServer(app)) as client:
            await test(client)

    asyncio.run(main())


def _url(store: TopologyStore) -> str:
    kw = store.redis.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_endpoints_answer_from_the_stored_topology(filled) -> None:
    store, net = filled
    edges = store.graph()["edges"]
    a, b = edges[0]["a"], edges[0]["b"]

    async def check(client: TestClient) -> None:
        r = await client.get("/api/cameras")
        assert r.status == 200
        assert [c["camera"] for c in (await r.json())["cameras"]] == list(net.network.cameras)

        nb = await (await client.get(f"/api/cameras/{a}/neighbours")).json()
        names = [n["camera"] for n in nb["neighbours"]]
        assert b in names and nb["rules_out"] == pytest.approx(1 - len(names) / 11, abs=1e-6)
        weights = [n["weight"] for n in nb["neighbours"]]
        assert weights == sorted(weights, reverse=True)

        ov = await (await client.get(f"/api/overlaps/{a}/{b}")).json()
        assert ov["linked"] and ov["windows"]
        w = ov["windows"][0]
        pair = {"a": f"{a}:{w['a']}", "b": f"{b}:{w['b']}"}
        ev = await (await client.get("/api/evidence", params=pair)).json()
        assert ev["adjacent"] and ev["o_ab"] == w["o_ab"] and ev["c_ba"] == pytest.approx(w["c_ba"])

        g = await (await client.get("/api/graph")).json()
        assert {(e["a"], e["b"]) for e in g["edges"]} == {(e["a"], e["b"]) for e in edges}
        xml = await (await client.get("/api/graph.graphml")).text()
        assert len(ET.fromstring(xml).findall(".//{*}edge")) == len(edges)

        parts = await (await client.get("/api/partitions")).json()
        grouped = [c for p in parts["partitions"] for c in p["cameras"]] + parts["isolated"]
        assert sorted(grouped) == sorted(net.network.cameras)

        ch = await (await client.get("/api/changes", params={"limit": "3"})).json()
        assert len(ch["changes"]) == 3 and ch["last"] == ch["changes"][-1]["id"]

        assert (await client.get("/healthz")).status == 200
        health = await (await client.get("/health")).json()
        assert health["checkpoint"]["range_id"] == 0 and health["edges"] == len(edges)
        spec = await (await client.get("/openapi.json")).json()
        assert (
            spec["openapi"].startswith("3.") and "/api/cameras/{camera}/neighbours" in spec["paths"]
        )
        metrics = await (await client.get("/metrics")).text()
        assert 'camtopo_http_requests_total{route="/api/cameras",status="200"}' in metrics
        assert "viewer.js" in await (await client.get("/")).text()

    serve(store, check)


def test_bad_requests_get_clear_errors(filled) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        r = await client.get("/api/cameras/nope/neighbours")
        assert r.status == 404 and "nope" in (await r.json())["error"]
        r = await client.get("/api/overlaps/cam000/nope")
        assert r.status == 404 and "nope" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "nope:1", "b": "cam000:1"})
        assert r.status == 404 and "nope" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "cam000:1"})
        assert r.status == 400 and "'b'" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "cam000:1", "b": "cam001:999"})
        assert r.status == 400 and "0..107" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "cam000:1", "b": "cam000:2"})
        assert r.status == 400 and "same camera" in (await r.json())["error"]

    serve(store, check)


U64 = 2**64 - 1
# (path, headers, the parameter the 400 must name). Every one of these was a 500, a 503
# "Redis unavailable: Invalid stream ID" or a 200 before the parameters were checked.
BAD_PARAMETERS: list[tuple[str, dict[str, str], str]] = [
    ("/api/changes?after=abc", {}, "after"),
    ("/api/changes?after=-", {}, "after"),
    ("/api/changes?after=1-2-3", {}, "after"),
    (f"/api/changes?after={U64 + 1}", {}, "after"),
    ("/api/changes?after=%C2%B2", {}, "after"),  # "²"
    ("/api/changes?limit=%C2%B2", {}, "limit"),
    ("/api/changes?limit=-5", {}, "limit"),
    ("/api/changes?limit=0", {}, "limit"),
    ("/api/changes?limit=1001", {}, "limit"),
    ("/api/changes?limit=" + "9" * 5000, {}, "limit"),
    ("/api/evidence?a=%C2%B2&b=1", {}, "a"),  # isdigit() but not int()
    ("/api/evidence?a=" + "9" * 5000 + "&b=1", {}, "a"),  # int() refuses > 4300 digits
    ("/api/evidence?a=cam000:%C2%B2&b=cam001:1", {}, "a"),
    ("/api/evidence?a=cam000:%D9%A1&b=cam001:1", {}, "a"),  # "١": int() reads it as 1
    ("/api/evidence?a=cam000:-1&b=cam001:1", {}, "a"),
    ("/api/evidence?a=:1&b=cam001:1", {}, "a"),
    ("/api/evidence?a=cam000:1&b=cam001:", {}, "b"),
    ("/api/evidence?a=cam000:1&b=99999", {}, "b"),  # global window beyond the network
    ("/api/cameras/" + "c" * 300 + "/neighbours", {}, "camera"),
    ("/api/stream", {"Last-Event-ID": "bogus"}, "Last-Event-ID"),
    ("/api/stream", {"Last-Event-ID": f"{U64}-{U64 + 1}"}, "Last-Event-ID"),
]


def test_every_bad_parameter_is_a_400_naming_it(filled) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        wrong = []  # every case checked, so a failure lists them all
        for path, headers, name in BAD_PARAMETERS:
            r = await client.get(path, headers=headers)
            if (r.status, r.content_type) != (400, "application/json"):
                wrong.append((path[:60], headers, r.status))
                r.close()  # may be an event stream that never ends
                continue
            body = await r.json()
            error = str(body.get("error"))
            # Named, and short: the 5,000 digits are not echoed back.
            if body.get("parameter") != name or repr(name) not in error or len(error) > 300:
                wrong.append((path[:60], headers, body))
        assert wrong == []
        # The largest id is valid (nothing follows it), though Redis refuses "(" before it.
        r = await client.get(f"/api/changes?after={U64}-{U64}")
        assert r.status == 200 and (await r.json())["changes"] == []

    serve(store, check)


def test_change_stream_replays_after_last_event_id(filled) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        log = await (await client.get("/api/changes", params={"limit": "1000"})).json()
        ids = [c["id"] for c in log["changes"]]
        assert len(ids) >= 3
        resp = await client.get("/api/stream", headers={"Last-Event-ID": ids[0]})
        assert resp.status == 200
        replayed = []
        while not (line := await asyncio.wait_for(resp.content.readline(), 10)).startswith(
            b": connected"
        ):
            if line.startswith(b"id: "):
                replayed.append(line[4:].decode().strip())
        assert replayed == ids[1:]
        resp.close()

    serve(store, check)


def test_a_non_utf8_authorization_header_is_a_401_without_a_traceback(filled, caplog) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        # aiohttp's client cannot send bytes that are not UTF-8 in a header: a raw request.
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"GET /api/graph HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer \xff\xfe\x80s3cret-s3cret-s3cret\r\n\r\n"
        )
        await writer.drain()
        head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 401 "), head
        assert b"application/json" in head and b"bearer token" in body

    with caplog.at_level(logging.INFO):
        serve(store, check, api_token=SecretStr(TOKEN))
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


def test_an_outage_shows_no_redis_address_only_the_log_does(filled, caplog) -> None:
    store, _ = filled
    with socket.socket() as s:  # a port nothing listens on: Redis is "down"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"redis://127.0.0.1:{port}/0"

    async def check(client: TestClient) -> None:
        for path, headers in [
            ("/healthz", {}),
            ("/health", {}),
            ("/api/cameras", {}),
            ("/api/graph", {}),
            ("/api/changes", {}),
            ("/api/evidence?a=cam000:1&b=cam001:1", {}),
            ("/api/stream", {"Last-Event-ID": "0-0"}),
        ]:
            r = await client.get(path, headers=headers)
            text = await r.text()
            assert r.status == 503 and r.content_type == "application/json", path
            assert "127.0.0.1" not in text and str(port) not in text, (path, text)
        # A client's mistake is still a 400, not a 503, while Redis is down.
        for path in ("/api/changes?after=abc", "/api/evidence?a=%C2%B2&b=1"):
            assert (await client.get(path)).status == 400, path

    async def main() -> None:
        app = create_app(store.settings, redis_url=down, prefix=store.keys.prefix, refresh_s=0.2)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    with caplog.at_level(logging.WARNING, logger="topology_store.service"):
        asyncio.run(main())
    # Where the operator looks instead: the service's log names the address.
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)


def test_token_is_required_when_configured(filled) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        assert (await client.get("/api/graph")).status == 401
        bad = await client.get("/api/graph", headers={"Authorization": "Bearer wrong"})
        assert bad.status == 401
        ok = await client.get("/api/graph", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        # Tokens in a URL end up in logs and histories: refused, saying where they belong.
        r = await client.get("/api/graph", params={"access_token": TOKEN})
        assert r.status == 401 and "Authorization" in (await r.json())["error"]
        assert (await client.get("/healthz")).status == 200  # probes stay open
        spec = await (await client.get("/openapi.json")).json()
        assert spec["security"] == [{"bearer": []}]

    serve(store, check, api_token=SecretStr(TOKEN))


def test_change_stream_delivers_new_changes_as_server_sent_events(filled, redis_server) -> None:
    store, net = filled

    async def check(client: TestClient) -> None:
        resp = await client.get("/api/stream")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert (await resp.content.readline()).startswith(b": connected")
        # A new network state: one planted link vanishes (counts of an empty run).
        empty = synthetic.run(net, store.settings, 10)
        changes = await asyncio.to_thread(store.update_topology, empty, 400_000)
        assert changes
        seen: list[str] = []
        kind = ""
        while len(seen) < len(changes):
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().strip()
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "change":  # not the `position` event
                seen.append(line)
        assert all('"EDGE_REMOVED"' in s for s in seen)
        resp.close()

    serve(store, check)
