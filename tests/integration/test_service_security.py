"""The query service's HTTP security (docs/security.md, "HTTP") against a REAL Redis: the
probe matrix of issue 19 item 4, a bounded load test of the concurrency limit, and a scan of
every log line of a served process for the token."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from camtopo.operations.localstack import RedisServer
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.service import create_app, make_stream_token, stream_key
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis
TOKEN = "probe-token-0123456789abcdef"  # what the scan looks for in the logs
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def store(redis_server: RedisServer) -> Iterator[TopologyStore]:
    net = synthetic.make_network(12, seed=2)
    settings = Settings(redis={"shards": 8})
    # Database 5 under the default prefix: `camtopo serve` (below) reads that prefix.
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    filled = TopologyStore(url, net.network, settings)
    filled.redis.flushdb()
    est = synthetic.run(net, settings, 3000)
    filled.checkpoint(est, 0, {0: 1})
    filled.update_topology(est, 300_000)
    yield filled
    filled.close()


def _url(store: TopologyStore) -> str:
    kw = store.redis.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def in_process(
    store: TopologyStore, test: Callable[[TestClient], Awaitable[None]], **kw: Any
) -> None:
    settings = store.settings.replace(service={"api_token": SecretStr(TOKEN), **kw})

    async def main() -> None:
        app = create_app(settings, redis_url=_url(store), refresh_s=0.2)
        async with TestClient(TestServer(app)) as client:
            await test(client)

    asyncio.run(main())


async def _error(response: aiohttp.ClientResponse, status: int) -> str:
    """The JSON error every refusal is: its message, after checking status and type."""
    assert (response.status, response.content_type) == (status, "application/json"), (
        response.status,
        response.content_type,
        await response.text(),
    )
    return str((await response.json())["error"])


def test_tokens_only_in_the_header_and_stream_tokens_only_on_the_stream(store) -> None:
    async def check(client: TestClient) -> None:
        assert "token" in await _error(await client.get("/api/graph"), 401)
        await _error(await client.get("/api/graph", headers={"Authorization": "Bearer no"}), 401)
        await _error(await client.get("/api/graph", headers={"Authorization": TOKEN}), 401)
        r = await client.get("/api/graph", headers={"Authorization": f"bearer {TOKEN}"})
        assert r.status == 200  # the scheme is case-insensitive (RFC 9110)
        error = await _error(await client.get(f"/api/graph?access_token={TOKEN}"), 401)
        assert "Authorization" in error and TOKEN not in error
        await _error(await client.get(f"/api/stream?access_token={TOKEN}"), 401)

        # Open: the probe (saying nothing internal), the API description, the viewer's files.
        r = await client.get("/healthz")
        assert r.status == 200 and await r.json() == {"status": "ok"}
        assert (await client.get("/openapi.json")).status == 200
        assert (await client.get("/")).status == 200
        assert (await client.get("/static/viewer.js")).status == 200
        assert (await client.get("/metrics")).status == 200  # CAMTOPO_METRICS_AUTH off

        # The stream token: from an authenticated POST, valid on /api/stream only.
        await _error(await client.post("/api/stream-token"), 401)
        await _error(await client.get("/api/stream-token", headers=AUTH), 405)
        r = await client.post("/api/stream-token", headers=AUTH)
        doc = await r.json()
        assert r.status == 200 and doc["expires_in_s"] == 300 and TOKEN not in doc["stream_token"]
        stream_token = doc["stream_token"]
        s = await client.get("/api/stream", params={"stream_token": stream_token})
        assert s.status == 200 and s.content_type == "text/event-stream"
        assert (await asyncio.wait_for(s.content.readline(), 10)).startswith(b": connected")
        s.close()
        await _error(await client.get("/api/graph", params={"stream_token": stream_token}), 401)
        key = stream_key(SecretStr(TOKEN))
        expired = make_stream_token(key, int(time.time()) - 1)
        forged = make_stream_token(b"another key", int(time.time()) + 300)
        for bad in (expired, forged, stream_token[:-1] + "0", "garbage", "99999999999999.x", ""):
            error = await _error(await client.get("/api/stream", params={"stream_token": bad}), 401)
            assert "stream token" in error, bad

    in_process(store, check)


def test_a_new_event_stream_replays_after_the_id_in_its_url(store) -> None:
    # What the viewer does when its stream token expired: a new EventSource, which cannot set
    # Last-Event-ID, opened with ?after= the last change it saw.
    async def check(client: TestClient) -> None:
        log = await (await client.get("/api/changes", params={"limit": "5"}, headers=AUTH)).json()
        ids = [c["id"] for c in log["changes"]]
        token = (await (await client.post("/api/stream-token", headers=AUTH)).json())[
            "stream_token"
        ]
        r = await client.get("/api/stream", params={"stream_token": token, "after": ids[0]})
        replayed = []
        while not (line := await asyncio.wait_for(r.content.readline(), 10)).startswith(b": conn"):
            if line.startswith(b"id: "):
                replayed.append(line[4:].decode().strip())
        r.close()
        assert replayed[: len(ids) - 1] == ids[1:]
        r = await client.get("/api/stream", params={"stream_token": token, "after": "bogus"})
        assert "after" in await _error(r, 400)

    in_process(store, check)


def test_metrics_can_require_the_token(store) -> None:
    async def check(client: TestClient) -> None:
        await _error(await client.get("/metrics"), 401)
        assert (await client.get("/metrics", headers=AUTH)).status == 200
        assert (await client.get("/healthz")).status == 200
        spec = await (await client.get("/openapi.json")).json()
        assert "security" not in spec["paths"]["/metrics"]["get"]

    in_process(store, check, metrics_auth=True)


def test_every_refusal_is_json(store) -> None:
    async def check(client: TestClient) -> None:
        await _error(await client.get("/nope", headers=AUTH), 404)
        await _error(await client.get("/static/nope.js"), 404)
        r = await client.post("/api/graph", headers=AUTH)
        await _error(r, 405)
        assert "GET" in r.headers["Allow"]
        await _error(await client.delete("/healthz"), 405)
        big = {**AUTH, "Content-Type": "application/json"}
        await _error(await client.post("/api/stream-token", data=b"x" * 70_000, headers=big), 413)
        await _error(await client.get("/api/cameras?x=" + "a" * 8100, headers=AUTH), 414)
        # One stream allowed: a second is refused with a hint when to retry, the first lives on.
        first = await client.get("/api/stream", headers=AUTH)
        assert first.status == 200
        second = await client.get("/api/stream", headers=AUTH)
        await _error(second, 503)
        assert second.headers["Retry-After"].isdigit()
        first.close()
        # No software versions in any answer.
        assert (await client.get("/healthz")).headers["Server"] == "camtopo"

    in_process(store, check, max_streams=1)


def test_cors_only_for_listed_origins(store) -> None:
    good, evil = "https://ops.example", "https://evil.example"

    async def check(client: TestClient) -> None:
        r = await client.get("/api/graph", headers={**AUTH, "Origin": good})
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == good
        r = await client.get("/api/graph", headers={**AUTH, "Origin": evil})
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        r = await client.get("/api/graph", headers={"Origin": good})  # errors too: readable
        assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == good
        pre = {
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        }
        r = await client.options("/api/graph", headers={**pre, "Origin": good})
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == good
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        r = await client.options("/api/graph", headers={**pre, "Origin": evil})
        assert "Access-Control-Allow-Origin" not in r.headers
        await _error(r, 401)  # not a preflight it answers: an unauthenticated request

    in_process(store, check, cors_origins=f"{good}, https://other.example")

    async def none(client: TestClient) -> None:  # the default: no CORS headers at all
        r = await client.get("/api/graph", headers={**AUTH, "Origin": good})
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers

    in_process(store, none)


# --- a served process: startup refusals, load, and every log line scanned ---------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(store: TopologyStore, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
    return {**env, "CAMTOPO_REDIS_URL": _url(store), "CAMTOPO_REDIS_SHARDS": "8", **extra}


def test_listening_beyond_loopback_needs_a_token_or_an_explicit_off(store) -> None:
    cli = [sys.executable, "-m", "camtopo.cli", "serve", "--host", "0.0.0.0", "--port"]
    refused = subprocess.run(
        [*cli, str(free_port())], env=serve_env(store), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "CAMTOPO_API_TOKEN" in refused.stderr
    # A token too short is refused without being echoed.
    short = subprocess.run(
        [*cli, str(free_port())],
        env=serve_env(store, CAMTOPO_API_TOKEN="tiny-secret-42"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 2 and short.stderr.count("\n") == 1
    assert "CAMTOPO_API_TOKEN" in short.stderr and "16" in short.stderr
    assert "tiny-secret-42" not in short.stdout + short.stderr
    # CAMTOPO_API_AUTH=off: it starts, with a warning.
    port = free_port()
    proc = subprocess.Popen(
        [*cli, str(port)],
        env=serve_env(store, CAMTOPO_API_AUTH="off"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "WITHOUT a token" in err


def wait_healthy(url: str) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture(scope="module")
def served(
    store: TopologyStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`camtopo serve` with the token set, on loopback, logging to a file; at most 8 requests
    at once so 200 concurrent ones exceed it."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = serve_env(store, CAMTOPO_API_TOKEN=TOKEN, CAMTOPO_HTTP_MAX_CONCURRENT="8")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "camtopo.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_concurrency_limit_holds_under_200_concurrent_requests(served) -> None:
    url, _ = served
    assert url.startswith("http://127.0.0.1:")  # loopback only

    async def main() -> tuple[Counter[int], float]:
        timeout = aiohttp.ClientTimeout(total=20)
        connector = aiohttp.TCPConnector(limit=0)  # all 200 at once, not the default 100
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def one(i: int) -> int:
                path = ("/api/graph", "/api/partitions", "/health", "/api/evidence?a=0&b=200")[
                    i % 4
                ]
                async with session.get(url + path, headers=AUTH) as r:
                    if r.status != 200:
                        assert r.content_type == "application/json" and "error" in await r.json()
                        if r.status == 503:
                            assert r.headers["Retry-After"] == "1"
                    else:
                        await r.read()
                    return r.status

            started = time.perf_counter()
            # asyncio.wait_for bounds the whole burst: none may hang.
            statuses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 60)
            seconds = time.perf_counter() - started
            # Afterwards the service answers as before.
            async with session.get(url + "/api/graph", headers=AUTH) as r:
                assert r.status == 200
        return Counter(statuses), seconds

    statuses, seconds = asyncio.run(main())
    print(f"200 concurrent requests in {seconds:.2f} s: {dict(statuses)}")
    assert set(statuses) <= {200, 503} and statuses[503] > 0 and statuses[200] >= 8


def test_no_token_in_any_log_line(served) -> None:
    url, log = served

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            wrong = {"Authorization": "Bearer " + TOKEN[::-1]}
            requests: list[tuple[str, str, dict[str, str]]] = [
                ("GET", "/api/graph", AUTH),
                ("GET", "/api/graph", wrong),
                ("GET", f"/api/graph?access_token={TOKEN}", {}),
                ("GET", f"/api/cameras?token={TOKEN}", {"Referer": f"{url}/?token={TOKEN}"}),
                ("GET", f"/nope/{uuid.uuid4().hex}", AUTH),
                ("GET", f"/metrics?access_token={TOKEN}", {}),
                ("GET", "/api/evidence?a=x:1&b=1", AUTH),
            ]
            for method, path, headers in requests:
                async with session.request(method, url + path, headers=headers) as r:
                    assert TOKEN not in await r.text()
            async with session.post(url + "/api/stream-token", headers=AUTH) as r:
                stream_token = str((await r.json())["stream_token"])
            async with session.get(url + "/api/stream", params={"stream_token": stream_token}) as r:
                assert r.status == 200
                await asyncio.wait_for(r.content.readline(), 10)
            forged = stream_token[:-4] + "0000"
            async with session.get(url + "/api/stream", params={"stream_token": forged}) as r:
                assert r.status == 401
        return stream_token

    stream_token = asyncio.run(main())
    time.sleep(0.5)  # the access log line of the last request
    lines = log.read_text().splitlines()
    assert any('"GET /api/graph" 200' in line for line in lines), lines[-5:]  # logs were captured
    assert any('"GET /api/stream" 401' in line for line in lines)
    leaks = [line for line in lines if TOKEN in line or stream_token in line or "token=" in line]
    assert leaks == []
