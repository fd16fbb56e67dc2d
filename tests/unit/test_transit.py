"""Transit-link estimator on synthetic event streams (pure core, no I/O)."""

from __future__ import annotations

import numpy as np

from camtopo.core.evidence import CameraEdge
from camtopo.core.grid import Grid, Network
from camtopo.core.ticks import OccupancyBuffer
from camtopo.core.topology import merge_transit
from camtopo.core.transit import DirectedTransit, TransitEstimator, TransitParams, mark_indirect

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


def test_a_full_source_gives_released_slots_to_the_pair_the_screen_ranks_best() -> None:
    # Camera 0's zone has 2 slots; 40 unrelated busy cameras take them before camera 41,
    # whose visitors follow camera 0's by 12 s, has any arrival (it opens after 5 minutes).
    rng = np.random.default_rng(2)
    duration = 3600.0
    a = _visits(rng, 0.05, duration)
    follow = a[(a > 300) & (rng.random(len(a)) < 0.7)] + 2.0
    follow = follow + rng.normal(12.0, 1.0, len(follow))
    visits = {
        0: list(a),
        41: list(np.sort(np.concatenate([follow, 300 + _visits(rng, 0.03, 3300)]))),
    }
    for cam in range(1, 41):
        visits[cam] = list(_visits(rng, 0.05, duration))
    params = TransitParams(tick_s=1 / FPS, max_dest=2)
    est = _run(_network(42), visits, duration, params)
    taken = est.slot_dst[: params.max_dest]  # camera 0's zone 0 (window 5 is in zone 0)
    assert 41 * est.zones_per_camera in taken
    assert [(d.src, d.dst) for d in est.directed() if d.src == 0] == [(0, 41)]
    assert est.counters()["untracked_pair_updates"] > 0  # the cap did bind


def test_slot_maintenance_is_spread_over_the_blocks_one_group_of_sources_each() -> None:
    # Every source full of weak slots, each with one promising untracked pair: a block boundary
    # hands over the slots of its group only, and a full turn of boundaries reaches all.
    network = _network(12)
    params = TransitParams(tick_s=1 / FPS, max_dest=2)
    est = TransitEstimator(network, params)
    n, zpc = est.n_zones, est.zones_per_camera
    for a in range(n):
        cam = a // zpc
        for k, b in enumerate(((cam + 1) % 12 * zpc, (cam + 2) % 12 * zpc)):
            est.slot_dst[a * 2 + k], est.slot_of[a, b] = b, a * 2 + k
        promising = (cam + 5) % 12 * zpc
        est.coarse_wide[promising * n + a] = 200
        est.coarse[promising * n + a, 2] = 60  # chance: 200 / 6 per coarse bin
    est.slot_free[:] = 0
    groups = est.maintain_groups
    assert groups == 10  # 60 s of 64-tick blocks
    start = 100 * 64  # past min_slot_age (600 s = 6,000 ticks)
    before = est.slot_dst.copy()
    est._maintain(start)
    moved = np.flatnonzero((est.slot_dst != before).reshape(n, 2).any(axis=1))
    assert list(moved) == list(range((start // 64) % groups, n, groups))
    for k in range(1, groups):
        est._maintain(start + k * 64)
    assert (est.slot_dst != before).reshape(n, 2).any(axis=1).all()
    assert est.released == n  # one promising pair per source: one slot each


def _link(src: int, dst: int, median: float, z: float = 8.0) -> DirectedTransit:
    return DirectedTransit(src, dst, z, 60.0, 20.0, median, median * 0.8, median * 1.2)


def test_walk_through_a_middle_camera_marks_the_long_link_indirect() -> None:
    links = [_link(0, 1, 10.0), _link(1, 2, 12.0), _link(0, 2, 27.0)]
    out = {(d.src, d.dst): d.indirect for d in mark_indirect(links, {}, set(), 1.1, 1.0)}
    assert out == {(0, 1): False, (1, 2): False, (0, 2): True}
    # Legs that add up to more than the direct lag do not explain it.
    links = [_link(0, 1, 20.0), _link(1, 2, 20.0), _link(0, 2, 27.0)]
    assert not any(d.indirect for d in mark_indirect(links, {}, set(), 1.1, 1.0))


def test_of_two_overlapping_cameras_only_the_farther_ones_link_is_indirect() -> None:
    links = [_link(0, 2, 20.0), _link(1, 2, 15.0)]  # cameras 0 and 1 overlap
    out = {(d.src, d.dst): d.indirect for d in mark_indirect(links, {}, {(0, 1)}, 1.1, 1.0)}
    assert out == {(0, 2): True, (1, 2): False}


def test_a_walk_into_an_overlap_explains_the_farther_cameras_link() -> None:
    # Cameras 1 and 2 overlap; walkers from 0 enter 1 first, then 2 (all seen as links).
    links = [_link(0, 1, 5.0), _link(0, 2, 5.8)]
    out = {(d.src, d.dst): d.indirect for d in mark_indirect(links, {}, {(1, 2)}, 1.1, 1.0, 0.5)}
    assert out == {(0, 1): False, (0, 2): True}
    # Medians closer than the margin: which one is direct is unclear, both stay.
    links = [_link(0, 1, 5.0), _link(0, 2, 5.3)]
    assert not any(d.indirect for d in mark_indirect(links, {}, {(1, 2)}, 1.1, 1.0, 0.5))
    # A weak leg (not a link itself) explains it as well.
    out = {
        (d.src, d.dst): d.indirect
        for d in mark_indirect(links[1:], {(0, 1): 4.0}, {(1, 2)}, 1.1, 1.0, 0.5)
    }
    assert out == {(0, 2): True}


def test_people_seen_in_two_views_at_once_make_an_overlap_leg() -> None:
    rng = np.random.default_rng(11)
    duration = 3600.0
    a = _visits(rng, 0.04, duration)
    # Camera 1 sees 60% of camera 0's visitors from 1 s after they appear until 1 s after
    # they leave camera 0 (arrival at 1 precedes departure from 0: negative lags).
    b = np.sort(np.concatenate([a[rng.random(len(a)) < 0.6] + 1.0, _visits(rng, 0.03, duration)]))
    c = _visits(rng, 0.05, duration)
    params = TransitParams(tick_s=1 / FPS, max_dest=4)
    est = _run(_network(3), {0: list(a), 1: list(b), 2: list(c)}, duration, params, dwell_s=4.0)
    assert est.overlap_like() == {(0, 1)}


def test_merge_keeps_overlap_pairs_and_reports_each_direction() -> None:
    network = _network(3)
    overlap = [CameraEdge("cam0", "cam1", "overlap", 0.9, 3, 100)]
    edges = merge_transit(network, overlap, [_link(1, 0, 5.0), _link(2, 0, 30.0)])
    assert [(e.a, e.b, e.kind) for e in edges] == [
        ("cam0", "cam1", "overlap"),
        ("cam0", "cam2", "transit"),
    ]
    transit = edges[1].to_json()
    assert transit["transit_s"] == 30.0
    assert set(transit["transit"]) == {"b->a"}  # one-way: only cam2 -> cam0
    assert transit["transit"]["b->a"]["p10_s"] == 24.0


def _blocks(network: Network, visits: dict[int, list[float]], duration_s: float) -> list:
    """The padded blocks of ``_run``'s occupancy (each visit: window 5 for 2 s)."""
    n_ticks = int(duration_s * FPS)
    occ = np.zeros((n_ticks, network.n_cameras), dtype=bool)
    for cam, starts in visits.items():
        for s in starts:
            a = int(s * FPS)
            occ[a : min(a + 2 * FPS, n_ticks), cam] = True
    buf = OccupancyBuffer(network, tolerance=0)
    everyone = np.ones(network.n_cameras, dtype=bool)
    blocks = []
    for t in range(n_ticks):
        cams = np.flatnonzero(occ[t])
        buf.add_tick(t, everyone, cams, np.full(len(cams), 5))
        if t % 640 == 639:
            blocks.extend(buf.release(t + 1))
    blocks.extend(buf.flush())
    return blocks


def test_state_saved_and_loaded_midway_continues_exactly() -> None:
    import io

    rng = np.random.default_rng(11)
    duration = 2400.0
    a = _visits(rng, 0.05, duration)
    follow = a[rng.random(len(a)) < 0.7] + 2.0
    follow = follow + rng.normal(12.0, 1.0, len(follow))
    visits = {0: list(a), 1: list(np.sort(np.concatenate([follow, _visits(rng, 0.03, duration)])))}
    for cam in range(2, 6):
        visits[cam] = list(_visits(rng, 0.06, duration))
    network = _network(6)
    # Few slots and a short slot age, so that slot release (maintenance) happens in both halves.
    params = TransitParams(tick_s=1 / FPS, max_dest=3, min_slot_age_s=120, maintain_every_s=30)
    blocks = _blocks(network, visits, duration)
    whole = TransitEstimator(network, params)
    for block in blocks:
        whole.update(block)

    first = TransitEstimator(network, params)
    half = len(blocks) // 2 + 7  # not on a maintenance boundary
    for block in blocks[:half]:
        first.update(block)
    buffer = io.BytesIO()  # what a checkpoint store would hold: plain arrays and numbers
    np.savez(buffer, **first.state())
    buffer.seek(0)
    with np.load(buffer) as saved:
        state = {k: saved[k] for k in saved.files}
    second = TransitEstimator.from_state(network, params, state)
    for block in blocks[half:]:
        second.update(block)

    assert whole.counters()["slots_released"] > 0
    assert second.counters() == whole.counters()
    names = ("hist", "wide", "coarse", "coarse_wide", "slot_dst", "slot_of", "slot_born",
             "dep_t", "arr_t", "last_occ")  # fmt: skip
    assert second.now == whole.now
    for name in names:
        np.testing.assert_array_equal(getattr(second, name), getattr(whole, name), err_msg=name)
    assert second.directed(include_indirect=True) == whole.directed(include_indirect=True)
    assert whole.counters()["pair_updates"] > 10_000


def test_state_of_another_network_is_refused() -> None:
    small = TransitEstimator(_network(3), TransitParams(tick_s=1 / FPS, max_dest=2))
    big = TransitEstimator(_network(4), TransitParams(tick_s=1 / FPS, max_dest=2))
    try:
        big.load_state(small.state())
    except ValueError as exc:
        assert "shape" in str(exc)
    else:
        raise AssertionError("a state of another network was accepted")
