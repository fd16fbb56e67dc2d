"""Spatial and temporal padding of occupancy, producing the bit-packed input of the engines.

Paper section 4: ``w1 ⊖ w2`` is an exclusion when w1 is occupied in the *unpadded* data and w2
is unoccupied in the *spatially and temporally padded* data. Spatial padding marks a window
occupied if it or a neighbour within ``radius`` (same camera) is; temporal padding marks it
occupied if that holds at any tick within ``tolerance`` ticks.

An opportunity needs data for every tick the padding of w2 reads, so a camera is
"padding-available" at tick k only if it has a frame at every tick of [k - tol, k + tol].
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from camtopo.core.bits import MAX_BLOCK_TICKS, tick_range_mask


@dataclass(frozen=True)
class PaddedBlock:
    """Occupancy of ``n_ticks`` (<= 64) consecutive ticks from ``start_tick``, as tick bitmasks.

    Bit k of every mask is tick ``start_tick + k``.

    - ``occ_windows`` int32 (n_occ,) sorted global windows occupied (unpadded) at some tick;
      ``occ_bits`` uint64 (n_occ,) the ticks at which each is occupied.
    - ``pad_windows`` int32 (n_pad,) sorted global windows padded-occupied at some tick where
      their camera is padding-available; ``pad_bits`` uint64 (n_pad,) those ticks.
    - ``cam_ok`` uint64 (n_cameras,) the ticks at which each camera is padding-available.
    """

    start_tick: int
    n_ticks: int
    occ_windows: np.ndarray
    occ_bits: np.ndarray
    pad_windows: np.ndarray
    pad_bits: np.ndarray
    cam_ok: np.ndarray

    @property
    def n_occupied(self) -> int:
        """Occupied (window, tick) observations in the block."""
        return int(np.bitwise_count(self.occ_bits).sum())

    def since(self, tick: int) -> PaddedBlock:
        """This block without its ticks before ``tick`` (None of it is left if ``tick`` is past
        its end: n_ticks 0). Lets a consumer restored at ``tick`` skip what it already has."""
        skip = min(max(tick - self.start_tick, 0), self.n_ticks)
        if skip == 0:
            return self
        shift = np.uint64(skip) if skip < MAX_BLOCK_TICKS else None
        occ = self.occ_bits >> shift if shift is not None else np.zeros_like(self.occ_bits)
        pad = self.pad_bits >> shift if shift is not None else np.zeros_like(self.pad_bits)
        ok = self.cam_ok >> shift if shift is not None else np.zeros_like(self.cam_ok)
        keep_o, keep_p = occ != 0, pad != 0
        return PaddedBlock(
            self.start_tick + skip, self.n_ticks - skip, self.occ_windows[keep_o], occ[keep_o],
            self.pad_windows[keep_p], pad[keep_p], ok,
        )  # fmt: skip


@nb.njit(cache=True, nogil=True)
def _pad_span(
    n_ticks: int,
    tol: int,
    avail: np.ndarray,  # bool (n_ticks + 2*tol, n_cameras): camera has a frame at span tick
    occ_t: np.ndarray,  # int64 (n,): span tick of each occupied observation
    occ_w: np.ndarray,  # int64 (n,): its global window
    nbr_ptr: np.ndarray,
    nbr_idx: np.ndarray,
    window_camera: np.ndarray,
    n_windows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_cams = avail.shape[1]
    span = avail.shape[0]
    cam_ok = np.zeros(n_cams, dtype=np.uint64)
    for c in range(n_cams):
        run = 0  # consecutive available span ticks ending at the current one
        for s in range(span):
            run = run + 1 if avail[s, c] else 0
            k = s - 2 * tol  # block tick whose padding window ends at span tick s
            if 0 <= k < n_ticks and run >= 2 * tol + 1:
                cam_ok[c] |= np.uint64(1) << np.uint64(k)
    occ_bits = np.zeros(n_windows, dtype=np.uint64)
    pad_bits = np.zeros(n_windows, dtype=np.uint64)
    for e in range(occ_t.shape[0]):
        s = occ_t[e]
        w = occ_w[e]
        k = s - tol
        if 0 <= k < n_ticks:
            occ_bits[w] |= np.uint64(1) << np.uint64(k)
        # block ticks whose padding window [k - tol, k + tol] contains span tick s
        m = tick_range_mask(s - 2 * tol, min(s, n_ticks - 1))
        if m:
            for p in range(nbr_ptr[w], nbr_ptr[w + 1]):
                pad_bits[nbr_idx[p]] |= m
    for w in range(n_windows):
        if pad_bits[w]:
            pad_bits[w] &= cam_ok[window_camera[w]]
    return cam_ok, occ_bits, pad_bits


def pad_span(
    start_tick: int,
    n_ticks: int,
    tolerance: int,
    avail: np.ndarray,
    occ_tick: np.ndarray,
    occ_window: np.ndarray,
    neighbours: tuple[np.ndarray, np.ndarray],
    window_camera: np.ndarray,
) -> PaddedBlock:
    """Pad the occupancy of the span [start_tick - tol, start_tick + n_ticks + tol).

    ``avail`` bool (n_ticks + 2*tol, n_cameras) says which cameras have a frame at each span
    tick; ``occ_tick`` / ``occ_window`` int (n,) list the occupied (span tick, global window)
    observations. Returns the padded block for ticks [start_tick, start_tick + n_ticks).
    """
    if not 0 < n_ticks <= MAX_BLOCK_TICKS:
        raise ValueError(f"a block holds 1..{MAX_BLOCK_TICKS} ticks, got {n_ticks}")
    if avail.shape[0] != n_ticks + 2 * tolerance:
        raise ValueError("avail must cover the block plus the tolerance on both sides")
    nbr_ptr, nbr_idx = neighbours
    cam_ok, occ_bits, pad_bits = _pad_span(
        n_ticks,
        tolerance,
        np.ascontiguousarray(avail, dtype=np.bool_),
        np.asarray(occ_tick, dtype=np.int64),
        np.asarray(occ_window, dtype=np.int64),
        nbr_ptr,
        nbr_idx,
        window_camera,
        window_camera.shape[0],
    )
    occ_windows = np.flatnonzero(occ_bits).astype(np.int32)
    pad_windows = np.flatnonzero(pad_bits).astype(np.int32)
    return PaddedBlock(
        start_tick=start_tick,
        n_ticks=n_ticks,
        occ_windows=occ_windows,
        occ_bits=occ_bits[occ_windows],
        pad_windows=pad_windows,
        pad_bits=pad_bits[pad_windows],
        cam_ok=cam_ok,
    )
