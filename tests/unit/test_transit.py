"""Transit-link estimator on synthetic event streams (pure core, no I/O)."""

from __future__ import annotations

import numpy as np

from camtopo.core.grid import Grid, Network
from camtopo.core.ticks import OccupancyBuffer
from camtopo.core.transit import TransitEstimator, TransitParams

FPS = 10


def _network(n: int) -> Network:
    return Network.uniform([f"cam{i}" for i in range(n)], Grid(4, 3, 80, 60), fps=FPS)


def _visits(rng: np.random.Generator, rate_per_s: float, duration_s: float) -> np.ndarray:
    """Poisson visit start times (s)."""
    n = rng.poisson(rate_per_s * duration_s)
    return np.sort(rng.uniform(0, duration_s, n))


def _run(
    network: Network,
    visits: dict[int, list[float]],
    duration_s: float,
    params: TransitParams,
    dwell_s: float = 2.0,
    window: int = 5,
) -> TransitEstimator:
    """Each visit occupies ``window`` of its camera for ``dwell_s``; feed the blocks."""
    n_ticks = int(duration_s * FPS)
    occ = np.zeros((n_ticks, network.n_cameras), dtype=bool)
    for cam, starts in visits.items():
        for s in starts:
            a = int(s * FPS)
            occ[a : min(a + int(dwell_s * FPS), n_ticks), cam] = True
    buf = OccupancyBuffer(network, tolerance=0)
    est = TransitEstimator(network, params)
    everyone = np.ones(network.n_cameras, dtype=bool)
    for t in range(n_ticks):
        cams = np.flatnonzero(occ[t])
        buf.add_tick(t, everyone, cams, np.full(len(cams), window))
        if t % 640 == 639:
            for block in buf.release(t + 1):
                est.update(block)
    for block in buf.flush():
        est.update(block)
    return est


def test_follower_stream_gives_one_way_link_with_its_transit_time() -> None:
    rng = np.random.default_rng(3)
    duration = 3600.0
    a = _visits(rng, 0.05, duration)
    # B's arrivals follow A's departures (visit end = start + 2 s) by 12 s +- 1 s, for 70% of
    # them; B also has unrelated visitors of its own.
    follow = a[rng.random(len(a)) < 0.7] + 2.0
    follow = follow + rng.normal(12.0, 1.0, len(follow))
    b = np.sort(np.concatenate([follow, _visits(rng, 0.03, duration)]))
    c = _visits(rng, 0.05, duration)  # unrelated camera
    params = TransitParams(tick_s=1 / FPS, max_dest=4)
    est = _run(_network(3), {0: list(a), 1: list(b), 2: list(c)}, duration, params)
    links = {(d.src, d.dst): d for d in est.directed()}
    assert (0, 1) in links
    assert abs(links[(0, 1)].median_s - 12.0) < 1.0
    assert links[(0, 1)].p10_s < links[(0, 1)].median_s < links[(0, 1)].p90_s
    assert (1, 0) not in links
    assert not {k for k in links if 2 in k}


def test_unrelated_busy_streams_give_no_link() -> None:
    rng = np.random.default_rng(5)
    duration = 3600.0
    # Busy cameras whose rates surge together (x4 for 5 minutes every 20 minutes).
    visits: dict[int, list[float]] = {}
    for cam in range(5):
        base = _visits(rng, 0.08, duration)
        surge = np.concatenate([_visits(rng, 0.25, 300.0) + s for s in (600, 1800, 3000)])
        visits[cam] = list(np.sort(np.concatenate([base, surge])))
    est = _run(_network(5), visits, duration, TransitParams(tick_s=1 / FPS, max_dest=8))
    assert est.counters()["arrivals"] > 1000
    assert est.directed(include_indirect=True) == []


def test_memory_stays_bounded_over_a_long_stream() -> None:
    rng = np.random.default_rng(7)
    network = _network(12)
    params = TransitParams(tick_s=1 / FPS, max_dest=3, ring_capacity=256, min_slot_age_s=60)
    est = TransitEstimator(network, params)
    before = est.memory_bytes()
    buf = OccupancyBuffer(network, tolerance=0)
    everyone = np.ones(network.n_cameras, dtype=bool)
    n_ticks = 3 * 3600 * FPS
    busy = rng.random((n_ticks // 20, network.n_cameras)) < 0.3  # 2 s slots
    for t in range(n_ticks):
        cams = np.flatnonzero(busy[t // 20])
        buf.add_tick(t, everyone, cams, np.full(len(cams), 5))
        if t % 640 == 639:
            for block in buf.release(t + 1):
                est.update(block)
            assert buf.held_ticks < 2000
    counters = est.counters()
    assert est.memory_bytes() == before  # all state is preallocated
    assert counters["slots_used"] <= network.n_cameras * params.max_dest
    assert counters["departures"] > 10_000
    assert counters["slots_released"] > 0  # full sources make room for other candidates
