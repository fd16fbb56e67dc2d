"""The camera registry: the pure model (validation, changes, diff), its store on the memory://
double, the processors' pick-up, the CLI and the query service's routes (no Redis; the same
with a real Redis: tests/integration/test_camera_registry_redis.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from camtopo import cli
from camtopo.core.grid import Grid, Network
from camtopo.core.ranges import ClosedBatch
from camtopo.core.registry import (
    ACTIVE,
    REMOVED,
    RESERVED,
    CameraEntry,
    Registry,
    RegistryError,
    diff,
)
from camtopo.settings import Settings, get_settings
from processors.registry_sync import RegistrySync
from processors.validate import DeadLetter, ValidRecord
from topology_store import synthetic
from topology_store.backend import store_client
from topology_store.camera_registry import CameraRegistryStore
from topology_store.keys import Keys
from topology_store.memory import forget_server
from topology_store.service import create_app
from topology_store.store import TopologyStore

NET = Network((("a", "b", "c")), (Grid(4, 3),) * 3, 10)
TOKEN = "t" * 32


@pytest.fixture
def url() -> Iterator[str]:
    name = f"memory://{uuid.uuid4().hex[:8]}"
    yield name
    forget_server(name)


def seeded(reserved: frozenset[str] = frozenset({"c"})) -> Registry:
    return Registry().import_network(NET, reserved)


# --- the model --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "a", "fps": "ten", "grid": Grid().to_json()}, "'fps' must be a whole number"),
        ({"id": "a", "fps": True, "grid": Grid().to_json()}, "'fps' must be a whole number"),
        ({"id": "a", "fps": 10}, "missing field 'grid'"),
        ({"id": "a", "fps": 10, "grid": {"cols": 4}}, "missing field 'grid.rows'"),
        ({"id": "a", "fps": 10, "grid": {**Grid().to_json(), "cols": 0}}, "'grid.cols' must be"),
        ({"id": "", "fps": 10, "grid": Grid().to_json()}, "'id' must be a camera id"),
        ({"id": "a", "fps": 10, "grid": Grid().to_json(), "lat": 95, "lon": 0}, "'lat' must be"),
        ({"id": "a", "fps": 10, "grid": Grid().to_json(), "lat": 5}, "'lat' and 'lon' go"),
        ({"id": "a", "fps": 10, "grid": Grid().to_json(), "state": "gone"}, "'state' must be"),
        ({"id": "a", "fps": 10, "grid": Grid().to_json(), "colour": 1}, "unknown fields"),
        ({"id": "a", "fps": 10, "grid": Grid().to_json(), "name": ""}, "'name' must not be empty"),
    ],
)
def test_an_invalid_entry_is_refused_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        CameraEntry.from_json(data)


def test_an_entry_survives_its_json() -> None:
    entry = CameraEntry("a", "Gate", 25, Grid(8, 6), "north gate", 51.5, -0.1)
    assert CameraEntry.from_json(entry.to_json()) == entry
    removed = seeded().remove("a", 1234).cameras["a"]
    assert CameraEntry.from_json(removed.to_json()) == removed


def test_import_is_idempotent_and_keeps_what_operators_changed() -> None:
    reg = seeded()
    assert reg.version == 1
    assert {c: e.state for c, e in reg.cameras.items()} == {"a": ACTIVE, "b": ACTIVE, "c": RESERVED}
    assert reg.import_network(NET, frozenset({"c"})) is reg  # nothing new: no version bump
    renamed = reg.rename("a", "Gate")
    assert renamed.import_network(NET).cameras["a"].name == "Gate"
    with pytest.raises(RegistryError, match="'reserved' names cameras not in 'cameras'"):
        Registry().import_network(NET, frozenset({"zz"}))


def test_changes_and_their_errors() -> None:
    reg = seeded()
    with pytest.raises(RegistryError, match="already registered"):
        reg.add(CameraEntry("a", "a", 10, Grid(4, 3)))
    with pytest.raises(RegistryError, match="unknown camera 'zz'"):
        reg.rename("zz", "x")
    with pytest.raises(RegistryError, match="no slot in the running network"):
        reg.add(CameraEntry("zz", "zz", 10, Grid(4, 3)), NET)
    with pytest.raises(RegistryError, match="'fps' 25 differs"):
        reg.add(CameraEntry("c", "c", 25, Grid(4, 3)), NET)
    with pytest.raises(RegistryError, match="'grid'"):
        reg.add(CameraEntry("c", "c", 10, Grid(12, 9)), NET)
    added = reg.add(CameraEntry("c", "Car park", 10, Grid(4, 3)), NET)
    assert added.cameras["c"].state == ACTIVE and added.version == reg.version + 1
    gone = added.remove("b", 99)
    assert gone.cameras["b"].state == REMOVED and gone.cameras["b"].removed_ms == 99
    with pytest.raises(RegistryError, match="already removed"):
        gone.remove("b", 100)
    back = gone.add(CameraEntry("b", "b", 10, Grid(4, 3)), NET)
    assert back.cameras["b"].state == ACTIVE and back.cameras["b"].removed_ms is None
    located = back.describe("a", "north gate", 51.5, -0.1)
    assert (located.cameras["a"].location, located.cameras["a"].lat) == ("north gate", 51.5)
    assert located.describe("a", lat=None).cameras["a"].lat == 51.5  # unchanged when not given
    with pytest.raises(RegistryError, match="'lat' and 'lon' go together"):
        back.describe("a", lat=1.0)


def test_diff_and_inactive() -> None:
    reg = seeded()
    new = reg.add(CameraEntry("c", "c", 10, Grid(4, 3))).remove("a", 5).rename("b", "Hall")
    d = diff(reg, new)
    assert (d.added, d.removed, d.described) == (("c",), ("a",), ("b",))
    assert not diff(new, new)
    assert reg.inactive(NET) == {2} and new.inactive(NET) == {0}
    assert Registry().inactive(NET) == frozenset()  # never seeded: every camera counts


# --- the store on memory:// -------------------------------------------------------------------
def test_the_store_round_trips_and_retries_a_lost_race(url: str) -> None:
    keys = Keys("r", 8)
    store = CameraRegistryStore(store_client(Settings(), url), keys)
    assert store.version() == 0 and store.load().cameras == {}
    store.change(lambda r: r.import_network(NET, frozenset({"c"})))
    assert store.load() == seeded()
    assert store.change(lambda r: r.import_network(NET)).version == 1  # idempotent
    other = CameraRegistryStore(store_client(Settings(), url), keys)
    calls = []

    def rename(r: Registry) -> Registry:
        calls.append(r.version)
        if len(calls) == 1:  # another operator's change lands between our read and write
            other.change(lambda s: s.describe("b", "hall"))
        return r.rename("a", "Gate")

    after = store.change(rename)
    assert calls == [1, 2] and after.version == 3
    loaded = store.load()
    assert loaded.cameras["a"].name == "Gate" and loaded.cameras["b"].location == "hall"


# --- the processors' pick-up ------------------------------------------------------------------
class Forgets:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def camera_removed(self, camera: str) -> None:
        self.removed.append(camera)


def test_pick_up_forgets_a_removed_camera_and_refuses_its_frames() -> None:
    stored = [seeded()]
    now = [0.0]
    sync = RegistrySync(NET, lambda: stored[-1].version, lambda: stored[-1], 5.0, lambda: now[0])
    est = Forgets()
    sync.poll(est)  # type: ignore[arg-type]
    record = ValidRecord(0, np.array([1]), [np.array([2])], np.array([100]))
    assert sync.judge(record) is record
    reserved = sync.judge(ValidRecord(2, np.array([1]), [np.array([2])], np.array([100])))
    assert isinstance(reserved, DeadLetter) and reserved.reason == "camera_inactive"
    stored.append(stored[-1].remove("a", 777))
    now[0] = 4.0
    sync.poll(est)  # type: ignore[arg-type]
    assert est.removed == [] and sync.judge(record) is record  # not polled yet: 4 s < 5 s
    now[0] = 5.0
    sync.poll(est)  # type: ignore[arg-type]
    assert est.removed == ["a"]
    dead = sync.judge(record)
    assert isinstance(dead, DeadLetter) and dead.reason == "camera_removed"
    assert "'a' is removed at 777 ms" in dead.detail
    batch = ClosedBatch(
        3, 40, np.array([0, 1, 0]), np.array([30, 30, 31]), [np.array([1])] * 3,
        context=[(0, 29, np.array([1])), (1, 29, np.array([1]))],
    )  # fmt: skip
    kept = sync.without_inactive(batch)
    assert kept.cameras.tolist() == [1] and kept.ticks.tolist() == [30]
    assert [c[0] for c in kept.context] == [1]
    now[0] = 11.0
    sync.poll(est)  # type: ignore[arg-type]
    assert est.removed == ["a"]  # the version did not move: nothing again


def test_the_first_poll_forgets_cameras_removed_while_the_processor_was_down() -> None:
    stored = seeded().remove("b", 1)
    sync = RegistrySync(NET, lambda: stored.version, lambda: stored, 5.0)
    est = Forgets()
    sync.poll(est, force=True)  # type: ignore[arg-type]
    assert est.removed == ["b"] and sync.inactive == {1, 2}


def test_redis_down_skips_a_poll_and_the_next_one_catches_up() -> None:
    # Found by test_streaming's Redis kill: a poll that raised stopped the processor.
    stored, up, now = seeded().remove("b", 1), [False], [0.0]

    def version() -> int:
        if not up[0]:
            raise redis.exceptions.ConnectionError("Connection refused")
        return stored.version

    sync = RegistrySync(NET, version, lambda: stored, 5.0, lambda: now[0])
    est = Forgets()
    assert not sync.poll(est, force=True)  # type: ignore[arg-type]
    assert est.removed == [] and sync.inactive == frozenset()
    up[0], now[0] = True, 5.0
    sync.poll(est)  # type: ignore[arg-type]
    assert est.removed == ["b"] and sync.inactive == {1, 2}


# --- the command line -------------------------------------------------------------------------
def test_cli_round_trip(
    url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAMTOPO_REDIS_URL", url)
    get_settings.cache_clear()
    path = tmp_path / "network.json"
    path.write_text(
        '{"cameras": ["a", "b", "c"], "grid": {"cols": 4, "rows": 3, "width": 320, '
        '"height": 240}, "fps": 10, "reserved": ["c"]}'
    )
    try:
        assert cli.main(["cameras", "import", str(path)]) == 0
        assert cli.main(["cameras", "import", str(path)]) == 0
        assert "3 cameras registered, version 1" in capsys.readouterr().out.splitlines()[-1]
        assert cli.main(["cameras", "add", "c", "--network", str(path), "--name", "Car park"]) == 0
        assert cli.main(["cameras", "add", "c", "--network", str(path)]) == 2
        assert "duplicate id" in capsys.readouterr().err
        assert cli.main(["cameras", "add", "zz", "--fps", "10", "--grid", "4x3"]) == 0
        assert cli.main(["cameras", "add", "yy", "--fps", "0", "--grid", "4x3"]) == 2
        assert "'fps' must be a whole number >= 1" in capsys.readouterr().err
        assert cli.main(["cameras", "add", "yy", "--fps", "10", "--grid", "4by3"]) == 2
        assert "'grid' must be COLSxROWS" in capsys.readouterr().err
        assert cli.main(["cameras", "rename", "a", "North gate"]) == 0
        assert cli.main(["cameras", "describe", "a", "--location", "gate 1"]) == 0
        assert cli.main(["cameras", "remove", "b"]) == 0
        assert cli.main(["cameras", "remove", "nope"]) == 2
        assert "unknown camera 'nope'" in capsys.readouterr().err
        assert cli.main(["cameras", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [ln.split("\t")[:3] for ln in lines] == [
            ["a", "active", "North gate"],
            ["b", "removed", "b"],
            ["c", "active", "Car park"],
            ["zz", "active", "zz"],
        ]
        assert lines[0].endswith("gate 1") and "4x3@320x240" in lines[0]
    finally:
        get_settings.cache_clear()


# --- the query service ------------------------------------------------------------------------
def test_the_service_shows_names_hides_removed_cameras_and_guards_writes(url: str) -> None:
    settings = Settings(redis={"shards": 8}, service={"api_token": SecretStr(TOKEN)})
    net = synthetic.make_network(10, seed=2)
    est = synthetic.run(net, settings, 3000)
    store = TopologyStore(url, net.network, settings, prefix="q")
    store.checkpoint(est, 0, {0: 1})
    store.update_topology(est, 300_000)
    edge = store.graph()["edges"][0]
    a, b = edge["a"], edge["b"]
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def main() -> None:
        app = create_app(settings, redis_url=url, prefix="q", refresh_s=0.1)
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/api/cameras/import", json=net.network.to_json())
            assert r.status == 401  # the token is needed for writes
            r = await client.post("/api/cameras/import", json=net.network.to_json(), headers=auth)
            assert r.status == 200, await r.text()
            r = await client.post(f"/api/cameras/{a}/rename", json={"name": "Gate"}, headers=auth)
            assert (await r.json())["camera"]["name"] == "Gate"
            r = await client.post(
                f"/api/cameras/{a}/describe", json={"location": "north", "lat": 1}, headers=auth
            )
            assert r.status == 400 and "'lat' and 'lon'" in (await r.json())["error"]
            r = await client.post("/api/cameras/zz/rename", json={"name": "x"}, headers=auth)
            assert r.status == 404
            r = await client.post("/api/cameras", json={"id": a}, headers=auth)
            assert r.status == 409 and "duplicate id" in (await r.json())["error"]
            r = await client.post("/api/cameras", json={"id": a, "fps": "ten"}, headers=auth)
            assert r.status == 400 and "'fps'" in (await r.json())["error"]
            cams = (await (await client.get("/api/cameras", headers=auth)).json())["cameras"]
            assert {c["camera"]: c["name"] for c in cams}[a] == "Gate"
            nb = await (await client.get(f"/api/cameras/{b}/neighbours", headers=auth)).json()
            assert {n["camera"]: n["name"] for n in nb["neighbours"]}[a] == "Gate"
            r = await client.post(f"/api/cameras/{a}/remove", headers=auth)
            assert r.status == 200 and (await r.json())["camera"]["state"] == "removed"
            cams = (await (await client.get("/api/cameras", headers=auth)).json())["cameras"]
            assert a not in {c["camera"] for c in cams}
            graph = await (await client.get("/api/graph", headers=auth)).json()
            assert all(a not in (e["a"], e["b"]) for e in graph["edges"]) and graph["edges"]
            assert (await client.get(f"/api/cameras/{a}/neighbours", headers=auth)).status == 404
            reg = await (await client.get("/api/registry", headers=auth)).json()
            assert reg["version"] == 3 and len(reg["cameras"]) == net.network.n_cameras
            doc = await (await client.get("/openapi.json")).json()
            assert "post" in doc["paths"]["/api/cameras"] and "get" in doc["paths"]["/api/cameras"]

    asyncio.run(main())


def test_without_a_token_writes_are_refused_and_reads_open(url: str) -> None:
    settings = Settings(redis={"shards": 8})

    async def main() -> None:
        app = create_app(settings, redis_url=url, prefix="q", refresh_s=0.1)
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/api/cameras/import", json=NET.to_json())
            assert r.status == 403 and "CAMTOPO_API_TOKEN" in (await r.json())["error"]
            assert (await client.get("/api/registry")).status == 200

    asyncio.run(main())
