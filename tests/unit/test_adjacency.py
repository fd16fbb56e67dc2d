"""The adjacency index refreshed from changed rows equals a full scan, at every step."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camtopo.core.adjacency import AdjacencyIndex
from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import window_edges
from camtopo.core.grid import Grid, Network
from camtopo.core.ticks import OccupancyBuffer
from tests.unit.test_exclusion_engines import random_trace

GRID = Grid(cols=3, rows=2, width=30, height=20)


def full_scan(fast: FastExclusion, c_star: float, o_ref: float) -> set[tuple[int, int]]:
    e = window_edges(fast, c_star, o_ref)
    return set(zip(e.i.tolist(), e.j.tolist(), strict=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_cams=st.integers(2, 5),
    cut=st.integers(1, 40),
    busy=st.floats(0.2, 2.0),
    limit=st.sampled_from([8, 256]),
    checkpoint_every=st.integers(1, 4),
)
def test_refreshed_index_equals_full_scan(seed, n_cams, cut, busy, limit, checkpoint_every):
    net = Network.uniform([f"c{k}" for k in range(n_cams)], GRID)
    trace = random_trace(seed, n_cams, 300, GRID, 0.05, busy)
    # Pruning and a small count limit make rows change in every way the engine has.
    fast = FastExclusion(net, count_limit=limit, prune=True, prune_min_opportunities=4,
                         prune_interval=64, activity_gate=3, readmit_after=4)  # fmt: skip
    index = AdjacencyIndex(fast, 0.7, 5.0)
    buf = OccupancyBuffer(net, 1, 1)
    releases = 0
    for t in sorted(trace):
        for c, ws in trace[t].items():
            buf.add(c, t, ws)
        if t % cut == 0:
            for block in buf.release(t - 1):
                fast.update(block)
            releases += 1
            if releases % checkpoint_every == 0:
                fast.take_dirty()  # a checkpoint took the rows: the index must still see them
            index.refresh()
            i, j = index.pairs()
            assert set(zip(i.tolist(), j.tolist(), strict=True)) == full_scan(fast, 0.7, 5.0)
    assert len(index) == len(full_scan(fast, 0.7, 5.0))
    # The column the scans skip segments by is every live segment's largest P.
    live_i, live_c = np.nonzero(fast.slot >= 0)
    for i, c in zip(live_i.tolist(), live_c.tolist(), strict=True):
        seg = fast.pool[fast.slot[i, c]]
        assert seg[-1] == seg[: fast.seg_len[c]].max(), (i, c)


def test_imported_rows_are_rescanned():
    net = Network.uniform(["a", "b"], GRID)
    src = FastExclusion(net, count_limit=256)
    buf = OccupancyBuffer(net, 0, 0)
    for t in range(60):  # a:0 and b:1 always together: adjacent both ways
        buf.add(0, t, [0])
        buf.add(1, t, [1])
    for block in buf.flush():
        src.update(block)
    dst = FastExclusion(net, count_limit=256)
    index = AdjacencyIndex(dst, 0.8, 20.0)
    index.refresh()
    assert len(index) == 0
    for i in np.flatnonzero(src.dirty):
        dst.import_row(int(i), *src.export_row(int(i)))
    dst.dirty[:] = False  # as after loading a checkpoint
    edges = index.window_edges()
    assert list(zip(edges.i.tolist(), edges.j.tolist(), strict=True)) == [(0, GRID.n_windows + 1)]
