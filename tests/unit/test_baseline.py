"""The cross-correlation baseline finds a lagged departure -> arrival link and ignores chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camtopo.core.grid import Network
from camtopo.evaluation.baseline import BaselineParams, baseline_trace, read_counts, topology_json
from camtopo.formats.traces import TraceError

FPS = 10
CAMS = ("camA", "camB", "camC", "camD", "camE", "camF")


def _visits(rng: np.random.Generator, duration_s: float, rate: float) -> np.ndarray:
    gaps = rng.exponential(1 / rate, int(duration_s * rate * 2))
    starts = np.cumsum(gaps)
    return starts[starts < duration_s - 30]


def write_trace(folder: Path, duration_s: float = 1200.0, seed: int = 3) -> Path:
    """A: people stay 3 s; B: each appears 7 s after one leaves A (a blind walkway).
    C and D: independent visitors. E/F: common ground, F sees each of E's people from 2 s
    before they leave E until 3 s after (an overlap)."""
    rng = np.random.default_rng(seed)
    n_ticks = int(duration_s * FPS)
    occ = {c: [set() for _ in range(n_ticks)] for c in CAMS}

    def stay(cam: str, start_s: float, length_s: float, window: int) -> None:
        a, b = int(start_s * FPS), min(int((start_s + length_s) * FPS), n_ticks)
        for t in range(a, b):
            occ[cam][t].add(window)

    for s in _visits(rng, duration_s, 0.08):
        stay("camA", s, 3.0, int(rng.integers(108)))
        stay("camB", s + 3.0 + 7.0, 3.0, int(rng.integers(108)))
    for cam in ("camC", "camD"):
        for s in _visits(rng, duration_s, 0.08):
            stay(cam, s, 3.0, int(rng.integers(108)))
    for s in _visits(rng, duration_s, 0.08):
        stay("camE", s, 4.0, int(rng.integers(108)))
        stay("camF", s + 2.0, 5.0, int(rng.integers(108)))
    Network.uniform(CAMS, fps=FPS).save(folder / "network.json")
    path = folder / "occupancy.jsonl"
    with path.open("w") as fh:
        for t in range(n_ticks):
            for c in CAMS:
                fh.write(
                    json.dumps({"camera": c, "t_ms": 1000 + t * 100, "occupied": sorted(occ[c][t])})
                    + "\n"
                )
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("trace")
    trace = write_trace(folder)
    network = Network.load(folder / "network.json")
    return network, baseline_trace(
        trace, network, BaselineParams(), snapshot_every_s=400, progress=False
    )


def _edge(res, a: str, b: str):
    return next((e for e in res.edges if {e.a, e.b} == {a, b}), None)


def test_lagged_departure_arrival_is_a_transit_link_with_its_lag(result) -> None:
    _, res = result
    edge = _edge(res, "camA", "camB")
    assert edge is not None
    assert (edge.a, edge.b) == ("camA", "camB")  # direction: A's departures lead
    assert edge.kind == "transit"
    assert edge.transit_s == pytest.approx(7.0, abs=1.0)


def test_unrelated_cameras_are_not_linked(result) -> None:
    _, res = result
    for a, b in (("camC", "camD"), ("camA", "camC"), ("camB", "camD"), ("camA", "camE")):
        assert _edge(res, a, b) is None, (a, b)


def test_arrival_before_departure_is_an_overlap(result) -> None:
    _, res = result
    edge = _edge(res, "camE", "camF")
    assert edge is not None and edge.kind == "overlap" and edge.transit_s is None


def test_topology_json_has_the_estimators_shape_and_history(result) -> None:
    network, res = result
    topo = topology_json(network, res)
    assert topo["window_edges"] == []
    assert {"a", "b", "kind", "weight", "transit_s"} <= set(topo["camera_edges"][0])
    times = [h["t_s"] for h in topo["history"]]
    assert times == sorted(times) and times[-1] == pytest.approx(res.observed_s)
    assert ["camA", "camB", "transit"] in topo["history"][-1]["camera_links"]


def test_missing_frames_are_no_data_not_empty_frames(tmp_path: Path) -> None:
    Network.uniform(("c1", "c2"), fps=FPS).save(tmp_path / "network.json")
    lines = [{"camera": "c1", "t_ms": 1000 + 100 * t, "occupied": [3, 4]} for t in range(5)]
    lines += [{"camera": "c2", "t_ms": 1000, "occupied": []}]
    (tmp_path / "occ.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    occ = read_counts(
        tmp_path / "occ.jsonl", Network.load(tmp_path / "network.json"), progress=False
    )
    assert occ.counts.shape == (2, 5)
    assert occ.counts[0].tolist() == [2] * 5
    assert occ.counts[1].tolist() == [0, -1, -1, -1, -1]


def test_bad_lines_name_file_and_line_or_are_counted(tmp_path: Path) -> None:
    Network.uniform(("c1",), fps=FPS).save(tmp_path / "network.json")
    lines = [
        '{"camera":"c1","t_ms":1000,"occupied":[1]}',
        '{"camera":"zz","t_ms":1100,"occupied":[]}',
        '{"camera":"c1","t_ms":1000,"occupied":[2]}',
        '{"camera":"c1","t_ms":1200,"occupied":[500]}',
    ]
    trace = tmp_path / "occ.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    network = Network.load(tmp_path / "network.json")
    with pytest.raises(TraceError, match=r"occ\.jsonl:2: unknown camera"):
        read_counts(trace, network, progress=False)
    occ = read_counts(trace, network, skip_bad=True, progress=False)
    assert occ.frames == 1
    assert occ.skipped == {"unknown_camera": 1, "duplicate_frame": 1, "window_outside_grid": 1}


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="min_lag_s"):
        BaselineParams(max_lag_s=200, background_lag_s=100)
    with pytest.raises(ValueError, match="events"):
        BaselineParams(events="doors")
