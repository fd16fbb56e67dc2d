"""Window adjacency kept up to date from the rows that changed, not rescanned whole.

Whether windows i and j are adjacent (C'_ij > C* and C'_ji > C*, paper eq. 2) depends on rows
i and j of the counts only. So after a range, only pairs with an endpoint in a changed row can
change, and a scan of those rows finds every adjacent pair they are part of. A full scan reads
every (window, camera) slot — 10^8 of them at 1,000 cameras — and took seconds per topology
update in the streaming processor; a refresh costs the changed rows only.
"""

from __future__ import annotations

import numpy as np

from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import WindowEdges, edges_of_pairs


class AdjacencyIndex:
    """The adjacent pairs of a :class:`FastExclusion`, refreshed from its changed rows."""

    def __init__(self, counts: FastExclusion, c_star: float, o_ref: float) -> None:
        self.counts = counts
        self.c_star = c_star
        self.o_ref = o_ref
        self._neighbours: dict[int, set[int]] = {}
        self.rows_scanned = 0  # rows read by the last refresh

    def refresh(self) -> None:
        """Re-scan the rows changed since the last refresh (all rows the first time)."""
        rows = self.counts.take_changed()
        self.rows_scanned = int(rows.size)
        if rows.size == 0:
            return
        nbrs = self._neighbours
        for i in rows.tolist():
            for j in nbrs.pop(i, ()):
                if j in nbrs:
                    nbrs[j].discard(i)
                    if not nbrs[j]:
                        del nbrs[j]
        ii, jj = self.counts.adjacent_pairs(self.c_star, self.o_ref, rows=rows)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            nbrs.setdefault(i, set()).add(j)
            nbrs.setdefault(j, set()).add(i)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j), i < j, sorted."""
        flat = [(i, j) for i, js in self._neighbours.items() for j in js if i < j]
        flat.sort()
        arr = np.array(flat, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def window_edges(self) -> WindowEdges:
        self.refresh()
        i, j = self.pairs()
        return edges_of_pairs(self.counts, i, j, self.o_ref)

    def __len__(self) -> int:
        return sum(len(js) for js in self._neighbours.values()) // 2


class HalfEdgeIndex:
    """Per row, the windows j with C'_ij > C* — the half of the adjacency test a worker that
    owns only some rows can make; :func:`camtopo.core.evidence.mutual_edges` joins the halves
    of all workers. Refreshed from the changed rows like :class:`AdjacencyIndex`."""

    def __init__(self, counts: FastExclusion, c_star: float, o_ref: float) -> None:
        self.counts = counts
        self.c_star = c_star
        self.o_ref = o_ref
        self._out: dict[int, np.ndarray] = {}

    def refresh(self, among: np.ndarray | None = None) -> np.ndarray:
        """Re-scan the rows changed since the last refresh (only ``among``, int row indices,
        if given); returns them."""
        rows = self.counts.take_changed(among)
        if rows.size == 0:
            return rows
        for i in rows.tolist():
            self._out.pop(i, None)
        ii, jj = self.counts.half_pairs(self.c_star, self.o_ref, rows)
        if ii.size:
            starts = np.flatnonzero(np.r_[True, ii[1:] != ii[:-1]])
            for i, js in zip(ii[starts].tolist(), np.split(jj, starts[1:]), strict=True):
                self._out[i] = js
        return rows

    def half(self, rows: np.ndarray) -> np.ndarray:
        """int64 (4, n): i, j, O_ij, P_ij of the half-edges of ``rows``."""
        have = [i for i in np.asarray(rows).tolist() if i in self._out]
        if not have:
            return np.zeros((4, 0), dtype=np.int64)
        i = np.concatenate([np.full(self._out[r].size, r, np.int64) for r in have])
        j = np.concatenate([self._out[r] for r in have])
        o, p = self.counts.pair_counts(i, j)
        return np.stack([i, j, o, p])
