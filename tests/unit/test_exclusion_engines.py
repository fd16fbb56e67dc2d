"""The fast engine against the paper-faithful dense reference, on random traces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import c_prime, window_edges
from camtopo.core.grid import Grid, Network
from camtopo.core.reference import DenseExclusion, padded_occupancy
from camtopo.core.ticks import OccupancyBuffer


def random_trace(seed: int, n_cams: int, n_ticks: int, grid: Grid, p_missing: float, busy: float):
    """tick -> {camera: windows}, with correlated cameras so that some pairs stay adjacent."""
    rng = np.random.default_rng(seed)
    trace: dict[int, dict[int, list[int]]] = {}
    for t in range(n_ticks):
        frame: dict[int, list[int]] = {}
        for c in range(n_cams):
            if rng.random() < p_missing:
                continue
            k = rng.poisson(busy)
            frame[c] = sorted(set(rng.integers(0, grid.n_windows, size=k).tolist()))
        # camera 1 sees camera 0's window 0 as its window 1: a true overlap
        if 0 in frame and 1 in frame and (0 in frame[0] or 1 in frame[1]):
            frame[0] = sorted(set(frame[0]) | {0})
            frame[1] = sorted(set(frame[1]) | {1})
        trace[t] = frame
    return trace


def run_fast(network: Network, trace, tol: int, radius: int, cut: int = 0, **kw) -> FastExclusion:
    """Feed the trace through the buffer; ``cut`` > 0 releases every ``cut`` ticks (streaming)."""
    buf = OccupancyBuffer(network, tol, radius)
    fast = FastExclusion(network, **kw)
    for t in sorted(trace):
        for c, ws in trace[t].items():
            buf.add(c, t, ws)
        if cut and t % cut == 0:
            for block in buf.release(t - tol):
                fast.update(block)
    for block in buf.flush():
        fast.update(block)
    return fast


def run_dense(network: Network, trace, tol: int, radius: int, limit: int = 256) -> DenseExclusion:
    dense = DenseExclusion(network, limit)
    for t in sorted(trace):
        dense.update_plain(trace, t, tol, radius)
    return dense


def all_pairs(network: Network):
    n = network.n_windows
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return i.ravel(), j.ravel()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    n_cams=st.integers(2, 4),
    n_ticks=st.integers(1, 200),
    tol=st.integers(0, 3),
    radius=st.integers(0, 1),
    p_missing=st.sampled_from([0.0, 0.05, 0.3]),
    busy=st.sampled_from([0.3, 1.0, 3.0]),
    cut=st.sampled_from([0, 1, 7, 20]),
    limit=st.sampled_from([256, 64, 1000]),
)
def test_fast_engine_counts_equal_dense_reference(
    seed, n_cams, n_ticks, tol, radius, p_missing, busy, cut, limit
):
    grid = Grid(cols=4, rows=3)
    network = Network.uniform([f"c{k}" for k in range(n_cams)], grid)
    trace = random_trace(seed, n_cams, n_ticks, grid, p_missing, busy)
    fast = run_fast(network, trace, tol, radius, cut, count_limit=limit)
    dense = run_dense(network, trace, tol, radius, limit)
    i, j = all_pairs(network)
    o_f, p_f = fast.pair_counts(i, j)
    o_d, p_d = dense.pair_counts(i, j)
    np.testing.assert_array_equal(o_f, o_d)
    np.testing.assert_array_equal(p_f, p_d)
    np.testing.assert_allclose(c_prime(p_f, o_f, 20), c_prime(p_d, o_d, 20))


def test_halving_on_overflow_keeps_counts_equal_and_bounded():
    # Long and busy enough that O passes 255 many times over.
    grid = Grid(cols=3, rows=2)
    network = Network.uniform(["a", "b", "c"], grid)
    trace = random_trace(7, 3, 3000, grid, 0.02, 2.0)
    fast = run_fast(network, trace, 1, 1, cut=13)
    dense = run_dense(network, trace, 1, 1)
    i, j = all_pairs(network)
    o_f, p_f = fast.pair_counts(i, j)
    o_d, p_d = dense.pair_counts(i, j)
    assert o_d.max() <= 255 and (p_d <= o_d).all()
    assert (o_d >= 128).any(), "the trace must overflow for this test to mean anything"
    np.testing.assert_array_equal(o_f, o_d)
    np.testing.assert_array_equal(p_f, p_d)


def test_true_overlap_is_adjacent_and_chance_is_not():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform(["c0", "c1", "c2"], grid)
    trace = random_trace(3, 3, 4000, grid, 0.02, 0.4)
    fast = run_fast(network, trace, 1, 0)
    edges = window_edges(fast, 0.8, 20)
    pairs = {
        (network.label(int(a)), network.label(int(b)))
        for a, b in zip(edges.i, edges.j, strict=False)
    }
    assert ("c0:0", "c1:1") in pairs
    assert all(a.split(":")[0] != b.split(":")[0] for a, b in pairs)
    assert len(pairs) <= 3  # random windows are refuted


def test_missing_data_gives_no_opportunities():
    grid = Grid(cols=2, rows=1)
    network = Network.uniform(["a", "b"], grid)
    # b is offline throughout: a's occupancy can never be compared with it.
    trace = {t: {0: [0]} for t in range(100)}
    fast = run_fast(network, trace, 2, 1)
    o, p = fast.pair_counts(np.array([0, 0]), np.array([2, 3]))
    assert (o == 0).all() and (p == 0).all()


def test_opportunity_needs_data_for_the_whole_padding_window():
    grid = Grid(cols=2, rows=1)
    network = Network.uniform(["a", "b"], grid)
    trace = {t: {0: [0], 1: []} for t in range(20)}
    del trace[10][1]  # one missing frame of b removes the opportunities whose padding reads it
    tol = 2
    fast = run_fast(network, trace, tol, 0)
    o, _ = fast.pair_counts(np.array([0]), np.array([2]))
    # ticks 0..19 minus those within tol of the edges or of the gap
    expected = sum(1 for t in range(20) if padded_occupancy(network, trace, t, tol, 0)[1][1])
    assert o[0] == expected == 20 - 2 * tol - (2 * tol + 1)


def test_pruning_keeps_true_overlap_and_bounds_segments():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform([f"c{k}" for k in range(4)], grid)
    trace = random_trace(11, 4, 6000, grid, 0.02, 0.6)
    exact = run_fast(network, trace, 1, 0)
    pruned = run_fast(network, trace, 1, 0, prune=True, prune_interval=640)
    assert pruned.stats().live_segments < exact.stats().live_segments
    assert pruned.stats().pruned_segments > 0
    e_exact, e_pruned = window_edges(exact), window_edges(pruned)
    assert set(zip(e_pruned.i.tolist(), e_pruned.j.tolist(), strict=False)) == set(
        zip(e_exact.i.tolist(), e_exact.j.tolist(), strict=False)
    )


def test_activity_gate_starts_rows_late_but_keeps_ratios_unbiased():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform(["c0", "c1", "c2"], grid)
    trace = random_trace(5, 3, 1200, grid, 0.0, 0.5)  # no overflow: O only grows
    exact = run_fast(network, trace, 1, 0)
    gated = run_fast(network, trace, 1, 0, activity_gate=5)
    i, j = all_pairs(network)
    o_e, _p_e = exact.pair_counts(i, j)
    o_g, p_g = gated.pair_counts(i, j)
    assert (o_g <= o_e).all() and (o_g < o_e).any()
    assert (p_g <= o_g).all()


def test_pool_budget_refuses_segments_without_breaking_p_le_o():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform([f"c{k}" for k in range(4)], grid)
    trace = random_trace(13, 4, 500, grid, 0.0, 2.0)
    capped = run_fast(network, trace, 1, 0, max_pool_bytes=12 * 20, initial_segments=8)
    assert capped.pool.shape[0] <= 20
    assert capped.stats().refused_allocations > 0
    i, j = all_pairs(network)
    o, p = capped.pair_counts(i, j)
    assert (p <= o).all()


@pytest.mark.parametrize("engine_kw", [{}, {"prune": True, "activity_gate": 3}])
def test_row_export_import_round_trip(engine_kw):
    grid = Grid(cols=4, rows=3)
    network = Network.uniform(["c0", "c1", "c2"], grid)
    trace = random_trace(17, 3, 1500, grid, 0.05, 1.0)
    src = run_fast(network, trace, 1, 1, **engine_kw)
    dst = FastExclusion(network, **engine_kw)
    for row in range(network.n_windows):
        dst.import_row(row, *src.export_row(row))
    i, j = all_pairs(network)
    np.testing.assert_array_equal(src.pair_counts(i, j)[0], dst.pair_counts(i, j)[0])
    np.testing.assert_array_equal(src.pair_counts(i, j)[1], dst.pair_counts(i, j)[1])
    np.testing.assert_array_equal(src.slot < 0, dst.slot < 0)


def test_rows_beyond_the_pool_budget_are_dropped_on_import_not_crashed_on():
    """A worker taking over more rows than its budget holds keeps what fits; the rest of the
    pairs restart from zero, counted, as a refused allocation would."""
    grid = Grid(cols=4, rows=3)
    network = Network.uniform(["c0", "c1", "c2"], grid)
    src = run_fast(network, random_trace(17, 3, 1500, grid, 0.05, 1.0), 1, 1)
    live = int((src.slot >= 0).sum())
    dst = FastExclusion(network, max_pool_bytes=(live // 2) * 13)  # 12 windows + max, uint8
    for row in range(network.n_windows):
        dst.import_row(row, *src.export_row(row))
    kept = int((dst.slot >= 0).sum())
    assert 0 < kept < live and dst.dropped_on_import == live - kept
    assert dst.refused_total == live - kept
    i, j = all_pairs(network)
    o, p = dst.pair_counts(i, j)
    assert (p <= o).all()
    dropped = (src.slot >= 0) & (dst.slot < 0)
    assert (dst.O[dropped] == 0).all()  # those pairs start again


def moving_trace(seed: int, n_ticks: int, switch: int, grid: Grid):
    """Window c0:0 overlaps c1:1 until ``switch``, then c2:5 (camera c0 was moved)."""
    rng = np.random.default_rng(seed)
    trace = {}
    for t in range(n_ticks):
        frame = {c: sorted(set(rng.integers(0, grid.n_windows, rng.poisson(0.4)).tolist()))
                 for c in range(3)}  # fmt: skip
        partner, window = (1, 1) if t < switch else (2, 5)
        if 0 in frame[0] or window in frame[partner]:
            frame[0] = sorted(set(frame[0]) | {0})
            frame[partner] = sorted(set(frame[partner]) | {window})
        trace[t] = frame
    return trace


def test_topology_follows_a_moved_camera():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform(["c0", "c1", "c2"], grid)
    trace = moving_trace(23, 16_000, 6_000, grid)
    engine = run_fast(network, trace, 1, 0, count_limit=256, prune=True, readmit_after=64,
                      prune_min_opportunities=16, prune_interval=640)  # fmt: skip
    edges = window_edges(engine, 0.9, 20)
    pairs = {
        (network.label(int(a)), network.label(int(b)))
        for a, b in zip(edges.i, edges.j, strict=True)
    }
    assert ("c0:0", "c2:5") in pairs
    assert ("c0:0", "c1:1") not in pairs


def test_pruned_segments_are_readmitted_with_fresh_counts():
    grid = Grid(cols=4, rows=3)
    network = Network.uniform([f"c{k}" for k in range(3)], grid)
    trace = random_trace(29, 3, 4000, grid, 0.0, 0.6)
    engine = FastExclusion(network, prune=True, prune_min_opportunities=16, readmit_after=32)
    buf = OccupancyBuffer(network, 1, 0)
    for t in sorted(trace):
        for c, ws in trace[t].items():
            buf.add(c, t, ws)
    readmitted = 0
    for block in buf.flush():
        engine.update(block)
        readmitted += engine.prune_pass()[1]
    assert engine.pruned_total > 0
    assert readmitted > 0
