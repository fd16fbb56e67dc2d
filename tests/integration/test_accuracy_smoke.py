"""The accuracy benchmark runs end to end (--quick) and still measures what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import accuracy

pytestmark = pytest.mark.slow


def test_quick_suite_runs_end_to_end_and_scores_both_estimators(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    assert (
        accuracy.main(
            [
                "--quick",
                "--quiet",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--results-dir",
                str(results_dir),
            ]
        )
        == 0
    )
    out = json.loads((results_dir / "accuracy-quick.json").read_text())
    assert (results_dir / "accuracy-quick.png").stat().st_size > 10_000
    assert [r["net"]["name"] for r in out["networks"]] == [n.name for n in accuracy.QUICK]
    for r in out["networks"]:
        for who in ("camtopo", "baseline"):
            score = r[who]["score"]
            assert {"window", "camera"} <= set(score["final"])
            # A curve over simulated time that ends at the whole trace.
            assert len(score["curve"]) >= 3
            assert score["curve"][-1]["t_s"] == pytest.approx(r["net"]["duration_s"], abs=2)
            for level in score["final"].values():
                assert 0.0 <= level["precision"] <= 1.0 and 0.0 <= level["recall"] <= 1.0
        assert r["baseline"]["score"]["final"]["window"]["estimated"] == 0  # no window level
        fp = r["camtopo"]["false_positives"]
        assert (
            fp["false_window_edges"] + fp["true_window_edges"]
            == (r["camtopo"]["score"]["final"]["window"]["estimated"])
        )
    # On a small noise-free corridor, exclusion must find the overlapping cameras.
    clean = next(r for r in out["networks"] if not r["net"]["noise"])
    assert clean["camtopo"]["score"]["final"]["camera_overlap"]["recall"] >= 0.8
    # The generated traces are cached under their keys, for reuse by the next run.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        n.key for n in accuracy.QUICK
    )
