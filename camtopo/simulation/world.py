"""The simulated world: a 2-D ground plane in metres with a walkway graph.

Walkways are straight edges between nodes, each with a width; an edge may be one-way (only
a -> b). People walk along edge centre lines with a lateral offset inside the width, so the
*walkable ground* is the union of the edges' capsules (segment dilated by half its width).
Buildings are rectangles kept for the map only: nobody walks or is seen inside them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


class WorldError(ValueError):
    """A walkway graph is malformed (unknown node, zero-length edge, bad width)."""


@dataclass
class Walkways:
    """Walkway graph: nodes float64 (N, 2) in metres; edges a -> b with width and one-way flag."""

    nodes: np.ndarray
    edge_a: np.ndarray
    edge_b: np.ndarray
    width: np.ndarray
    one_way: np.ndarray
    buildings: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = np.asarray(self.nodes, dtype=np.float64).reshape(-1, 2)
        self.edge_a = np.asarray(self.edge_a, dtype=np.int32)
        self.edge_b = np.asarray(self.edge_b, dtype=np.int32)
        self.width = np.asarray(self.width, dtype=np.float64)
        self.one_way = np.asarray(self.one_way, dtype=bool)
        n = len(self.nodes)
        if not (len(self.edge_a) == len(self.edge_b) == len(self.width) == len(self.one_way)):
            raise WorldError("edge arrays must have equal lengths")
        for name, ends in (("a", self.edge_a), ("b", self.edge_b)):
            if len(ends) and (ends.min() < 0 or ends.max() >= n):
                raise WorldError(f"edge end {name} refers to a node outside 0..{n - 1}")
        if len(self.width) and self.width.min() <= 0:
            raise WorldError("walkway widths must be positive")
        if len(self.edge_a) and self.lengths.min() <= 0:
            raise WorldError(f"zero-length edge at index {int(np.argmin(self.lengths))}")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        return len(self.edge_a)

    @cached_property
    def lengths(self) -> np.ndarray:
        """float64 (E,): centre-line length of each edge."""
        lengths: np.ndarray = np.linalg.norm(
            self.nodes[self.edge_b] - self.nodes[self.edge_a], axis=1
        )
        return lengths

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of all walkable ground."""
        pad = float(self.width.max()) if self.n_edges else 0.0
        lo = self.nodes.min(axis=0) - pad
        hi = self.nodes.max(axis=0) + pad
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @cached_property
    def adjacency(self) -> list[list[tuple[int, int, float]]]:
        """Directed out-lists: node -> [(neighbour, edge, length)], one-way edges only a -> b."""
        out: list[list[tuple[int, int, float]]] = [[] for _ in range(self.n_nodes)]
        for e, (a, b, length, ow) in enumerate(
            zip(self.edge_a, self.edge_b, self.lengths, self.one_way, strict=True)
        ):
            out[int(a)].append((int(b), e, float(length)))
            if not ow:
                out[int(b)].append((int(a), e, float(length)))
        return out

    def shortest_paths(
        self, source: int, targets: set[int] | None = None, max_m: float = np.inf
    ) -> tuple[dict[int, float], dict[int, int]]:
        """Dijkstra from ``source`` respecting one-way edges: (distance, predecessor) per node.

        Stops once every node of ``targets`` is settled or distances exceed ``max_m``, so that
        local trips on a 10,000-camera campus stay cheap.
        """
        dist = {source: 0.0}
        prev: dict[int, int] = {}
        done: set[int] = set()
        remaining = set(targets) if targets is not None else None
        heap = [(0.0, source)]
        adj = self.adjacency
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if remaining is not None:
                remaining.discard(u)
                if not remaining:
                    break
            for v, _e, length in adj[u]:
                nd = d + length
                if nd <= max_m and nd < dist.get(v, np.inf):
                    dist[v] = nd
                    prev[v] = u
                    heapq.heappush(heap, (nd, v))
        return {n: dist[n] for n in done}, prev

    def path(self, source: int, target: int) -> list[int] | None:
        """Node sequence of the shortest walk source -> target, or None if unreachable."""
        dist, prev = self.shortest_paths(source, {target})
        if target not in dist:
            return None
        nodes = [target]
        while nodes[-1] != source:
            nodes.append(prev[nodes[-1]])
        return nodes[::-1]

    @cached_property
    def edge_index(self) -> dict[tuple[int, int], int]:
        """(a, b) -> edge, both orders (direction is checked by :attr:`adjacency`)."""
        out: dict[tuple[int, int], int] = {}
        for e, (a, b) in enumerate(zip(self.edge_a.tolist(), self.edge_b.tolist(), strict=True)):
            out.setdefault((a, b), e)
            out.setdefault((b, a), e)
        return out

    # --- walkable ground ------------------------------------------------------------------
    def edge_neighbours(self) -> list[np.ndarray]:
        """For each edge, the edges whose capsules' bounding boxes intersect its own."""
        p, q = self.nodes[self.edge_a], self.nodes[self.edge_b]
        r = self.width[:, None] / 2
        lo, hi = np.minimum(p, q) - r, np.maximum(p, q) + r
        cell = max(float(np.median(hi - lo)), 1.0) * 2
        buckets: dict[tuple[int, int], list[int]] = {}
        cells = []
        for e in range(self.n_edges):
            x0, y0 = np.floor(lo[e] / cell).astype(int)
            x1, y1 = np.floor(hi[e] / cell).astype(int)
            mine = [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
            cells.append(mine)
            for c in mine:
                buckets.setdefault(c, []).append(e)
        out = []
        for e in range(self.n_edges):
            cand = np.unique(np.concatenate([np.asarray(buckets[c]) for c in cells[e]]))
            ok = np.all((lo[cand] <= hi[e]) & (hi[cand] >= lo[e]), axis=1) & (cand != e)
            out.append(cand[ok])
        return out

    def walkable_lattice(self, step: float = 0.25, chunk: int = 2_000_000) -> Iterator[np.ndarray]:
        """Yield float64 (M, 2) chunks of a ``step``-spaced lattice on walkable ground.

        Each point stands for ``step**2`` m² of ground; used to measure footprint overlaps.
        A point inside several capsules is kept only by the lowest-numbered edge, so each
        lattice point is yielded once; chunks keep memory bounded on 10,000-camera worlds.
        """
        nbrs = self.edge_neighbours()
        buf: list[np.ndarray] = []
        size = 0
        for e in range(self.n_edges):
            p = self.nodes[self.edge_a[e]]
            q = self.nodes[self.edge_b[e]]
            r = self.width[e] / 2
            lo = np.floor((np.minimum(p, q) - r) / step).astype(np.int64)
            hi = np.ceil((np.maximum(p, q) + r) / step).astype(np.int64)
            ix, iy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
            pts = np.stack([ix.ravel(), iy.ravel()], axis=1) * step
            pts = pts[segment_distance(pts, p, q) <= r]
            for f in nbrs[e][nbrs[e] < e]:
                pa, pb = self.nodes[self.edge_a[f]], self.nodes[self.edge_b[f]]
                pts = pts[segment_distance(pts, pa, pb) > self.width[f] / 2]
            buf.append(pts)
            size += len(pts)
            if size >= chunk:
                yield np.concatenate(buf)
                buf, size = [], 0
        if buf:
            yield np.concatenate(buf)


def segment_distance(points: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """float64 (M,): distance of each point (M, 2) to the segment p-q."""
    d = q - p
    denom = float(d @ d)
    t = np.clip(((points - p) @ d) / denom, 0.0, 1.0) if denom > 0 else np.zeros(len(points))
    dist: np.ndarray = np.linalg.norm(points - (p + t[:, None] * d), axis=1)
    return dist


class WalkwayBuilder:
    """Incremental construction of a :class:`Walkways` graph by the scenario builders."""

    def __init__(self) -> None:
        self.nodes: list[tuple[float, float]] = []
        self.edges: list[tuple[int, int, float, bool]] = []
        self.buildings: list[tuple[float, float, float, float]] = []

    def node(self, x: float, y: float) -> int:
        self.nodes.append((float(x), float(y)))
        return len(self.nodes) - 1

    def edge(self, a: int, b: int, width: float, one_way: bool = False) -> int:
        self.edges.append((a, b, float(width), bool(one_way)))
        return len(self.edges) - 1

    def build(self) -> Walkways:
        e = np.array(self.edges, dtype=object).reshape(-1, 4)
        return Walkways(
            nodes=np.array(self.nodes, dtype=np.float64),
            edge_a=e[:, 0].astype(np.int32),
            edge_b=e[:, 1].astype(np.int32),
            width=e[:, 2].astype(np.float64),
            one_way=e[:, 3].astype(bool),
            buildings=list(self.buildings),
        )
