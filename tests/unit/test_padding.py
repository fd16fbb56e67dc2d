"""Padding of blocks against the definitions of section 4, and the tick buffer's rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camtopo.core.grid import Grid, Network, NetworkError
from camtopo.core.reference import padded_occupancy
from camtopo.core.ticks import DuplicateFrameError, LateFrameError, OccupancyBuffer


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n_cams=st.integers(1, 3),
    n_ticks=st.integers(1, 150),
    tol=st.integers(0, 4),
    radius=st.integers(0, 2),
)
def test_block_padding_matches_the_definitions(data, n_cams, n_ticks, tol, radius):
    grid = Grid(cols=4, rows=3)
    network = Network.uniform([f"c{k}" for k in range(n_cams)], grid)
    trace = {}
    for t in range(n_ticks):
        trace[t] = {}
        for c in range(n_cams):
            if data.draw(st.booleans(), label="present") or t % 5:
                trace[t][c] = sorted(
                    data.draw(st.sets(st.integers(0, grid.n_windows - 1), max_size=3))
                )
    buf = OccupancyBuffer(network, tol, radius)
    for t, frame in trace.items():
        for c, ws in frame.items():
            buf.add(c, t, ws)
    for block in buf.flush():
        for k in range(block.n_ticks):
            t = block.start_tick + k
            bit = np.uint64(1) << np.uint64(k)
            padded, cam_ok = padded_occupancy(network, trace, t, tol, radius)
            got_pad = set(block.pad_windows[(block.pad_bits & bit) != 0].tolist())
            got_occ = set(block.occ_windows[(block.occ_bits & bit) != 0].tolist())
            want_occ = {
                network.global_window(c, w) for c, ws in trace.get(t, {}).items() for w in ws
            }
            assert got_pad == padded
            assert got_occ == want_occ
            np.testing.assert_array_equal((block.cam_ok & bit) != 0, cam_ok)


def test_buffer_rejects_late_duplicate_and_outside_grid_frames():
    network = Network.uniform(["a", "b"], Grid(cols=2, rows=2))
    buf = OccupancyBuffer(network, 1, 1)
    buf.add(0, 100, [1])
    with pytest.raises(DuplicateFrameError):
        buf.add(0, 100, [])
    with pytest.raises(NetworkError, match="outside the 4-window grid"):
        buf.add(1, 100, [4])
    list(buf.release(200))
    with pytest.raises(LateFrameError):
        buf.add(1, 150, [])


def test_buffer_memory_is_bounded_by_the_span_it_holds():
    network = Network.uniform(["a"], Grid(cols=2, rows=2))
    buf = OccupancyBuffer(network, 2, 1)
    for t in range(10_000):
        buf.add(0, t, [t % 4])
        list(buf.release(t - 5))
    assert buf.held_ticks < 64 + 10


def _blocks(buf: OccupancyBuffer, until: int) -> list[tuple]:
    return [
        (b.start_tick, b.n_ticks, b.occ_windows.tolist(), b.occ_bits.tolist(),
         b.pad_windows.tolist(), b.pad_bits.tolist(), b.cam_ok.tolist())
        for b in buf.release(until)
    ]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.integers(0, 2),  # camera
            st.integers(0, 90),  # tick
            st.lists(st.integers(0, 5), max_size=3),  # local windows
        ),
        max_size=60,
    ),
    released=st.integers(0, 40),
)
def test_adding_frames_at_once_equals_adding_them_one_by_one(frames, released):
    """The counting workers' batch path: same blocks, and late or duplicate frames (within
    the batch or with frames given before) skipped and counted as ``add`` refuses them."""
    network = Network.uniform(["a", "b", "c"], Grid(cols=3, rows=2))
    one, many = OccupancyBuffer(network, 2, 1), OccupancyBuffer(network, 2, 1)
    for buf in (one, many):  # an earlier frame, and ticks already released
        buf.add(1, 45, [0])
        _blocks(buf, released)
    late = duplicate = 0
    for cam, tick, ws in frames:
        try:
            one.add(cam, tick, ws)
        except LateFrameError:
            late += 1
        except DuplicateFrameError:
            duplicate += 1
    got = many.add_frames(
        np.array([f[0] for f in frames], dtype=np.int64),
        np.array([f[1] for f in frames], dtype=np.int64),
        [np.array(f[2], dtype=np.int64) for f in frames],
    )
    assert got == (late, duplicate)
    assert _blocks(many, 200) == _blocks(one, 200)


def test_adding_frames_at_once_refuses_a_window_outside_the_grid():
    network = Network.uniform(["a", "b"], Grid(cols=2, rows=2))
    buf = OccupancyBuffer(network, 1, 1)
    with pytest.raises(NetworkError, match="window 4 is outside the 4-window grid of camera 'b'"):
        buf.add_frames(np.array([0, 1]), np.array([5, 5]), [np.array([3]), np.array([4])])
