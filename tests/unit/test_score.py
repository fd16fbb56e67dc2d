"""The contract's scoring: window and camera precision/recall, by kind, over time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtopo.cli import main
from camtopo.evaluation.score import score_sets, score_topology

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


# --- transit links by blind-walk time (what walkers did, per direction) ------------------------
def walked(a, b, *ways):
    """A true transit link with (walkers, median_s) for a->b and, if given, b->a."""
    link = {"a": a, "b": b, "kind": "transit", "path_m": 10.0}
    for key, (n, t) in zip(("a->b", "b->a"), ways, strict=False):
        link[key] = {"walkers": n, "median_s": t}
    return link


WALKED_TRUTH = {
    "window_overlaps": [],
    "camera_links": [
        walked("a", "b", (15, 5.0), (15, 7.0)),  # 30 walkers, 6 s: short
        walked("a", "c", (19, 20.0)),  # 19 walkers: not walked enough to count
        walked("a", "d", (30, 10.0), (10, 50.0)),  # weighted (30*10 + 10*50) / 40 = 20 s
        walked("c", "d", (25, 45.0), (0, None)),  # 45 s, one way walked
        walked("b", "d", (40, 75.0)),  # beyond every band
        {"a": "b", "b": "c", "kind": "overlap", "path_m": 0.0},
    ],
}


def test_walked_links_are_split_by_blind_walk_time():
    s = score_sets([], [("a", "b"), ("d", "c"), ("b", "c")], WALKED_TRUTH)
    assert (s["walked_le14s"].found, s["walked_le14s"].true) == (1, 1)
    assert (s["walked_14_30s"].found, s["walked_14_30s"].true) == (0, 1)  # a-d, missed
    assert (s["walked_30_60s"].found, s["walked_30_60s"].true) == (1, 1)
    assert s["walked_14_30s"].precision == s["camera"].precision == 1.0


def test_a_truth_without_walkers_has_no_bands():
    assert not any(k.startswith("walked") for k in score_sets([], [("a", "b")], TRUTH))


def test_transit_times_count_directions_walked_enough_within_20_percent():
    topo = {"window_edges": [], "camera_edges": [
        {"a": "b", "b": "a", "kind": "transit",  # reversed: its a->b is the truth's b->a
         "transit": {"a->b": {"median_s": 7.5}, "b->a": {"median_s": 6.5}}},
        {"a": "a", "b": "d", "kind": "transit", "transit": {"a->b": {"median_s": 10.0}}},
    ]}  # fmt: skip
    t = score_topology(topo, WALKED_TRUTH)["transit_times"]
    # directions walked by >= 10: a->b 5 s (est 6.5, +30 %), b->a 7 s (est 7.5, ok), a->c 20 s,
    # a->d 10 s (ok), d->a 50 s, c->d 45 s, b->d 75 s
    assert (t["directions"], t["timed"], t["within_20pct"]) == (7, 3, 2)


# --- the files: a truth or topology without what scoring reads is refused, not scored --------
TOPOLOGY = {"format": "camtopo-topology/1", "window_edges": [{"a": "a:1", "b": "b:2"}],
            "camera_edges": [{"a": "a", "b": "b", "kind": "overlap"}]}  # fmt: skip


def files(tmp_path, topology, truth):
    (tmp_path / "topology.json").write_text(json.dumps(topology))
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    return str(tmp_path / "topology.json"), str(tmp_path / "truth.json")


def test_good_files_are_scored(tmp_path, capsys):
    assert main(["score", *files(tmp_path, TOPOLOGY, TRUTH)]) == 0
    assert "window" in capsys.readouterr().out


BAD_TRUTHS = {
    "empty": ({}, "truth.json: missing field 'window_overlaps'"),
    "no links": ({"window_overlaps": []}, "truth.json: missing field 'camera_links'"),
    "not an object": ([], "truth.json: expected a JSON object"),
    "links not a list": ({**TRUTH, "camera_links": {}}, "'camera_links' must be a list"),
    "link without kind": (
        {**TRUTH, "camera_links": [{"a": "a", "b": "b"}]},
        "truth.json: camera_links[0]: missing field 'kind'",
    ),
    "unknown kind": (
        {**TRUTH, "camera_links": [{"a": "a", "b": "b", "kind": "near"}]},
        "camera_links[0]: 'kind' must be one of ['overlap', 'transit'], got 'near'",
    ),
    "walkers not a count": (
        {**TRUTH, "camera_links": [walked("a", "b", (-1, 3.0))]},
        "camera_links[0].a->b: 'walkers' must be a count",
    ),
    "median not seconds": (
        {**TRUTH, "camera_links": [walked("a", "b", (3, "3 s"))]},
        "camera_links[0].a->b: 'median_s' must be seconds >= 0 or null",
    ),
    "window not a label": (
        {**TRUTH, "window_overlaps": [["a:1", 7]]},
        "window_overlaps[0]: expected two window labels 'camera:index'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_TRUTHS))
def test_truth_without_what_scoring_needs_is_refused(tmp_path, capsys, name):
    truth, message = BAD_TRUTHS[name]
    assert main(["score", *files(tmp_path, TOPOLOGY, truth)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "truth.json") in err


BAD_TOPOLOGIES = {
    "empty": ({}, "expected 'format': 'camtopo-topology/1', found no 'format' field"),
    "other version": ({**TOPOLOGY, "format": "camtopo-topology/2"}, "found 'camtopo-topology/2'"),
    "no window edges": (
        {k: v for k, v in TOPOLOGY.items() if k != "window_edges"},
        "missing field 'window_edges'",
    ),
    "no camera edges": (
        {k: v for k, v in TOPOLOGY.items() if k != "camera_edges"},
        "missing field 'camera_edges'",
    ),
    "edge without b": (
        {**TOPOLOGY, "window_edges": [{"a": "a:1"}]},
        "window_edges[0]: missing field 'b'",
    ),
    "snapshot without time": (
        {**TOPOLOGY, "history": [{"window_pairs": [], "camera_links": []}]},
        "history[0]: missing field 't_s'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_TOPOLOGIES))
def test_topology_without_what_scoring_needs_is_refused(tmp_path, capsys, name):
    topology, message = BAD_TOPOLOGIES[name]
    assert main(["score", *files(tmp_path, topology, TRUTH)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "topology.json") in err


def test_a_file_that_is_not_json_is_named(tmp_path, capsys):
    topology, truth = files(tmp_path, TOPOLOGY, TRUTH)
    Path(truth).write_text("{")
    assert main(["score", topology, truth]) == 2
    assert f"{truth}: not valid JSON" in capsys.readouterr().err
