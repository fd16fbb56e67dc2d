"""Camera graph: diffing into change events, the per-camera view of an event, read model."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from camtopo.core.evidence import window_edges
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.graph import (
    EDGE_ADDED,
    EDGE_REMOVED,
    EDGE_REWEIGHTED,
    TopologyView,
    UnknownCamera,
    build_graph,
    diff_graphs,
    keyed_for,
    partition_cameras,
)


def edge(a: str, b: str, weight: float, **extra: object) -> dict[str, object]:
    rec = {"a": a, "b": b, "kind": "overlap", "weight": weight, "support": 1,
           "co_occurrences": 10, "transit_s": None, "c_ab": weight, "c_ba": 0.99,
           "o_ab": 40, "o_ba": 50, "windows": [{"a": 1, "b": 2, "c_ab": weight, "c_ba": 0.99,
           "o_ab": 40, "o_ba": 50, "p_ab": 30, "p_ba": 45}]}  # fmt: skip
    rec.update(extra)
    return rec


def test_new_edge_is_added_and_vanished_edge_removed() -> None:
    old = {"c1|c2": edge("c1", "c2", 0.9, published_weight=0.9)}
    new = {"c2|c3": edge("c2", "c3", 0.85)}
    diff = diff_graphs(old, new, 0.05, range_end_ms=1000, now_ms=2000)
    kinds = {(c["change"], c["a"], c["b"]) for c in diff.changes}
    assert kinds == {(EDGE_ADDED, "c2", "c3"), (EDGE_REMOVED, "c1", "c2")}
    removed = next(c for c in diff.changes if c["change"] == EDGE_REMOVED)
    assert removed["weight"] == 0.0 and removed["c_ab"] == 0.9  # last evidence kept
    assert diff.removed == ["c1|c2"] and set(diff.upserts) == {"c2|c3"}
    assert all(c["range_end_ms"] == 1000 and c["emitted_ms"] == 2000 for c in diff.changes)


def test_reweight_only_past_the_step_measured_from_last_published() -> None:
    old = {"c1|c2": edge("c1", "c2", 0.90, published_weight=0.90)}
    small = diff_graphs(old, {"c1|c2": edge("c1", "c2", 0.93)}, 0.05, 0, 0)
    assert small.changes == []
    # Not announced, but stored (queries see fresh evidence) with the old published weight.
    assert small.upserts["c1|c2"]["published_weight"] == 0.90
    drift = diff_graphs(small.upserts, {"c1|c2": edge("c1", "c2", 0.96)}, 0.05, 0, 0)
    assert [c["change"] for c in drift.changes] == [EDGE_REWEIGHTED]
    assert drift.upserts["c1|c2"]["published_weight"] == 0.96


def test_unchanged_graph_writes_nothing() -> None:
    old = {"c1|c2": edge("c1", "c2", 0.9, published_weight=0.9)}
    diff = diff_graphs(old, {"c1|c2": edge("c1", "c2", 0.9)}, 0.05, 0, 0)
    assert diff.changes == [] and diff.upserts == {} and diff.removed == []


def test_event_keyed_for_b_swaps_direction() -> None:
    event = diff_graphs({}, {"c1|c2": edge("c1", "c2", 0.9)}, 0.05, 0, 0).changes[0]
    mirrored = keyed_for(event, "c2")
    assert (mirrored["a"], mirrored["b"]) == ("c2", "c1")
    assert (mirrored["c_ab"], mirrored["c_ba"]) == (event["c_ba"], event["c_ab"])
    assert (mirrored["o_ab"], mirrored["o_ba"]) == (50, 40)
    with pytest.raises(ValueError, match="c9"):
        keyed_for(event, "c9")


def test_neighbours_rank_by_evidence_and_say_what_they_rule_out() -> None:
    cams = tuple(f"c{i}" for i in range(10))
    view = TopologyView(cams, {"c0|c1": edge("c0", "c1", 0.85), "c0|c2": edge("c0", "c2", 0.95)})
    ans = view.neighbours("c0")
    assert [n["camera"] for n in ans["neighbours"]] == ["c2", "c1"]
    assert ans["rules_out"] == pytest.approx(1 - 2 / 9)
    back = view.neighbours("c2")["neighbours"][0]
    assert back["camera"] == "c0" and back["c_out"] == 0.99 and back["c_in"] == 0.95
    with pytest.raises(UnknownCamera):
        view.neighbours("nope")


def test_window_overlaps_are_oriented_as_asked() -> None:
    view = TopologyView(("c0", "c1"), {"c0|c1": edge("c0", "c1", 0.9)})
    fwd = view.window_overlaps("c0", "c1")["windows"][0]
    rev = view.window_overlaps("c1", "c0")["windows"][0]
    assert (fwd["a"], fwd["b"], fwd["o_ab"]) == (1, 2, 40)
    assert (rev["a"], rev["b"], rev["o_ab"]) == (2, 1, 50)


def test_partitions_split_large_components_along_weak_links() -> None:
    # Two dense cliques of 5 joined by one weak edge: with room for 5, the weak edge is cut.
    cams = [f"c{i}" for i in range(10)]
    edges = [edge(f"c{i}", f"c{j}", 0.95) for g in (0, 5) for i in range(g, g + 5)
             for j in range(i + 1, g + 5)]  # fmt: skip
    edges.append(edge("c4", "c5", 0.81))
    groups = partition_cameras(cams, edges, max_size=5)
    assert sorted(map(sorted, groups)) == [cams[:5], cams[5:]]
    assert partition_cameras(cams, edges, max_size=64) == [cams]


def test_graph_built_from_counts_matches_the_planted_links_and_exports_graphml() -> None:
    net = synthetic.make_network(10, seed=2)
    est = synthetic.run(net, Settings(), 3000)
    graph = build_graph(net.network, window_edges(est.counts))
    found = {(r["a"], r["b"]) for r in graph.values()}
    assert found and found <= net.links
    for rec in graph.values():
        assert rec["support"] == len(rec["windows"])
        assert rec["weight"] == pytest.approx(min(rec["c_ab"], rec["c_ba"]), abs=1e-4)
    root = ET.fromstring(TopologyView(net.network.cameras, graph).graphml())
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == 10
    assert len(root.findall(".//g:edge", ns)) == len(graph)


def test_transit_links_join_the_graph_with_their_transit_time() -> None:
    import numpy as np

    from camtopo.core.evidence import CameraEdge, WindowEdges
    from camtopo.core.grid import Network

    network = Network.uniform(["c1", "c2", "c3"])
    none = np.zeros(0, dtype=np.int64)
    no_windows = WindowEdges(none, none, none, none, none, none, none * 1.0, none * 1.0)
    walk = CameraEdge("c3", "c1", "transit", 0.6, 40, 55, transit_s=12.5)
    graph = build_graph(network, no_windows, [walk])
    assert list(graph) == ["c1|c3"]  # stored in network order whatever the direction found
    view = TopologyView(network.cameras, graph)
    (n,) = view.neighbours("c1")["neighbours"]
    assert (n["camera"], n["kind"], n["transit_s"]) == ("c3", "transit", 12.5)
