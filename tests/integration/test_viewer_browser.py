"""The live viewer end to end in headless Chromium (Debian's package, driven by Playwright):
tiles load, a click shows the camera's neighbours, a new change arrives live; camera ids are
shown as text, never run as markup."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from camtopo.core.grid import Network
from camtopo.operations.localstack import RedisServer
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.store import TopologyStore

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(redis_server: RedisServer, net: synthetic.SyntheticNetwork) -> TopologyStore:
    """A store (own prefix) holding ``net``'s estimated topology."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium", pytrace=False)
    settings = Settings(redis={"shards": 8})
    est = synthetic.run(net, settings, 3000)
    store = TopologyStore(
        redis_server.url, net.network, settings, prefix=f"v{uuid.uuid4().hex[:6]}"
    )
    store.checkpoint(est, 0, {})
    store.update_topology(est, 300_000)
    return store


def launch(
    redis_url: str, store: TopologyStore, port: int, token: str | None, ttl_s: float = 300.0
) -> subprocess.Popen[bytes]:
    """The query service in its own process over ``store``, up when this returns."""
    code = (
        "import sys; from camtopo.settings import Settings; from topology_store.service import "
        "create_app; from aiohttp import web; "
        f"web.run_app(create_app(Settings(redis={{'shards': 8}}, service={{'api_token': "
        f"{token!r}, 'stream_token_ttl_s': {ttl_s}}}), redis_url={redis_url!r}, "
        f"prefix={store.keys.prefix!r}, refresh_s=0.3), host='127.0.0.1', port={port}, print=None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    for _ in range(100):
        try:
            urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def serve_network(
    redis_server: RedisServer, net: synthetic.SyntheticNetwork, token: str | None = None
) -> Iterator[tuple[str, TopologyStore, synthetic.SyntheticNetwork]]:
    """The query service in its own process over ``net``'s estimated topology."""
    store = fill(redis_server, net)
    port = free_port()
    proc = launch(redis_server.url, store, port, token)
    yield f"http://127.0.0.1:{port}", store, net
    stop(proc)


# The viewer with a token: it sends it in the Authorization header only, and opens its event
# stream with a short-lived stream token (EventSource cannot send headers).
TOKEN = "viewer-token-0123456789abcdef"


@pytest.fixture
def service(redis_server):
    yield from serve_network(redis_server, synthetic.make_network(24, seed=3), TOKEN)


# Markup as a camera id: the viewer must show it, not parse it (and not run its onerror).
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def hostile_service(redis_server):
    net = synthetic.make_network(6, seed=3)
    names = [HOSTILE, *net.network.cameras[1:]]  # cam000 overlaps cam001 (a corridor)
    renamed = dataclasses.replace(
        net,
        network=Network(tuple(names), net.network.grids, net.network.fps),
        links={tuple(names[net.network.camera_index(c)] for c in link) for link in net.links},
    )
    yield from serve_network(redis_server, renamed)


def test_viewer_shows_tiles_neighbours_on_click_and_live_changes(service) -> None:
    from playwright.sync_api import sync_playwright

    url, store, net = service
    graph = store.graph()
    busiest = max(net.network.cameras,
                  key=lambda c: sum(c in (e["a"], e["b"]) for e in graph["edges"]))  # fmt: skip
    expected = {n["camera"] for n in store.neighbours(busiest)["neighbours"]}
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        # In the fragment, which the browser never sends; the page then drops it from the URL.
        page.goto(f"{url}/#token={TOKEN}")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        assert TOKEN not in page.url
        assert page.locator("g.tile").count() == net.network.n_cameras
        assert page.locator("line.edge").count() == len(graph["edges"])

        page.locator(f"g.tile[data-camera='{busiest}'] rect").click()
        page.wait_for_selector("#neighbours tr[data-neighbour]", timeout=10_000)
        shown = set(page.locator("#neighbours tr[data-neighbour]").evaluate_all(
            "rows => rows.map(r => r.dataset.neighbour)"))  # fmt: skip
        assert shown == expected
        assert "rules out" in page.locator("#ruleout").inner_text()
        assert page.locator("g.tile.neighbour").count() == len(expected)
        page.wait_for_selector("#status.live", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "viewer.png"))
        assert any("/api/stream?stream_token=" in u for u in requested), requested
        assert not any(TOKEN in u for u in requested[1:]), requested  # [0]: the page itself

        # Live: the topology loses every edge; the page drops them without a reload.
        store.update_topology(synthetic.run(net, store.settings, 10), 400_000)
        page.wait_for_function("document.querySelectorAll('line.edge').length === 0",
                               timeout=15_000)  # fmt: skip
        assert int(page.locator("#change-count").inner_text()) == len(graph["edges"])
        page.screenshot(path=str(ARTIFACTS / "viewer-after-changes.png"))
        browser.close()
    assert errors == []
    assert shutil.disk_usage(ARTIFACTS).free > 0


def test_viewer_shows_camera_ids_as_text_not_markup(hostile_service) -> None:
    from playwright.sync_api import sync_playwright

    url, store, _ = hostile_service
    neighbour = next(n["camera"] for n in store.neighbours(HOSTILE)["neighbours"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)

        # The hostile camera selected: its id is the panel's heading, as text.
        page.locator(f"g.tile[data-camera={json.dumps(HOSTILE)}]").dispatch_event("click")
        page.wait_for_selector("#neighbours tr[data-neighbour]", timeout=10_000)
        assert page.locator("#details h2").inner_text() == HOSTILE
        assert page.locator("#details img").count() == 0

        # Its neighbour selected: the hostile id is a row of the neighbour table, as text.
        page.locator(f"g.tile[data-camera={json.dumps(neighbour)}]").dispatch_event("click")
        row = page.locator(f"#neighbours tr[data-neighbour={json.dumps(HOSTILE)}]")
        row.wait_for(timeout=10_000)
        assert row.locator("td").first.inner_text() == HOSTILE
        assert page.locator("#details img").count() == 0

        # A click on that row selects the hostile camera again (the row keeps the raw id).
        row.dispatch_event("click")
        page.wait_for_function(
            f"document.querySelector('#details h2').textContent === {json.dumps(HOSTILE)}",
            timeout=10_000,
        )
        page.wait_for_timeout(300)  # an injected <img src=x> would have failed and alerted by now
        browser.close()
    assert dialogs == [] and errors == []


def test_viewer_reopens_its_stream_with_a_new_token_once_the_old_one_expired(
    redis_server,
) -> None:
    """The service restarts after the viewer's 2-s stream token expired: the browser's own
    reconnect is refused (401), the viewer gets a new token and goes live again, and a change
    made while it was away still arrives (replayed after the last change it saw)."""
    from playwright.sync_api import sync_playwright

    net = synthetic.make_network(12, seed=3)
    store = fill(redis_server, net)
    port = free_port()
    proc = launch(redis_server.url, store, port, TOKEN, ttl_s=2.0)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page()
            streams: list[tuple[str, int]] = []
            page.on(
                "response",
                lambda r: streams.append((r.url, r.status)) if "/api/stream?" in r.url else None,
            )
            page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            page.wait_for_selector("#status.live", timeout=10_000)
            edges = page.locator("line.edge").count()
            assert edges > 0
            stop(proc)
            page.wait_for_selector("#status.down", timeout=10_000)
            time.sleep(2.5)  # the stream token has expired
            # Changed while the viewer was away: every edge gone.
            store.update_topology(synthetic.run(net, store.settings, 10), 400_000)
            proc = launch(redis_server.url, store, port, TOKEN, ttl_s=2.0)
            page.wait_for_function(
                "document.querySelectorAll('line.edge').length === 0", timeout=30_000
            )
            page.wait_for_selector("#status.live", timeout=10_000)
            browser.close()
    finally:
        stop(proc)
    # Live, the browser's own reconnect refused (expired), a new token with ?after=: live again.
    statuses = [status for _, status in streams]
    assert statuses[0] == 200 and 401 in statuses and statuses[-1] == 200, streams
    assert "after=" in streams[-1][0] and streams[-1][0] != streams[0][0], streams
