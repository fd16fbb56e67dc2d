"""The HTTP query service against a REAL Redis filled from a small estimator run."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.service import create_app
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def filled(redis_server) -> tuple[TopologyStore, synthetic.SyntheticNetwork]:
    net = synthetic.make_network(12, seed=2)
    settings = Settings(redis_shards=8)
    est = synthetic.run(net, settings, 3000)
    store = TopologyStore(
        redis_server.url, net.network, settings, prefix=f"s{uuid.uuid4().hex[:6]}"
    )
    store.checkpoint(est, 0, {0: 1})
    store.update_topology(est, 300_000)
    return store, net


def serve(store: TopologyStore, test: Callable[[TestClient], Awaitable[None]], **kw: Any) -> None:
    settings = store.settings.model_copy(update=kw)

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
        r = await client.get("/api/evidence", params={"a": "cam000:1"})
        assert r.status == 400 and "'b'" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "cam000:1", "b": "cam001:999"})
        assert r.status == 404 and "999" in (await r.json())["error"]
        r = await client.get("/api/evidence", params={"a": "cam000:1", "b": "cam000:2"})
        assert r.status == 404 and "same camera" in (await r.json())["error"]

    serve(store, check)


def test_token_is_required_when_configured(filled) -> None:
    store, _ = filled

    async def check(client: TestClient) -> None:
        assert (await client.get("/api/graph")).status == 401
        bad = await client.get("/api/graph", headers={"Authorization": "Bearer wrong"})
        assert bad.status == 401
        ok = await client.get("/api/graph", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        assert (await client.get("/api/graph", params={"access_token": "s3cret"})).status == 200
        assert (await client.get("/healthz")).status == 200  # probes stay open
        spec = await (await client.get("/openapi.json")).json()
        assert spec["security"] == [{"bearer": []}]

    serve(store, check, api_token="s3cret")


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
        while len(seen) < len(changes):
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().strip()
            if line.startswith("data: "):
                seen.append(line)
        assert all('"EDGE_REMOVED"' in s for s in seen)
        resp.close()

    serve(store, check)
