"""The contract's scoring: window and camera precision/recall, by kind, over time."""

from __future__ import annotations

import pytest

from camtopo.score import score_sets, score_topology

TRUTH = {
    "window_overlaps": [["a:1", "b:2"], ["a:3", "b:4"]],
    "camera_links": [
        {"a": "a", "b": "b", "kind": "overlap", "path_m": 0.0},
        {"a": "c", "b": "b", "kind": "transit", "path_m": 20.0},
        {"a": "a", "b": "d", "kind": "transit", "path_m": 30.0},
    ],
}


def test_pairs_are_unordered_and_counted_once():
    s = score_sets([("b:2", "a:1"), ("a:1", "b:2"), ("a:1", "b:9")], [("b", "a")], TRUTH)
    assert (s["window"].found, s["window"].estimated) == (1, 2)
    assert s["window"].precision == 0.5 and s["window"].recall == 0.5
    assert s["camera"].recall == pytest.approx(1 / 3)


def test_precision_by_kind_judges_the_links_reported_as_that_kind():
    links = [("a", "b", "overlap"), ("b", "c", "overlap"), ("a", "c", "transit")]
    s = score_sets([], links, TRUTH)
    # overlap: both reported links are true links (of either kind); recall counts a-b only
    assert (s["camera_overlap"].precision, s["camera_overlap"].recall) == (1.0, 1.0)
    # transit: the one reported transit link is false; one of two true transit links found
    assert (s["camera_transit"].precision, s["camera_transit"].recall) == (0.0, 0.5)
    assert s["camera"].precision == pytest.approx(2 / 3)


def test_history_gives_a_curve_and_the_time_to_reach_the_final_figures():
    topo = {
        "observed_s": 600,
        "window_edges": [{"a": "a:1", "b": "b:2"}],
        "camera_edges": [{"a": "a", "b": "b", "kind": "overlap"}],
        "history": [
            {"t_s": 300, "window_pairs": [], "camera_links": []},
            {"t_s": 600, "window_pairs": [["a:1", "b:2"]], "camera_links": [["a", "b", "overlap"]]},
        ],
    }
    result = score_topology(topo, TRUTH)
    assert [p["window"]["recall"] for p in result["curve"]] == [0.0, 0.5]
    assert result["time_to_final_s"]["window"] == 600
