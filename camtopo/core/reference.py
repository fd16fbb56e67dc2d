"""The paper-faithful reference: dense E and O matrices updated tick by tick (section 5.1).

This is the implementation the fast engine is checked against and measured against. It keeps
two byte matrices over all window pairs, exactly as the paper does, and pads occupancy
straight from the definitions of section 4 with Python sets. It is simple on purpose.

Halving (the paper's overflow rule, in the form both engines share): when an increment takes
O_ij to the count limit (256 for the paper's byte counts), O_ij becomes half of it and E_ij
becomes ceil(E_ij / 2), so that P = O - E is halved (rounded down) and E <= O holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock

# A trace in its plainest form: tick -> {camera index: occupied local windows}; a camera
# missing from a tick has no data there.
PlainTrace = Mapping[int, Mapping[int, Iterable[int]]]


def plain_trace(
    network: Network, frames: Iterable[tuple[int, int, Iterable[int]]]
) -> dict[int, dict[int, set[int]]]:
    """Frames (camera index, t_ms, occupied local windows), each camera at its own frame rate,
    as the plain trace on the network's ticks (one tick = 1 / ``fps`` s), from the definition:

    - a frame is its camera's view over one frame period centred on its capture time: it
      stands for tick k when k's time k / fps lies in (t - 1/(2 rate), t + 1/(2 rate)];
    - and it always stands for the tick it was captured in, the k nearest t (halves up);
    - a camera has data at tick k when some frame stands for k; its occupied windows there
      are those of every such frame.

    Exact arithmetic (fractions of a second), and no shortcut: every tick near each frame is
    tested.
    """
    trace: dict[int, dict[int, set[int]]] = {}
    for camera, t_ms, windows in frames:
        t = Fraction(t_ms, 1000)
        half = Fraction(1, 2 * network.rate(camera))
        captured = math.floor(t * network.fps + Fraction(1, 2))
        reach = network.fps // network.rate(camera) + 2  # ticks a frame period can span
        for k in range(captured - reach, captured + reach + 1):
            if k == captured or t - half < Fraction(k, network.fps) <= t + half:
                trace.setdefault(k, {}).setdefault(camera, set()).update(windows)
    return trace


def padded_occupancy(
    network: Network, trace: PlainTrace, tick: int, tolerance: int, radius: int
) -> tuple[set[int], np.ndarray]:
    """Padded-occupied global windows at ``tick`` and the padding-available cameras.

    Straight from section 4: a camera is available when it has data at every tick in
    [tick - tol, tick + tol]; a window is padded-occupied when it or a neighbour within
    ``radius`` is occupied at any of those ticks.
    """
    window_ticks = range(tick - tolerance, tick + tolerance + 1)
    cam_ok = np.array(
        [all(c in trace.get(s, {}) for s in window_ticks) for c in range(network.n_cameras)]
    )
    padded: set[int] = set()
    for s in window_ticks:
        for c, windows in trace.get(s, {}).items():
            if not cam_ok[c]:
                continue
            grid = network.grids[c]
            for w in windows:
                padded.update(network.global_window(c, n) for n in grid.neighbourhood(w, radius))
    return padded, cam_ok


class DenseExclusion:
    """Exclusion counts E and opportunity counts O for every ordered window pair (uint8)."""

    def __init__(self, network: Network, count_limit: int = 256) -> None:
        self.network = network
        n = network.n_windows
        dtype = np.uint8 if count_limit <= 256 else np.uint16
        self.limit = count_limit
        self.O = np.zeros((n, n), dtype=dtype)
        self.E = np.zeros((n, n), dtype=dtype)
        self._camera = network.window_camera

    def update_tick(self, occupied: Iterable[int], padded: np.ndarray, cam_ok: np.ndarray) -> None:
        """One tick: ``occupied`` global windows (unpadded), ``padded`` bool (n_windows,),
        ``cam_ok`` bool (n_cameras,) padding-available cameras."""
        col_ok = cam_ok[self._camera]
        for i in occupied:
            # Same-camera pairs are not evaluated: padding makes them trivially related.
            cols = np.flatnonzero(col_ok & (self._camera != self._camera[i]))
            if not cols.size:
                continue
            o = self.O[i, cols].astype(np.int32) + 1
            e = self.E[i, cols].astype(np.int32) + ~padded[cols]
            over = o == self.limit
            o[over] = self.limit // 2
            e[over] = (e[over] + 1) // 2
            self.O[i, cols] = o
            self.E[i, cols] = e

    def update_plain(self, trace: PlainTrace, tick: int, tolerance: int, radius: int) -> None:
        """One tick of a plain trace, padded from the definitions."""
        padded_set, cam_ok = padded_occupancy(self.network, trace, tick, tolerance, radius)
        padded = np.zeros(self.network.n_windows, dtype=np.bool_)
        padded[list(padded_set)] = True
        occupied = [
            self.network.global_window(c, w) for c, ws in trace.get(tick, {}).items() for w in ws
        ]
        self.update_tick(occupied, padded, cam_ok)

    def update(self, block: PaddedBlock) -> None:
        """A padded block, tick by tick."""
        for k in range(block.n_ticks):
            bit = np.uint64(1) << np.uint64(k)
            occupied = block.occ_windows[(block.occ_bits & bit) != 0]
            padded = np.zeros(self.network.n_windows, dtype=np.bool_)
            padded[block.pad_windows[(block.pad_bits & bit) != 0]] = True
            self.update_tick(occupied, padded, (block.cam_ok & bit) != 0)

    # --- the common read interface ----------------------------------------------------------
    def forget_camera(self, camera: int) -> int:
        """Forget the camera's counts both ways (see FastExclusion.forget_camera)."""
        mine = self._camera == camera
        self.O[mine, :] = 0
        self.E[mine, :] = 0
        self.O[:, mine] = 0
        self.E[:, mine] = 0
        return int(mine.sum())

    def pair_counts(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(O_ij, P_ij) int64 for index arrays i, j, with P = O - E."""
        o = self.O[i, j].astype(np.int64)
        return o, o - self.E[i, j]

    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) of all pairs with P_ij > 0."""
        i, j = np.nonzero(self.O > self.E)
        return i.astype(np.int64), j.astype(np.int64)

    @property
    def nbytes(self) -> int:
        return self.O.nbytes + self.E.nbytes
