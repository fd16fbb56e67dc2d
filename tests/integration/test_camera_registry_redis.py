"""The camera registry on a REAL Redis: `camtopo cameras` run as an operator runs it (its own
process) changes what an already running query service answers, without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from camtopo.operations.localstack import RedisServer
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.service import create_app
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis


def cameras(url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
    return subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "cameras", "--prefix", prefix, *args],
        env={**env, "CAMTOPO_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_changes_reach_a_running_service(redis_server: RedisServer, tmp_path: Path) -> None:
    url, prefix = redis_server.url, f"reg{uuid.uuid4().hex[:6]}"
    settings = Settings(redis={"shards": 8})
    net = synthetic.make_network(10, seed=2)
    store = TopologyStore(url, net.network, settings, prefix=prefix)
    est = synthetic.run(net, settings, 3000)
    store.checkpoint(est, 0, {0: 1})
    store.update_topology(est, 300_000)
    edge = store.graph()["edges"][0]
    a, b = edge["a"], edge["b"]
    network = tmp_path / "network.json"
    network.write_text(json.dumps(net.network.to_json()))

    async def main() -> None:
        app = create_app(settings, redis_url=url, prefix=prefix, refresh_s=0.1)
        async with TestClient(TestServer(app)) as client:

            async def names() -> dict[str, str]:
                await asyncio.sleep(0.3)  # past the service's refresh
                got = (await (await client.get("/api/cameras")).json())["cameras"]
                return {c["camera"]: c["name"] for c in got}

            assert (await names())[a] == a  # no registry yet: the id is the name
            assert cameras(url, prefix, "import", str(network)).returncode == 0
            done = cameras(url, prefix, "rename", a, "North gate")
            assert done.returncode == 0, done.stderr
            assert (await names())[a] == "North gate"
            bad = cameras(url, prefix, "remove", "no-such-camera")
            assert bad.returncode == 2 and "unknown camera 'no-such-camera'" in bad.stderr
            assert cameras(url, prefix, "remove", a).returncode == 0
            assert a not in await names()
            graph = await (await client.get("/api/graph")).json()
            assert graph["edges"] and all(a not in (e["a"], e["b"]) for e in graph["edges"])
            assert b in await names()

    try:
        asyncio.run(main())
        listed = cameras(url, prefix, "list").stdout.splitlines()
        assert [line.split("\t")[:2] for line in listed if line.startswith(f"{a}\t")] == [
            [a, "removed"]
        ]
    finally:
        for key in store.redis.scan_iter(f"{prefix}*"):
            store.redis.delete(key)
        store.close()
