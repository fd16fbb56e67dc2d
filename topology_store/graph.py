"""The camera graph as stored and served: building it from window edges, diffing two graphs into
topology-change events, and the read model (neighbours, overlaps, partitions, GraphML).

Pure: no Redis, no HTTP. An *edge record* is a JSON-able dict keyed by ``"a|b"`` with camera
``a`` before ``b`` in network order; it holds the camera edge's evidence (taken from its
strongest window pair), its window overlaps, and ``published_weight`` — the weight last
announced on the topology-changes topic, against which re-weighting is measured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from camtopo.core.evidence import CameraEdge, WindowEdges, camera_edges
from camtopo.core.grid import Network

EdgeRecord = dict[str, Any]
Graph = dict[str, EdgeRecord]

EDGE_ADDED = "EDGE_ADDED"
EDGE_REMOVED = "EDGE_REMOVED"
EDGE_REWEIGHTED = "EDGE_REWEIGHTED"


def edge_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def build_graph(network: Network, edges: WindowEdges, transit: Iterable[CameraEdge] = ()) -> Graph:
    """Camera edge records (with their window overlaps) from adjacent window pairs, plus the
    transit links found across blind stretches (no window pairs; evidence per direction)."""
    cam = network.window_camera
    per_pair: dict[tuple[int, int], list[int]] = defaultdict(list)
    # window_edges gives i < j, so i's camera precedes j's in network order.
    for k, (i, j) in enumerate(zip(edges.i.tolist(), edges.j.tolist(), strict=True)):
        per_pair[(int(cam[i]), int(cam[j]))].append(k)
    strength = np.minimum(edges.c_ij, edges.c_ji)
    graph: Graph = {}
    for ce in camera_edges(network, edges):
        ia, ib = network.camera_index(ce.a), network.camera_index(ce.b)
        rows = per_pair[(ia, ib)]
        best = max(rows, key=lambda k: (strength[k], edges.c_ij[k] + edges.c_ji[k]))
        windows = [
            {
                "a": int(edges.i[k] - network.offsets[ia]),
                "b": int(edges.j[k] - network.offsets[ib]),
                "c_ab": round(float(edges.c_ij[k]), 4),
                "c_ba": round(float(edges.c_ji[k]), 4),
                "o_ab": int(edges.o_ij[k]),
                "o_ba": int(edges.o_ji[k]),
                "p_ab": int(edges.p_ij[k]),
                "p_ba": int(edges.p_ji[k]),
            }
            for k in rows
        ]
        rec = ce.to_json()
        rec.update(
            c_ab=round(float(edges.c_ij[best]), 4),
            c_ba=round(float(edges.c_ji[best]), 4),
            o_ab=int(edges.o_ij[best]),
            o_ba=int(edges.o_ji[best]),
            windows=windows,
        )
        graph[edge_key(ce.a, ce.b)] = rec
    for te in transit:
        a, b = sorted((te.a, te.b), key=network.camera_index)
        if edge_key(a, b) in graph:
            continue  # an overlap explains the pair
        rec = te.to_json()
        rec.update(a=a, b=b, c_ab=0.0, c_ba=0.0, o_ab=0, o_ba=0, windows=[])
        graph[edge_key(a, b)] = rec
    return graph


def _event(change: str, rec: EdgeRecord, range_end_ms: int, now_ms: int) -> dict[str, Any]:
    removed = change == EDGE_REMOVED
    return {
        "change": change,
        "a": rec["a"],
        "b": rec["b"],
        "kind": rec["kind"],
        "weight": 0.0 if removed else float(rec["weight"]),
        "support": 0 if removed else int(rec["support"]),
        "c_ab": float(rec["c_ab"]),
        "c_ba": float(rec["c_ba"]),
        "o_ab": int(rec["o_ab"]),
        "o_ba": int(rec["o_ba"]),
        "transit_s": rec.get("transit_s"),
        "range_end_ms": int(range_end_ms),
        "emitted_ms": int(now_ms),
    }


@dataclass(frozen=True)
class GraphDiff:
    """What :func:`diff_graphs` found: events to publish, edge records to write, keys to drop."""

    changes: list[dict[str, Any]]
    upserts: Graph
    removed: list[str]


def diff_graphs(
    old: Mapping[str, EdgeRecord],
    new: Mapping[str, EdgeRecord],
    step: float,
    range_end_ms: int,
    now_ms: int,
) -> GraphDiff:
    """Topology-change events from ``old`` to ``new``.

    An edge that appears is EDGE_ADDED, one that disappears EDGE_REMOVED (carrying its last
    evidence, weight 0). A kept edge is EDGE_REWEIGHTED only when its weight has moved by more
    than ``step`` since the weight last published, so slow drift is announced once it adds up
    and noise is not announced at all. Records whose content changed are returned for writing.
    """
    changes: list[dict[str, Any]] = []
    upserts: Graph = {}
    for key in sorted(new):
        rec = dict(new[key])
        prev = old.get(key)
        if prev is None:
            rec["published_weight"] = rec["weight"]
            changes.append(_event(EDGE_ADDED, rec, range_end_ms, now_ms))
            upserts[key] = rec
            continue
        published = float(
            prev["published_weight"] if "published_weight" in prev else prev["weight"]
        )
        if abs(float(rec["weight"]) - published) > step:
            rec["published_weight"] = rec["weight"]
            changes.append(_event(EDGE_REWEIGHTED, rec, range_end_ms, now_ms))
        else:
            rec["published_weight"] = published
        if rec != prev:
            upserts[key] = rec
    removed = sorted(set(old) - set(new))
    changes.extend(_event(EDGE_REMOVED, dict(old[k]), range_end_ms, now_ms) for k in removed)
    return GraphDiff(changes, upserts, removed)


def keyed_for(change: Mapping[str, Any], camera: str) -> dict[str, Any]:
    """The event as seen from ``camera``'s side: ``a`` is that camera, evidence swapped to match."""
    out = dict(change)
    if change["a"] == camera:
        return out
    if change["b"] != camera:
        raise ValueError(f"camera {camera!r} is not an endpoint of {change['a']}-{change['b']}")
    out["a"], out["b"] = change["b"], change["a"]
    out["c_ab"], out["c_ba"] = change["c_ba"], change["c_ab"]
    out["o_ab"], out["o_ba"] = change["o_ba"], change["o_ab"]
    return out


# --- the read model ---------------------------------------------------------------------------


class UnknownCamera(KeyError):
    """A camera id that is not part of the network."""

    def __str__(self) -> str:
        return f"unknown camera {self.args[0]!r}"


@dataclass(frozen=True)
class TopologyView:
    """A snapshot of the stored topology that answers the query service's questions."""

    cameras: tuple[str, ...]
    edges: Mapping[str, EdgeRecord]
    range_end_ms: int | None = None
    updated_ms: int | None = None

    def _check(self, camera: str) -> None:
        if camera not in self._camera_set:
            raise UnknownCamera(camera)

    @property
    def _camera_set(self) -> frozenset[str]:
        return frozenset(self.cameras)

    def adjacency(self) -> dict[str, list[EdgeRecord]]:
        adj: dict[str, list[EdgeRecord]] = {c: [] for c in self.cameras}
        for rec in self.edges.values():
            adj.setdefault(rec["a"], []).append(rec)
            adj.setdefault(rec["b"], []).append(rec)
        return adj

    def neighbours(self, camera: str) -> dict[str, Any]:
        """Candidate next cameras for handover, strongest evidence first."""
        self._check(camera)
        out = []
        for rec in self.adjacency().get(camera, []):
            forward = rec["a"] == camera
            out.append(
                {
                    "camera": rec["b"] if forward else rec["a"],
                    "kind": rec["kind"],
                    "weight": rec["weight"],
                    # C' of "camera's window -> neighbour's window" and back.
                    "c_out": rec["c_ab"] if forward else rec["c_ba"],
                    "c_in": rec["c_ba"] if forward else rec["c_ab"],
                    "support": rec["support"],
                    "co_occurrences": rec["co_occurrences"],
                    "transit_s": rec.get("transit_s"),
                    "window_overlaps": len(rec.get("windows", ())),
                }
            )
        out.sort(key=lambda n: (-n["weight"], -n["support"], n["camera"]))
        others = max(len(self.cameras) - 1, 1)
        k = len(out)
        return {
            "camera": camera,
            "neighbours": out,
            "searched": k,
            "of": others,
            # Handover searches these k cameras instead of all n others.
            "rules_out": round(1.0 - k / others, 6),
            "range_end_ms": self.range_end_ms,
        }

    def window_overlaps(self, a: str, b: str) -> dict[str, Any]:
        """The adjacent window pairs of cameras a and b (as ``a``'s window, ``b``'s window)."""
        self._check(a)
        self._check(b)
        rec = self.edges.get(edge_key(a, b))
        if rec is not None:
            windows = list(rec.get("windows", ()))
        else:
            rec = self.edges.get(edge_key(b, a))
            windows = [
                {
                    "a": w["b"], "b": w["a"], "c_ab": w["c_ba"], "c_ba": w["c_ab"],
                    "o_ab": w["o_ba"], "o_ba": w["o_ab"], "p_ab": w["p_ba"], "p_ba": w["p_ab"],
                }
                for w in (rec or {}).get("windows", ())
            ]  # fmt: skip
        return {"a": a, "b": b, "linked": rec is not None, "windows": windows}

    def graph_json(self) -> dict[str, Any]:
        edges = [
            {k: v for k, v in rec.items() if k not in ("windows", "published_weight")}
            | {"window_overlaps": len(rec.get("windows", ()))}
            for rec in sorted(self.edges.values(), key=lambda r: (r["a"], r["b"]))
        ]
        return {
            "cameras": list(self.cameras),
            "edges": edges,
            "range_end_ms": self.range_end_ms,
            "updated_ms": self.updated_ms,
        }

    def graphml(self) -> str:
        """The camera graph in GraphML (undirected; evidence as edge data)."""
        attrs = [
            ("kind", "string"), ("weight", "double"), ("support", "int"),
            ("co_occurrences", "int"), ("c_ab", "double"), ("c_ba", "double"),
            ("o_ab", "int"), ("o_ba", "int"), ("transit_s", "double"),
        ]  # fmt: skip
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
        ]
        lines += [
            f'  <key id="{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>'
            for name, kind in attrs
        ]
        lines.append('  <graph id="cameras" edgedefault="undirected">')
        lines += [f"    <node id={quoteattr(c)}/>" for c in self.cameras]
        for n, rec in enumerate(sorted(self.edges.values(), key=lambda r: (r["a"], r["b"]))):
            lines.append(
                f'    <edge id="e{n}" source={quoteattr(rec["a"])} target={quoteattr(rec["b"])}>'
            )
            for name, _ in attrs:
                value = rec.get(name)
                if value is not None:
                    lines.append(f'      <data key="{name}">{escape(str(value))}</data>')
            lines.append("    </edge>")
        lines += ["  </graph>", "</graphml>", ""]
        return "\n".join(lines)

    def partitions(self, max_size: int = 64) -> dict[str, Any]:
        """Groups of strongly connected cameras (paper section 8), each with its cut edges."""
        groups = partition_cameras(self.cameras, self.edges.values(), max_size)
        where = {c: g for g, members in enumerate(groups) for c in members}
        internal = [0] * len(groups)
        cut = [0] * len(groups)
        for rec in self.edges.values():
            ga, gb = where[rec["a"]], where[rec["b"]]
            if ga == gb:
                internal[ga] += 1
            else:
                cut[ga] += 1
                cut[gb] += 1
        linked = [g for g in range(len(groups)) if internal[g] or cut[g]]
        return {
            "partitions": [
                {"id": n, "cameras": groups[g], "internal_edges": internal[g], "cut_edges": cut[g]}
                for n, g in enumerate(linked)
            ],
            "isolated": sorted(c for g in range(len(groups)) if g not in linked for c in groups[g]),
            "max_size": max_size,
        }


def partition_cameras(
    cameras: Iterable[str], edges: Iterable[EdgeRecord], max_size: int = 64
) -> list[list[str]]:
    """Connected components of the camera graph; components larger than ``max_size`` are split
    by weighted label propagation (deterministic), so groups are dense inside, sparse between.
    """
    cams = list(cameras)
    order = {c: n for n, c in enumerate(cams)}
    adj: dict[str, dict[str, float]] = {c: {} for c in cams}
    for rec in edges:
        w = float(rec["weight"])
        adj.setdefault(rec["a"], {})[rec["b"]] = w
        adj.setdefault(rec["b"], {})[rec["a"]] = w
    seen: set[str] = set()
    groups: list[list[str]] = []
    for start in cams:
        if start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            c = stack.pop()
            comp.append(c)
            for n in adj[c]:
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        comp.sort(key=order.__getitem__)
        groups.extend(_split(comp, adj, max_size) if len(comp) > max_size else [comp])
    return groups


def _split(
    comp: list[str], adj: Mapping[str, Mapping[str, float]], max_size: int
) -> list[list[str]]:
    label = {c: n for n, c in enumerate(comp)}
    size = dict.fromkeys(range(len(comp)), 1)
    for _ in range(20):
        moved = False
        for c in comp:
            score: dict[int, float] = defaultdict(float)
            for n, w in adj[c].items():
                score[label[n]] += w
            if not score:
                continue
            own = label[c]
            # Join the neighbouring group with most evidence that still has room.
            best = max(
                (g for g in score if g == own or size[g] < max_size),
                key=lambda g: (score[g], g == own, -g),
                default=own,
            )
            if best != own and score[best] > score.get(own, 0.0):
                size[own] -= 1
                size[best] += 1
                label[c] = best
                moved = True
        if not moved:
            break
    out: dict[int, list[str]] = defaultdict(list)
    for c in comp:
        out[label[c]].append(c)
    first = {c: n for n, c in enumerate(comp)}
    return sorted(out.values(), key=lambda g: first[g[0]])
