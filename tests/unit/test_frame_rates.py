"""Cameras at their own frame rates and grids in one network (issue #20 item 3).

The network ticks at its ``fps``; each camera's frames are mapped onto those ticks by capture
time (core/ticks.py ``frame_ticks``). The fast engine fed frame by frame must count exactly
what the dense reference counts over the plain trace built from the definition
(core/reference.py ``plain_trace``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camtopo.cli import main
from camtopo.core.engine import FastExclusion
from camtopo.core.grid import Grid, Network
from camtopo.core.reference import DenseExclusion, plain_trace
from camtopo.core.ticks import (
    DuplicateFrameError,
    LateFrameError,
    OccupancyBuffer,
    capture_tick,
    frame_ticks,
)


def ticks_of(t_ms: int, fps: int, rate: int) -> list[int]:
    return list(range(*frame_ticks(t_ms, fps, rate)))


# --- one conversion per test ------------------------------------------------------------------
def test_a_camera_at_the_network_rate_gives_one_tick_per_frame_halves_rounded_up():
    assert [ticks_of(t, 10, 10) for t in (0, 49, 50, 149, 150, -50, -51)] == [
        [0], [0], [1], [1], [2], [0], [-1],
    ]  # fmt: skip


def test_a_25_fps_cameras_frames_fall_in_the_tick_they_were_captured_in():
    # 10 fps ticks (100 ms): 25 fps frames every 40 ms, two or three to a tick, none dropped
    frames = [0, 40, 80, 120, 160, 200, 240, 280]
    assert [ticks_of(t, 10, 25) for t in frames] == [[0], [0], [1], [1], [2], [2], [2], [3]]


def test_a_15_fps_camera_on_10_fps_ticks_covers_every_tick():
    frames = [round(n * 1000 / 15) for n in range(30)]  # two seconds
    ticks = [ticks_of(t, 10, 15) for t in frames]
    assert all(len(k) == 1 for k in ticks)
    assert sorted({k[0] for k in ticks}) == list(range(20))


def test_a_slower_cameras_frame_stands_for_the_ticks_until_its_next_frame():
    # 5 fps on 10 fps ticks: each frame holds two ticks, and the frames tile the ticks
    assert [ticks_of(t, 10, 5) for t in (0, 200, 400)] == [[0, 1], [2, 3], [4, 5]]
    # 15 fps on 25 fps ticks (40 ms): 1, 2, 2, 1 ... ticks per frame, each tick once
    frames = [round(n * 1000 / 15) for n in range(15)]
    ticks = [k for t in frames for k in ticks_of(t, 25, 15)]
    assert ticks == list(range(25))


def test_capture_tick_is_exact_where_floats_are_not():
    # 100 ms is 1.5 ticks of a 15 fps network: it rounds up, whatever 1000 / 15 rounds to
    assert capture_tick(100, 15) == 2
    assert capture_tick(-100, 15) == -1


# --- the buffer -------------------------------------------------------------------------------
def mixed(rates: dict[str, int], fps: int = 10, grids: dict[str, Grid] | None = None) -> Network:
    grids = grids or {}
    cams = tuple(rates)
    return Network(cams, tuple(grids.get(c, Grid(4, 3)) for c in cams), fps, tuple(rates.values()))


def blocks(buf: OccupancyBuffer):
    return list(buf.flush())


def occupied_ticks(blocks_, window: int) -> list[int]:
    out = []
    for b in blocks_:
        at = np.flatnonzero(b.occ_windows == window)
        if at.size:
            bits = int(b.occ_bits[at[0]])
            out += [b.start_tick + k for k in range(64) if bits >> k & 1]
    return out


def padded_ticks(blocks_, window: int) -> list[int]:
    out = []
    for b in blocks_:
        at = np.flatnonzero(b.pad_windows == window)
        if at.size:
            bits = int(b.pad_bits[at[0]])
            out += [b.start_tick + k for k in range(64) if bits >> k & 1]
    return out


def test_a_fast_cameras_frames_of_one_tick_are_ored_and_a_repeat_is_a_duplicate():
    net = mixed({"a": 10, "b": 25})
    buf = OccupancyBuffer(net, tolerance=0, radius=0)
    buf.add_frame(1, 0, [1])  # tick 0
    buf.add_frame(1, 40, [2])  # tick 0 too: another frame of b, OR-ed
    with pytest.raises(DuplicateFrameError, match=r"\(25 fps\) has two frames .* 40 and 59"):
        buf.add_frame(1, 59, [3])  # less than half a frame (20 ms) after b's frame at 40
    buf.add_frame(1, 61, [3])  # 21 ms after: a late frame (jitter), not a duplicate; tick 1
    buf.add_frame(1, 120, [])
    for t in (0, 100):
        buf.add_frame(0, t, [])
    out = blocks(buf)
    offset = int(net.offsets[1])
    assert occupied_ticks(out, offset + 1) == [0]
    assert occupied_ticks(out, offset + 2) == [0]
    assert occupied_ticks(out, offset + 3) == [1]


def test_a_late_frame_of_another_rate_is_refused():
    net = mixed({"a": 10, "b": 25})
    buf = OccupancyBuffer(net, tolerance=0, radius=0)
    for t in range(0, 20_000, 40):
        buf.add_frame(1, t, [])
    list(buf.release(100))
    with pytest.raises(LateFrameError):
        buf.add_frame(1, 20, [1])


def test_temporal_padding_spans_the_same_time_at_every_rate():
    """Tolerance 5 ticks = 0.5 s at 10 fps: a window occupied in one frame at 1 s is padded
    from 0.5 s to 1.5 s, whatever its camera's rate (a slower camera's frame stands for
    its whole period)."""
    net = mixed({"a": 10, "b": 25, "c": 5})
    buf = OccupancyBuffer(net, tolerance=5, radius=0)
    for cam, rate in enumerate((10, 25, 5)):
        for n in range(3 * rate):  # three seconds of frames
            t = round(n * 1000 / rate)
            buf.add_frame(cam, t, [0] if t == 1000 else [])
    out = blocks(buf)
    assert padded_ticks(out, 0) == list(range(5, 16))  # a: the frame's tick 10 +- 5
    assert padded_ticks(out, int(net.offsets[1])) == list(range(5, 16))  # b at 25 fps
    assert occupied_ticks(out, int(net.offsets[2])) == [10, 11]  # c at 5 fps: held 2 ticks
    assert padded_ticks(out, int(net.offsets[2])) == list(range(5, 17))
    # a camera is padding-available wherever its +-5 ticks have data: a and c (held) have
    # ticks 0..29, b's last frame (2960 ms) is on tick 30
    ok = [[b.start_tick + k for b in out for k in range(64) if int(b.cam_ok[c]) >> k & 1]
          for c in range(3)]  # fmt: skip
    assert ok == [list(range(5, 25)), list(range(5, 26)), list(range(5, 25))]


def test_a_missing_frame_of_a_slower_camera_is_missing_data_for_its_ticks():
    net = mixed({"a": 10, "c": 5})
    buf = OccupancyBuffer(net, tolerance=0, radius=0)
    for t in range(0, 2000, 200):
        if t != 600:
            buf.add_frame(1, t, [])
    (block,) = blocks(buf)
    ok = [block.start_tick + k for k in range(64) if int(block.cam_ok[1]) >> k & 1]
    assert ok == [k for k in range(20) if k not in (6, 7)]


def test_a_camera_with_another_grid_pads_within_its_own_grid():
    net = mixed({"a": 10, "b": 25}, grids={"b": Grid(2, 2)})
    assert net.n_windows == 12 + 4  # b's windows follow a's: 12..15
    buf = OccupancyBuffer(net, tolerance=0, radius=1)
    buf.add_frame(0, 0, [4])  # a (4 x 3): row 1, col 0
    buf.add_frame(1, 0, [3])  # b (2 x 2): row 1, col 1
    (block,) = blocks(buf)
    assert block.pad_windows.tolist() == [0, 1, 4, 5, 8, 9, 12, 13, 14, 15]


def test_a_mixed_network_ticks_at_its_own_fps():
    with pytest.raises(ValueError, match="ticks at its fps"):
        OccupancyBuffer(mixed({"a": 10, "b": 25}), tolerance=1, tick_ms=40.0)


# --- the engine against the reference on mixed-rate traces ------------------------------------
def random_frames(seed: int, net: Network, seconds: float, p_missing: float, busy: float):
    """(camera, t_ms, windows) at each camera's own rate, its clock skewed by up to
    +-0.3 s, roughly in time order (as a real network sends them); cameras 0 and 1 share a
    window (0 of camera 0 is 1 of camera 1) so some pairs stay adjacent."""
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(net.n_cameras):
        rate, skew = net.rate(c), int(rng.integers(-300, 301))
        n_windows = net.grids[c].n_windows
        for n in range(int(seconds * rate)):
            if rng.random() < p_missing:
                continue
            t = round(n * 1000 / rate)
            windows = set(rng.integers(0, n_windows, size=rng.poisson(busy)).tolist())
            if c < 2 and (t // 300) % 3 == 0:  # someone in the shared place
                windows.add(c)
            frames.append((c, t + skew, sorted(windows)))
    order = np.argsort([t + rng.uniform(0, 150) for _, t, _ in frames], kind="stable")
    return [frames[i] for i in order]


def run_fast(net: Network, frames, tol: int, radius: int, limit: int) -> FastExclusion:
    buf = OccupancyBuffer(net, tol, radius)
    fast = FastExclusion(net, count_limit=limit)
    for n, (c, t, ws) in enumerate(frames):
        buf.add_frame(c, t, ws)
        if n % 37 == 0:  # release while frames still arrive: streaming, not one batch
            for block in buf.release(capture_tick(t, net.fps) - tol - 2 * net.fps):
                fast.update(block)
    for block in buf.flush():
        fast.update(block)
    return fast


def run_dense(net: Network, frames, tol: int, radius: int, limit: int) -> DenseExclusion:
    trace = plain_trace(net, frames)
    dense = DenseExclusion(net, limit)
    for tick in range(min(trace), max(trace) + 1):
        dense.update_plain(trace, tick, tol, radius)
    return dense


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    fps=st.sampled_from([10, 25]),
    rates=st.lists(st.sampled_from([5, 10, 15, 25, 30]), min_size=2, max_size=4),
    small_grid=st.booleans(),
    tol=st.integers(0, 3),
    radius=st.integers(0, 1),
    p_missing=st.sampled_from([0.0, 0.05, 0.3]),
    busy=st.sampled_from([0.3, 2.0]),
    limit=st.sampled_from([256, 64]),
)
def test_fast_engine_on_mixed_rates_and_grids_equals_the_dense_reference(
    seed, fps, rates, small_grid, tol, radius, p_missing, busy, limit
):
    cams = tuple(f"c{k}" for k in range(len(rates)))
    grids = tuple(Grid(2, 2) if small_grid and k % 2 else Grid(4, 3) for k in range(len(rates)))
    net = Network(cams, grids, fps, tuple(rates))
    frames = random_frames(seed, net, 6.0, p_missing, busy)
    fast = run_fast(net, frames, tol, radius, limit)
    dense = run_dense(net, frames, tol, radius, limit)
    i, j = np.meshgrid(np.arange(net.n_windows), np.arange(net.n_windows), indexing="ij")
    o_f, p_f = fast.pair_counts(i.ravel(), j.ravel())
    o_d, p_d = dense.pair_counts(i.ravel(), j.ravel())
    assert o_d.sum() > 0 or p_missing > 0 or tol == 3, "the trace should give opportunities"
    np.testing.assert_array_equal(o_f, o_d)
    np.testing.assert_array_equal(p_f, p_d)


def test_the_reference_at_one_rate_is_the_plain_tick_trace():
    """At the network's rate plain_trace is one tick per frame, tick_of's: the reference the
    single-rate tests use is the same definition."""
    net = Network.uniform(["a", "b"], Grid(4, 3), fps=10)
    frames = [(0, 0, [1]), (0, 149, [2]), (1, 150, [3]), (1, -51, [])]
    assert plain_trace(net, frames) == {0: {0: {1}}, 1: {0: {2}}, 2: {1: {3}}, -1: {1: set()}}


# --- network.json and camtopo estimate ----------------------------------------------------------
def test_network_json_keeps_per_camera_rates():
    doc = {
        "grid": {"cols": 12, "rows": 9, "width": 320, "height": 240},
        "fps": 10,
        "cameras": ["a", "b", "c"],
        "camera_fps": {"b": 25, "c": 10},
    }
    net = Network.from_json(doc)
    assert [net.rate(c) for c in range(3)] == [10, 25, 10] and net.mixed_rates
    assert net.to_json()["camera_fps"] == {"b": 25}  # only the rates that differ
    assert Network.from_json(net.to_json()) == net
    same = Network.from_json({**doc, "camera_fps": {"b": 10}})
    assert not same.mixed_rates and same == Network.from_json({**doc, "camera_fps": {}})


def test_estimate_takes_a_mixed_rate_trace_without_skipping_a_frame(tmp_path, capsys):
    """15, 25 and 30 fps cameras side by side, clocks skewed and the first frames before 0:
    every frame is taken (the old code refused the network: 'mixed frame rates are not
    supported'), and the two cameras that see the same place are linked."""
    net = {
        "grid": {"cols": 4, "rows": 3, "width": 320, "height": 240},
        "fps": 10,
        "cameras": ["a", "b", "c"],
        "camera_fps": {"a": 15, "b": 25, "c": 30},
    }
    (tmp_path / "network.json").write_text(json.dumps(net))
    rng = np.random.default_rng(3)
    lines = []
    for cam, rate, skew in (("a", 15, -290), ("b", 25, 170), ("c", 30, -40)):
        for n in range(120 * rate):
            t = round(n * 1000 / rate)
            # someone in the shared place (a's window 5, b's window 6) for 0.6 s of every 2 s
            here = (t % 2000) < 600
            occ = {5 if cam == "a" else 6} if here and cam != "c" else set()
            if rng.random() < 0.02:  # a passer-by elsewhere
                occ.add(int(rng.integers(0, 12)))
            lines.append((t + skew + rng.uniform(0, 200), cam, t + skew, sorted(occ)))
    lines.sort()
    trace = tmp_path / "occupancy.jsonl"
    trace.write_text(
        "".join(json.dumps({"camera": c, "t_ms": t, "occupied": o}) + "\n" for _, c, t, o in lines)
    )
    out = tmp_path / "topology.json"
    assert main(["estimate", str(trace), "-o", str(out), "--quiet"]) == 0, capsys.readouterr()
    topo = json.loads(out.read_text())
    assert topo["input"]["frames"] == len(lines) and not topo["input"]["skipped"]
    assert topo["network"]["camera_fps"] == {"a": 15, "b": 25, "c": 30}
    assert ("a:5", "b:6") in {(e["a"], e["b"]) for e in topo["window_edges"]}
    assert [(e["a"], e["b"]) for e in topo["camera_edges"]] == [("a", "b")]


# --- the simulator ------------------------------------------------------------------------------
def test_the_simulator_sends_each_camera_at_its_own_rate(tmp_path):
    from camtopo.estimate import estimate_trace
    from camtopo.simulation import NoiseConfig, Simulation, write_scenario

    rates = [15, 25, 30, 15, 25, 30]
    sim = Simulation.from_name(
        "campus", 6, seed=1, noise=NoiseConfig.off(), camera_fps=rates, warmup_s=10
    )
    assert (sim.fps, sim.network.fps, sim.network.camera_fps) == (30, 10, tuple(rates))
    times: list[list[int]] = [[] for _ in rates]
    for tick in sim.ticks(90):  # three seconds at 30 steps a second
        for c in np.flatnonzero(tick.available):
            times[c].append(int(tick.t_ms[c]))
    for c, rate in enumerate(rates):
        assert len(times[c]) == 3 * rate  # every frame of its own, none twice
        gaps = set(np.diff(times[c]).tolist())
        assert gaps <= {1000 // rate, -(-1000 // rate)}  # a regular cadence (33 or 34 ms)

    noisy = Simulation.from_name("campus", 6, seed=2, camera_fps=rates, warmup_s=10)
    summary = write_scenario(tmp_path, noisy, 30.0, progress=False)
    net = Network.load(tmp_path / "network.json")
    assert net == noisy.network
    res = estimate_trace(tmp_path / "occupancy.jsonl", net, progress=False, moves=None)
    assert res.report.frames == summary["lines"] and not res.report.skipped


def test_the_simulator_at_one_rate_is_unchanged():
    from camtopo.simulation import Simulation

    a = Simulation.from_name("campus", 6, seed=1, warmup_s=10)
    b = Simulation.from_name("campus", 6, seed=1, warmup_s=10, camera_fps=[10] * 6)
    for x, y in zip(a.ticks(50), b.ticks(50), strict=True):
        assert x.index == y.index
        for field in ("t_ms", "available", "cam", "window"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_the_baseline_reads_cameras_at_their_own_rates(tmp_path):
    from camtopo.evaluation.baseline import read_counts

    net = mixed({"a": 10, "b": 25, "c": 5})
    lines = [
        ("a", 0, [1]), ("a", 100, [1, 2]),
        ("b", 0, [1]), ("b", 40, [1, 2, 3]), ("b", 80, []),  # ticks 0, 0, 1
        ("c", 0, [4, 5]),  # held over ticks 0 and 1
    ]  # fmt: skip
    trace = tmp_path / "occupancy.jsonl"
    trace.write_text(
        "".join(json.dumps({"camera": c, "t_ms": t, "occupied": o}) + "\n" for c, t, o in lines)
    )
    occ = read_counts(trace, net, progress=False)
    at = -occ.first_tick
    assert occ.frames == len(lines)
    assert occ.counts[:, at : at + 2].tolist() == [[1, 2], [1, 0], [2, 2]]  # b: first frame
    trace.write_text(trace.read_text() + '{"camera": "a", "t_ms": 20, "occupied": []}\n')
    with pytest.raises(ValueError, match="already has a frame at tick 0"):
        read_counts(trace, net, progress=False)  # a camera at the network's rate: a duplicate


def test_a_mixed_rate_buffer_holds_only_its_padding_span():
    net = mixed({"a": 10, "b": 25, "c": 5})
    buf = OccupancyBuffer(net, tolerance=5, radius=1)
    for second in range(60):
        for cam, rate in enumerate((10, 25, 5)):
            for n in range(rate):
                buf.add_frame(cam, second * 1000 + round(n * 1000 / rate), [n % 12])
        list(buf.release(capture_tick(second * 1000, 10) - 10))
    # ticks and frames of the last ~3 s only (the second just added, the release lag and
    # the padding), not of the minute: 1,800 frames of b and c were added
    assert buf.held_ticks <= 40
    assert len(buf._frames) <= 4 * (25 + 5)
