"""From counts to topology: C, C', window adjacency and camera links (paper eqs. 1-2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock

if TYPE_CHECKING:
    from camtopo.core.window_decision import WindowActivity, WindowRelations, WindowRule


class ExclusionCounts(Protocol):
    """What both engines offer: update with blocks, read (O, P) for window pairs."""

    network: Network

    def update(self, block: PaddedBlock) -> None: ...

    def pair_counts(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray]: ...

    def forget_camera(self, camera: int) -> int: ...


def c_prime(p: np.ndarray, o: np.ndarray, o_ref: float) -> np.ndarray:
    """C'_ij = (P/O) * min(1, log O / log O_ref), float64; 0 where O < 1."""
    p = np.asarray(p, dtype=np.float64)
    o = np.asarray(o, dtype=np.float64)
    safe = np.maximum(o, 1.0)
    conf = np.minimum(1.0, np.log(safe) / np.log(o_ref))
    return np.where(o >= 1, p / safe * conf, 0.0)


def adjacent_pairs(
    counts: ExclusionCounts, c_star: float, o_ref: float
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, adjacent both ways; engines with a faster scan provide their own."""
    fast = getattr(counts, "adjacent_pairs", None)
    if fast is not None:
        pairs: tuple[np.ndarray, np.ndarray] = fast(c_star, o_ref)
        return pairs
    i, j = counts.positive_pairs()
    keep = i < j
    i, j = i[keep], j[keep]
    o_ij, p_ij = counts.pair_counts(i, j)
    o_ji, p_ji = counts.pair_counts(j, i)
    both = (c_prime(p_ij, o_ij, o_ref) > c_star) & (c_prime(p_ji, o_ji, o_ref) > c_star)
    return i[both], j[both]


@dataclass(frozen=True)
class WindowEdges:
    """Adjacent window pairs (i < j, global indices) with their evidence both ways."""

    i: np.ndarray
    j: np.ndarray
    o_ij: np.ndarray
    p_ij: np.ndarray
    o_ji: np.ndarray
    p_ji: np.ndarray
    c_ij: np.ndarray
    c_ji: np.ndarray

    def __len__(self) -> int:
        return int(self.i.size)


def window_edges(counts: ExclusionCounts, c_star: float = 0.8, o_ref: float = 20.0) -> WindowEdges:
    i, j = adjacent_pairs(counts, c_star, o_ref)
    order = np.lexsort((j, i))
    return edges_of_pairs(counts, i[order], j[order], o_ref)


def edges_of_pairs(
    counts: ExclusionCounts, i: np.ndarray, j: np.ndarray, o_ref: float
) -> WindowEdges:
    """The evidence both ways of the adjacent pairs (i, j)."""
    o_ij, p_ij = counts.pair_counts(i, j)
    o_ji, p_ji = counts.pair_counts(j, i)
    return WindowEdges(
        i, j, o_ij, p_ij, o_ji, p_ji, c_prime(p_ij, o_ij, o_ref), c_prime(p_ji, o_ji, o_ref)
    )


def mutual_edges(half: np.ndarray, o_ref: float) -> WindowEdges:
    """Adjacent pairs from half-edges: integer (4, n) rows i, j, O_ij, P_ij, one column per
    (i, j) with C'_ij > C*. A pair is adjacent when both (i, j) and (j, i) are there — the
    two halves come from whichever workers count rows i and j. Sorted by (i, j), i < j."""
    i, j, o, p = np.asarray(half)
    a, back = _pair_up(i, j)
    i, j, o_ij, p_ij, o_ji, p_ji = (
        x.astype(np.int64) for x in (i[a], j[a], o[a], p[a], o[back], p[back])
    )
    return WindowEdges(
        i, j, o_ij, p_ij, o_ji, p_ji, c_prime(p_ij, o_ij, o_ref), c_prime(p_ji, o_ji, o_ref)
    )


def candidate_pairs(
    counts: ExclusionCounts, c_min: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Directed cross-camera pairs with P_ij > 0 and C_ij >= ``c_min``, and their counts both
    ways: int64 (m,) each of i, j, O_ij, P_ij, O_ji, P_ji. The ``test`` rule's candidates (a
    direction below its c0 cannot pass)."""
    i, j = counts.positive_pairs()
    o, p = counts.pair_counts(i, j)
    keep = (o > 0) & (p >= c_min * o)
    i, j, o, p = i[keep], j[keep], o[keep], p[keep]
    o_r, p_r = counts.pair_counts(j, i)
    return i, j, o, p, o_r, p_r


def window_relations(
    counts: ExclusionCounts,
    rule: WindowRule,
    activity: WindowActivity | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> WindowRelations:
    """Window pairs decided by ``rule`` (camtopo.core.window_decision): ``paper`` and
    ``threshold`` give overlap pairs from C' both ways (what :func:`window_edges` reports);
    ``test`` needs the windows' ``activity`` and, for ``contained_in``, the network's padding
    neighbour table (``Network.neighbour_table(spatial_radius)``)."""
    from camtopo.core.window_decision import WindowRelations, decide  # (it imports c_prime)

    if rule.kind != "test":
        i, j = adjacent_pairs(counts, rule.c_star, rule.o_ref)
        order = np.lexsort((j, i))
        e = np.zeros(0, np.int64)
        return WindowRelations(i[order].astype(np.int64), j[order].astype(np.int64), e, e)
    return decide(*candidate_pairs(counts, rule.c0), activity, rule, neighbours)


def overlap_edges(counts: ExclusionCounts, relations: WindowRelations, o_ref: float) -> WindowEdges:
    """The overlap pairs of ``relations`` as :class:`WindowEdges` (evidence both ways, C' at
    ``o_ref``): what :func:`camera_edges` turns into camera links."""
    return edges_of_pairs(counts, relations.overlap_i, relations.overlap_j, o_ref)


def _pair_up(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of (i, j) with i < j whose reverse (j, i) is also there, and the reverse's.

    Both halves share the key min * n + max, so they sort next to each other. At 1,000
    cameras there are ~7 M halves: sorting keys with the column index packed into their low
    bits took 0.5 s where an argsort and a search for every reverse took 8 s."""
    n = int(max(i.max(initial=-1), j.max(initial=-1))) + 1
    lo = np.minimum(i, j).astype(np.int64)
    key = lo * n + (np.maximum(i, j) - lo)
    bits = max(int(i.size).bit_length(), 1)
    if n * n < 1 << (62 - bits):
        packed = np.sort((key << bits) | np.arange(i.size))
        key, order = packed >> bits, packed & ((1 << bits) - 1)
    else:  # too large to pack: sort the index instead
        order = np.argsort(key)
        key = key[order]
    t = np.flatnonzero(key[1:] == key[:-1])  # (each direction of a pair is there once)
    x, y = order[t], order[t + 1]
    fwd = i[x] < j[x]
    return np.where(fwd, x, y), np.where(fwd, y, x)


@dataclass(frozen=True)
class CameraEdge:
    """Two cameras linked because some of their windows are adjacent."""

    a: str
    b: str
    kind: str  # "overlap" | "transit"
    weight: float  # strongest window pair: min(C'_ij, C'_ji)
    support: int  # adjacent window pairs
    co_occurrences: int  # sum of P over those pairs (both ways; halving makes it a floor)
    transit_s: float | None = None
    # kind "transit": per direction "a->b" / "b->a" median_s, p10_s, p90_s, support, z, ratio
    transit: dict[str, dict[str, object]] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "a": self.a,
            "b": self.b,
            "kind": self.kind,
            "weight": round(self.weight, 4),
            "support": self.support,
            "co_occurrences": self.co_occurrences,
            "transit_s": self.transit_s,
        }
        if self.transit is not None:
            out["transit"] = self.transit
        return out


def camera_edges(network: Network, edges: WindowEdges) -> list[CameraEdge]:
    """Cameras are linked when any of their windows are adjacent (the overlap topology)."""
    cam = network.window_camera
    ca, cb = cam[edges.i], cam[edges.j]
    lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
    strength = np.minimum(edges.c_ij, edges.c_ji)
    keys = lo.astype(np.int64) * network.n_cameras + hi
    # Grouped by sorting: a mask per camera pair was quadratic (seconds at 20k window edges).
    pairs, inverse = np.unique(keys, return_inverse=True)
    weight = np.zeros(pairs.size)
    np.maximum.at(weight, inverse, strength)
    support = np.bincount(inverse, minlength=pairs.size)
    co = np.bincount(inverse, weights=edges.p_ij + edges.p_ji, minlength=pairs.size)
    out: list[CameraEdge] = []
    for key, w, n, p in zip(
        pairs.tolist(), weight.tolist(), support.tolist(), co.tolist(), strict=True
    ):
        a, b = divmod(key, network.n_cameras)
        out.append(
            CameraEdge(
                a=network.cameras[a],
                b=network.cameras[b],
                kind="overlap",
                weight=float(w),
                support=int(n),
                co_occurrences=int(p),
            )
        )
    return out
