"""Blob appearance: the trace's optional ``blobs``, descriptors by tick, and transit evidence
that counts only departure-arrival pairs that could be one person (pure core, no I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camtopo.core.appearance import AppearanceTable
from camtopo.core.grid import Grid, Network
from camtopo.core.ticks import OccupancyBuffer
from camtopo.core.transit import TransitEstimator, TransitParams, _alike
from camtopo.formats.traces import TraceError, read_jsonl
from camtopo.simulation import Simulation
from camtopo.simulation.appearance import AppearanceConfig

FPS = 10


def _network(n: int) -> Network:
    return Network.uniform([f"cam{i}" for i in range(n)], Grid(4, 3, 80, 60), fps=FPS)


# --- the trace's blobs --------------------------------------------------------------------------
def _lines(tmp_path: Path, *lines: str) -> list[object]:
    path = tmp_path / "occupancy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return list(read_jsonl(path))


def test_blobs_are_read_with_the_frame(tmp_path: Path) -> None:
    blobs = [{"window": 3, "hue": [0.5, 0.5, 0, 0, 0, 0, 0, 0], "value": 0.25},
             {"window": 3, "hue": [0] * 8, "value": 1}]  # fmt: skip
    line = {"camera": "c", "t_ms": 5, "occupied": [3, 1], "blobs": blobs}
    (frame,) = _lines(tmp_path, json.dumps(line))
    assert not isinstance(frame, TraceError)
    assert [(b.window, b.value) for b in frame.blobs] == [(3, 0.25), (3, 1.0)]  # type: ignore[attr-defined]
    (plain,) = _lines(tmp_path, '{"camera": "c", "t_ms": 5, "occupied": [3]}')
    assert plain.blobs == ()  # type: ignore[attr-defined]


BAD_BLOBS = {
    "not a list": ('"blobs": {}', "'blobs' must be a list"),
    "no hue": ('"blobs": [{"window": 3, "value": 0.2}]', "'blobs[0]' must be an object"),
    "window not occupied": (
        '"blobs": [{"window": 4, "hue": [1,0,0,0,0,0,0,0], "value": 0.2}]',
        "'blobs[0]'.window 4 is not occupied",
    ),
    "seven bins": (
        '"blobs": [{"window": 3, "hue": [1,0,0,0,0,0,0], "value": 0.2}]',
        "'blobs[0]'.hue must be 8 numbers >= 0 summing to 1",
    ),
    "sum 2": (
        '"blobs": [{"window": 3, "hue": [1,1,0,0,0,0,0,0], "value": 0.2}]',
        "'blobs[0]'.hue must be 8 numbers",
    ),
    "too bright": (
        '"blobs": [{"window": 3, "hue": [1,0,0,0,0,0,0,0], "value": 1.5}]',
        "'blobs[0]'.value must be a number in [0, 1], got 1.5",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BLOBS))
def test_bad_blobs_are_errors_naming_line_and_field(tmp_path: Path, name: str) -> None:
    blobs, message = BAD_BLOBS[name]
    (error,) = _lines(tmp_path, '{"camera": "c", "t_ms": 5, "occupied": [3], ' + blobs + "}")
    assert isinstance(error, TraceError)
    assert message in str(error) and f"{tmp_path / 'occupancy.jsonl'}:1" in str(error)


# --- descriptors ----------------------------------------------------------------------------------
def test_brightness_ranks_survive_each_cameras_unknown_curve() -> None:
    rng = np.random.default_rng(1)
    table = AppearanceTable(_network(2))
    people = rng.beta(2, 2, 2000)
    ranks = {}
    for cam, curve in ((0, lambda v: v), (1, lambda v: 0.9 * v**1.5)):  # darker, contrastier
        for t, v in enumerate(people):
            table.add(cam, t, [(0, [0.0] * 8, float(curve(v)))])
        ranks[cam] = np.array([table.pending[t][cam * 12][0][8] for t in range(1500, 2000)])
    assert np.abs(ranks[0] - ranks[1]).max() < 0.06  # the same people rank alike


def test_take_aligns_descriptors_with_the_blocks_entries_and_forgets_their_ticks() -> None:
    net = _network(2)
    buf = OccupancyBuffer(net, tolerance=0)
    table = AppearanceTable(net)
    everyone = np.ones(2, dtype=bool)
    for t in range(64):
        buf.add_tick(t, everyone, np.array([1]), np.array([5]))
        table.add(1, t, [(5, [0, 0, 1, 0, 0, 0, 0, 0], 0.5), (5, [0, 0, 0, 1, 0, 0, 0, 0], 0.5)])
    (block,) = list(buf.release(64))
    idx, desc = table.take(block)  # type: ignore[misc]
    (entry,) = np.flatnonzero(block.occ_windows == 12 + 5)
    assert (idx[entry] >= 0).all() and desc.shape == (64, 9)
    assert desc[idx[entry, 0], 2] == desc[idx[entry, 0], 3] == 0.5  # two blobs averaged
    assert table.pending == {}


def test_alike_tolerates_a_one_bin_colour_cast_but_not_another_colour() -> None:
    def d(hue: list[float], rank: float) -> np.ndarray:
        return np.array([*hue, rank], dtype=np.float32)

    red_blue = [0.6, 0, 0, 0, 0.4, 0, 0, 0]
    cast = [0, 0.6, 0, 0, 0, 0.4, 0, 0]  # the same clothes one bin on
    green = [0, 0, 0.7, 0.3, 0, 0, 0, 0]
    grey = [0.0] * 8
    assert _alike(d(red_blue, 0.5), d(cast, 0.6), 0.5, 0.2)
    assert not _alike(d(red_blue, 0.5), d(green, 0.5), 0.5, 0.2)
    assert not _alike(d(red_blue, 0.5), d(cast, 0.8), 0.5, 0.2)  # much brighter
    assert _alike(d(grey, 0.3), d(grey, 0.4), 0.5, 0.2)
    assert not _alike(d(grey, 0.3), d(red_blue, 0.3), 0.5, 0.2)


# --- transit evidence -----------------------------------------------------------------------------
def _run(with_looks: bool, seed: int = 3, params: TransitParams | None = None) -> TransitEstimator:
    """Camera 0's visitors walk to camera 1 in 25 +- 5 s (a long blind walk), 40 % of them;
    camera 1 is twice as busy with people of its own. Every visitor wears one of 8 colours at
    one of 5 brightness levels; camera 1 sees colours one bin on."""
    rng = np.random.default_rng(seed)
    duration, dwell = 3600.0, 2.0
    net = _network(2)
    n_ticks = int(duration * FPS)
    visits: list[tuple[int, float, int, float]] = []  # camera, start, colour, brightness
    for s in np.sort(rng.uniform(0, duration, rng.poisson(0.05 * duration))):
        colour, bright = int(rng.integers(8)), float(rng.integers(5) / 5 + 0.1)
        visits.append((0, s, colour, bright))
        if rng.random() < 0.4:
            visits.append((1, s + dwell + rng.normal(25, 5), (colour + 1) % 8, bright))
    for s in rng.uniform(0, duration, rng.poisson(0.1 * duration)):
        visits.append((1, s, int(rng.integers(8)), float(rng.integers(5) / 5 + 0.1)))
    occ: dict[int, list[tuple[int, int, int, float]]] = {}  # camera, window, colour, bright
    for cam, s, colour, bright in visits:
        window = int(rng.choice([0, 2]))  # two doors of the top zone, not neighbours
        for t in range(int(s * FPS), min(int((s + dwell) * FPS), n_ticks)):
            occ.setdefault(t, []).append((cam, window, colour, bright))
    buf = OccupancyBuffer(net, tolerance=0)
    table = AppearanceTable(net)
    est = TransitEstimator(net, params or TransitParams(tick_s=1 / FPS, max_dest=4))
    everyone = np.ones(2, dtype=bool)
    for t in range(n_ticks):
        here = occ.get(t, [])
        keys = sorted({(c, w) for c, w, _, _ in here})
        buf.add_tick(t, everyone, np.array([c for c, _ in keys]), np.array([w for _, w in keys]))
        for cam in sorted({c for c, _ in keys}) if with_looks else ():
            blobs = [(w, np.eye(8)[col], b) for c, w, col, b in here if c == cam]
            table.add(cam, t, blobs)
        if t % 640 == 639:
            for block in buf.release(t + 1):
                est.update(block, table.take(block))
    for block in buf.flush():
        est.update(block, table.take(block))
    return est


def test_appearance_finds_a_long_walk_that_occupancy_alone_cannot_separate_from_chance() -> None:
    plain, looks = _run(with_looks=False), _run(with_looks=True)
    assert (0, 1) not in {(d.src, d.dst) for d in plain.directed()}
    links = {(d.src, d.dst): d for d in looks.directed()}
    assert (0, 1) in links and abs(links[(0, 1)].median_s - 25) < 4
    assert (1, 0) not in links


def test_with_appearance_off_blobs_change_nothing() -> None:
    off = TransitParams(tick_s=1 / FPS, max_dest=4, appearance=False)
    a, b = _run(with_looks=True, params=off), _run(with_looks=False, params=off)
    assert np.array_equal(a.hist, b.hist) and np.array_equal(a.wide, b.wide)


# --- the simulator ------------------------------------------------------------------------------
def test_simulated_looks_leave_the_occupancy_unchanged_and_dress_every_occupied_window() -> None:
    plain = Simulation.from_name("campus", 12, seed=2, warmup_s=60)
    dressed = Simulation.from_name("campus", 12, seed=2, warmup_s=60, appearance=AppearanceConfig())
    for _ in range(200):
        a, b = plain.step(), dressed.step()
        assert np.array_equal(a.cam, b.cam) and np.array_equal(a.window, b.window)
        assert b.blobs is not None
        assert set(zip(b.cam.tolist(), b.window.tolist(), strict=True)) == set(
            zip(b.blobs.cam.tolist(), b.blobs.window.tolist(), strict=True)
        )
        sums = b.blobs.hue.sum(axis=1)
        assert np.all((np.abs(sums - 1) < 1e-9) | (sums == 0))
        assert np.all((b.blobs.value >= 0) & (b.blobs.value <= 1))
