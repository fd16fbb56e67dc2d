"""End to end on real OpenCV: rendered video -> MOG2 detection -> occupancy trace -> camtopo's
estimator finds the overlap links between overlapping cameras (benchmarks/video_topology.py,
tiny version: the 2 plaza cameras sharing the most ground, 60 s scored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import video_topology

pytestmark = pytest.mark.slow


def _pairs(links: list[dict[str, str]], kind: str | None = None) -> set[tuple[str, str]]:
    return {
        (min(x["a"], x["b"]), max(x["a"], x["b"]))
        for x in links
        if kind is None or x["kind"] == kind
    }


def test_overlap_links_are_found_from_rendered_video(tmp_path: Path) -> None:
    cache, results = tmp_path / "cache", tmp_path / "results"
    argv = ["--subset", "2", "--minutes", "1", "--warmup", "15", "--density", "3", "--quiet"]
    argv += ["--cache-dir", str(cache), "--results-dir", str(results)]
    assert video_topology.main(argv) == 0

    out = json.loads((results / "video_topology.json").read_text())
    folder = Path(out["folder"])
    assert folder.parent == cache
    truth = json.loads((folder / "truth.json").read_text())
    network = json.loads((folder / "network.json").read_text())
    cameras = network["cameras"]
    assert len(cameras) == 2 and out["meta"]["cameras"] == cameras

    # The chosen cameras overlap: each shares ground with another one.
    overlap = _pairs(truth["camera_links"], "overlap")
    assert overlap and {c for pair in overlap for c in pair} == set(cameras)

    # Both traces hold the same camera-frames (a dark camera is missing from both alike),
    # with occupied windows in the contract's form.
    lines = {}
    for kind in video_topology.TRACES:
        rows = [json.loads(x) for x in (folder / f"occupancy.{kind}.jsonl").open()]
        assert all(r["occupied"] == sorted(set(r["occupied"])) for r in rows)
        assert {r["camera"] for r in rows} <= set(cameras)
        lines[kind] = sorted((r["camera"], r["t_ms"]) for r in rows)
    assert lines["video"] == lines["exact"]
    assert len(lines["video"]) == out["agreement"]["frames"] > 0

    # The vision path sees people: the agreement targets with +-1 window tolerance.
    ag = out["agreement"]
    assert ag["true_windows"] > 500
    assert ag["recall_tolerant"] >= 0.9 and ag["false_rate_tolerant"] <= 0.05
    shares = ag["true_window_shares"]
    assert sum(shares.values()) == pytest.approx(1.0)

    # The estimator, run on the video trace, finds every overlap link among the cameras.
    topo = json.loads((folder / "topology.video.json").read_text())
    assert overlap <= _pairs(topo["camera_edges"])
    video = out["video"]["score"]["final"]
    assert video["camera_overlap"]["recall"] == 1.0
    assert video["window"]["found"] > 0
    assert out["video"]["skipped"] == {} and out["exact"]["skipped"] == {}
    assert (results / "video_topology.png").stat().st_size > 10_000

    # A second run reuses the cached render instead of rendering again.
    assert video_topology.main(argv) == 0
    again = json.loads((results / "video_topology.json").read_text())
    assert again["cached"] is True and again["meta"] == out["meta"]
