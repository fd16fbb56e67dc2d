"""Unit tests of the network simulator: geometry, noise, determinism, truth and files."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from camtopo.core.grid import Grid
from camtopo.simulation import NoiseConfig, Simulation, build_scenario, write_scenario
from camtopo.simulation.engine import Tick
from camtopo.simulation.writer import tick_lines


@pytest.fixture(scope="module")
def campus_sim() -> Simulation:
    return Simulation.from_name("campus", 40, seed=3, warmup_s=120)


@pytest.fixture(scope="module")
def campus_truth(campus_sim: Simulation) -> dict:
    return campus_sim.truth()


def _collect(sim: Simulation, n: int) -> list[Tick]:
    return list(sim.ticks(n))


def test_same_seed_gives_same_occupancy() -> None:
    a = _collect(Simulation.from_name("campus", 20, seed=7, warmup_s=60), 30)
    b = _collect(Simulation.from_name("campus", 20, seed=7, warmup_s=60), 30)
    c = _collect(Simulation.from_name("campus", 20, seed=8, warmup_s=60), 30)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.cam, y.cam) and np.array_equal(x.window, y.window)
        assert np.array_equal(x.t_ms, y.t_ms) and np.array_equal(x.available, y.available)
    assert any(
        not np.array_equal(x.cam, y.cam) or not np.array_equal(x.window, y.window)
        for x, y in zip(a, c, strict=True)
    )


def test_window_rule_matches_grid_window_at(campus_sim: Simulation) -> None:
    cams = campus_sim.cameras
    rng = np.random.default_rng(0)
    u = rng.uniform(0, cams.grid.width, 500)
    v = rng.uniform(0, cams.grid.height, 500)
    got = cams.windows(u, v)
    want = [cams.grid.window_at(x, y) for x, y in zip(u, v, strict=True)]
    assert got.tolist() == want


def test_image_to_ground_inverts_projection(campus_sim: Simulation) -> None:
    cams = campus_sim.cameras
    uv = np.array([[160.0, 200.0], [10.0, 230.0], [300.0, 120.0]])
    ground, ok = cams.image_to_ground(2, uv)
    assert ok.all()
    back, _ = cams.project(2, ground)
    assert np.allclose(back, uv, atol=1e-6)
    # People nearer the camera look taller.
    h = cams.person_height_px(2, ground)
    near_first = np.argsort(np.linalg.norm(ground - cams.position[2], axis=1))
    assert h[near_first[0]] > h[near_first[-1]] > 0


def test_person_in_overlap_occupies_truth_windows_in_both(campus_sim: Simulation) -> None:
    st = campus_sim.static_truth
    assert len(st.window_pairs) > 0
    nw = campus_sim.network.max_windows_per_camera
    cams = campus_sim.cameras
    lattice = np.concatenate(list(campus_sim.scenario.world.walkable_lattice(0.25)))
    truth_pairs = set(map(tuple, st.window_pairs.tolist()))
    checked = 0
    for ga, gb in st.window_pairs[:: max(1, len(st.window_pairs) // 20)].tolist():
        ca, wa, cb, wb = ga // nw, ga % nw, gb // nw, gb % nw
        uv_a, ok_a = cams.project(ca, lattice)
        uv_b, ok_b = cams.project(cb, lattice)
        both = (
            ok_a
            & ok_b
            & (cams.windows(uv_a[:, 0], uv_a[:, 1]) == wa)
            & (cams.windows(uv_b[:, 0], uv_b[:, 1]) == wb)
        )
        assert both.any(), f"no ground point shared by truth pair {ga}, {gb}"
        # A person standing there is seen by both cameras in exactly these windows.
        p = lattice[np.flatnonzero(both)[0]][None, :]
        sim_idx, sim_cam = campus_sim.index.candidates(p)
        mask, u, v = cams.visible_pairs(sim_cam, p[sim_idx])
        seen = dict(
            zip(sim_cam[mask].tolist(), cams.windows(u[mask], v[mask]).tolist(), strict=True)
        )
        assert seen.get(ca) == wa and seen.get(cb) == wb
        assert (min(ga, gb), max(ga, gb)) in truth_pairs
        checked += 1
    assert checked > 0


def test_truth_links_are_symmetric_unique_and_not_self(campus_truth: dict) -> None:
    links = campus_truth["camera_links"]
    pairs = [frozenset((lk["a"], lk["b"])) for lk in links]
    assert all(len(p) == 2 for p in pairs), "self link"
    assert len(set(pairs)) == len(pairs), "a camera pair listed twice (e.g. a->b and b->a)"
    kinds = {lk["kind"] for lk in links}
    assert kinds == {"overlap", "transit"}
    for a, b in campus_truth["window_overlaps"]:
        assert a.split(":")[0] != b.split(":")[0]
    overlap_cams = {
        frozenset((a.split(":")[0], b.split(":")[0])) for a, b in campus_truth["window_overlaps"]
    }
    assert overlap_cams == {
        frozenset((lk["a"], lk["b"])) for lk in links if lk["kind"] == "overlap"
    }


def test_transit_path_consistent_with_walkway_graph(
    campus_sim: Simulation, campus_truth: dict
) -> None:
    world = campus_sim.scenario.world
    cams = campus_sim.cameras
    idx = {c: i for i, c in enumerate(cams.ids)}
    transit = [lk for lk in campus_truth["camera_links"] if lk["kind"] == "transit"]
    assert transit
    # Nearest walkway node to each camera: the walk between footprints can't be much
    # shorter than the graph distance between those nodes minus the cameras' reach.
    for lk in transit[:15]:
        assert lk["path_m"] > 0
        assert lk["transit_expected_s"] == pytest.approx(lk["path_m"] / 1.3, rel=0.01)
        a, b = idx[lk["a"]], idx[lk["b"]]
        na = int(np.argmin(np.linalg.norm(world.nodes - cams.position[a], axis=1)))
        nb = int(np.argmin(np.linalg.norm(world.nodes - cams.position[b], axis=1)))
        dist, _ = world.shortest_paths(na, {nb})
        reach = cams.max_range[a] + cams.max_range[b]
        slack = np.linalg.norm(world.nodes[na] - cams.position[a]) + np.linalg.norm(
            world.nodes[nb] - cams.position[b]
        )
        assert lk["path_m"] >= dist[nb] - reach - slack - 1.0
        assert lk["path_m"] <= campus_sim.static_truth.params["max_transit_m"]


def test_outage_yields_no_lines_and_skew_shifts_t_ms() -> None:
    noise = replace(NoiseConfig.off(), max_skew_ms=300.0)
    sim = Simulation.from_name("campus", 10, seed=1, noise=noise, warmup_s=30)
    sim.noise.available[3] = False  # offline camera, no recovery since outages are off
    tick = sim.step()
    lines = [json.loads(x) for x in tick_lines(sim, tick)]
    names = {ln["camera"] for ln in lines}
    assert sim.network.cameras[3] not in names
    assert len(lines) == sim.network.n_cameras - 1
    skew = sim.noise.skew_ms
    assert np.abs(skew).max() <= 300 and np.ptp(skew) > 0
    for ln in lines:
        c = sim.network.camera_index(ln["camera"])
        assert ln["t_ms"] == round(sim.start_ms + skew[c])


def test_occupied_sorted_unique_within_grid(campus_sim: Simulation) -> None:
    grid = campus_sim.network.grids[0]
    seen = 0
    for tick in campus_sim.ticks(50):
        for ln in tick_lines(campus_sim, tick):
            occ = json.loads(ln)["occupied"]
            assert occ == sorted(set(occ))
            assert all(0 <= w < grid.n_windows for w in occ)
            seen += len(occ)
    assert seen > 0


def test_noise_off_detects_exactly_the_true_feet() -> None:
    sim = Simulation.from_name("campus", 15, seed=2, noise=NoiseConfig.off(), warmup_s=120)
    tick = sim.step()
    _slot, cam, u, v = sim.sightings()  # same crowd state as the tick just produced
    want = np.unique(cam.astype(np.int64) * 108 + sim.cameras.windows(u, v))
    got = tick.cam.astype(np.int64) * 108 + tick.window
    assert np.array_equal(want, got)
    assert tick.available.all()


def test_write_scenario_files_follow_contract(tmp_path) -> None:
    sim = Simulation.from_name("campus", 12, seed=4, warmup_s=60)
    summary = write_scenario(tmp_path, sim, duration_s=3.0, progress=False)
    net = json.loads((tmp_path / "network.json").read_text())
    assert net["grid"] == Grid().to_json() and len(net["cameras"]) == 12
    lines = [json.loads(x) for x in (tmp_path / "occupancy.jsonl").read_text().splitlines()]
    assert len(lines) == summary["lines"] > 0
    assert {tuple(sorted(ln)) for ln in lines} == {("camera", "occupied", "t_ms")}
    per_camera: dict[str, list[int]] = {}
    for ln in lines:
        per_camera.setdefault(ln["camera"], []).append(ln["t_ms"])
    assert max(len(v) for v in per_camera.values()) <= 30
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert {"window_overlaps", "camera_links"} <= truth.keys()


def test_scenarios_reject_bad_names_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        build_scenario("moon", 10, 1)
    with pytest.raises(ValueError, match="at least 2 cameras"):
        build_scenario("campus", 1, 1)


@pytest.mark.parametrize("name", ["corridor", "plaza", "branching"])
def test_every_scenario_mixes_overlap_transit_and_unrelated(name: str) -> None:
    a = build_scenario(name, 40, seed=5)
    b = build_scenario(name, 40, seed=5)
    assert a.cameras.n == 40
    assert np.array_equal(a.cameras.position, b.cameras.position)
    truth = Simulation(a, seed=5, warmup_s=0).truth()
    kinds = [lk["kind"] for lk in truth["camera_links"]]
    assert "overlap" in kinds and "transit" in kinds
    assert len(kinds) < 40 * 39 / 2 / 2, "most camera pairs should be unrelated"


def test_one_way_transit_names_its_source_first() -> None:
    sim = Simulation.from_name("branching", 60, seed=2, warmup_s=0)
    one_way = [lk for lk in sim.truth()["camera_links"] if lk.get("one_way")]
    assert one_way
    for lk in one_way:
        assert "a->b" in lk and "b->a" not in lk
