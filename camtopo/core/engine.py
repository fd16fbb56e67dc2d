"""The fast exclusion engine: the paper's counts in the P = O - E form, sparse and bit-parallel.

Counts are halved when O reaches ``count_limit`` (the paper's rule). At the paper's 256
(byte counts) only the last ~200 opportunities of a busy window are remembered, so a crowd surge
fills the whole memory with chance co-occurrence; limits above 256 use 16-bit counts and
remember longer, while halving still lets the topology follow change
(benchmarks/accuracy.py measures both).

Three ideas make it fast and small (DESIGN.md, "Algorithm notes"):

1. ``P_ij = O_ij - E_ij`` (opportunities where w_j *was* padded-occupied) changes only for
   padded-occupied j, so an update costs occupied x padded instead of occupied x all windows.
2. ``O_ij`` depends on j only through j's camera being available, so O is kept per
   (window, camera): ``O[i, c]``, uint8 (n_windows, n_cameras).
3. A block of up to 64 ticks is processed at once: every tick set is a uint64 bitmask, and the
   increment of P_ij over the block is ``popcount(occ_i & pad_j)``. Counter overflow (the
   paper's halving) is split at the exact tick where O reaches 256, so results equal the
   tick-by-tick reference for any block partition.

P is stored in *segments*: one uint8 row of a camera's windows per (window i, camera c), taken
from a pool when i and c first co-occur. Optional policies bound memory on large networks while
keeping every ratio P/O unbiased (a pair's O and P always start counting together):

- activity gate: a window's row starts after its first ``activity_gate`` occupied ticks (false
  detections in windows nobody walks through never cost a row);
- pruning: every ``prune_interval`` ticks, a segment whose every pair is refuted
  (O >= prune_min_opportunities and max P < prune_max_ratio * O) is released and marked
  pruned, its O restarting at 0; once that O reaches ``readmit_after`` the segment is
  re-admitted with fresh counts at the next pass, so a camera that moves can be re-learnt;
- a pool budget: when the pool may not grow, a new segment is refused and its O restarts at 0.

With the gate at 0, pruning off and no budget, counts equal :class:`DenseExclusion` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from camtopo.core.bits import MAX_BLOCK_TICKS, popcount, through_nth_bit
from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock

NONE = -1  # no segment: P is 0
PRUNED = -2  # refuted; O keeps counting only to notice when it overflows
EXPIRED = -3  # pruned and since overflowed: re-admitted at the next prune pass
REFUSED = -4  # allocation refused by the pool budget during the current block


@dataclass(frozen=True)
class EngineStats:
    live_segments: int
    pruned_segments: int
    refused_allocations: int
    pool_capacity: int
    nbytes: int


@nb.njit(cache=True, nogil=True)
def _gate(
    occ_windows: np.ndarray,
    occ_bits: np.ndarray,
    activity: np.ndarray,
    gate: int,
    dirty: np.ndarray,
) -> np.ndarray:
    """Ticks at which each occupied window counts (after its first ``gate`` occupied ticks)."""
    eff = occ_bits.copy()
    if gate == 0:
        return eff
    for e in range(occ_windows.shape[0]):
        w = occ_windows[e]
        a = activity[w]
        if a >= gate:
            continue
        b = occ_bits[e]
        n = popcount(b)
        if a + n > gate:
            eff[e] = b & ~through_nth_bit(b, gate - a)
        else:
            eff[e] = np.uint64(0)
        activity[w] = min(a + n, gate)
        dirty[w] = True  # activity is part of the row a checkpoint saves
    return eff


@nb.njit(cache=True, nogil=True)
def _allocate(
    occ_windows: np.ndarray,
    eff: np.ndarray,
    pad_any: np.ndarray,
    active_cams: np.ndarray,
    window_camera: np.ndarray,
    slot: np.ndarray,
    free: np.ndarray,
    n_free: np.ndarray,
) -> int:
    """Give a segment to every (i, c) whose P will rise in this block. Returns refusals."""
    refused = 0
    top = n_free[0]
    for e in range(occ_windows.shape[0]):
        b = eff[e]
        if b == 0:
            continue
        i = occ_windows[e]
        ci = window_camera[i]
        for c in active_cams:
            if c == ci or slot[i, c] != NONE or (b & pad_any[c]) == 0:
                continue
            if top > 0:
                top -= 1
                slot[i, c] = free[top]
            else:
                slot[i, c] = REFUSED
                refused += 1
    n_free[0] = top
    return refused


@nb.njit(cache=True, inline="always")
def _add(
    pool: np.ndarray,
    s: int,
    mask: np.uint64,
    lo: int,
    hi: int,
    pad_local: np.ndarray,
    pad_bits: np.ndarray,
) -> None:
    top = pool.shape[1] - 1  # the last column holds the segment's largest P
    for p in range(lo, hi):
        x = popcount(mask & pad_bits[p])
        if x:
            q = pad_local[p]
            pool[s, q] += x
            if pool[s, q] > pool[s, top]:
                pool[s, top] = pool[s, q]


@nb.njit(cache=True, parallel=True, nogil=True)
def _count(  # type: ignore[no-untyped-def]  # typed, its numba int64 arithmetic would need casts
    occ_windows,
    eff,
    cam_ok,
    pad_lo,
    pad_hi,
    pad_local,
    pad_bits,
    window_camera,
    slot,
    O,
    pool,
    dirty,
    limit,
    readmit,
):
    n_cams = O.shape[1]
    seg_len = pool.shape[1] - 1  # the last column is the segment's max
    for e in nb.prange(occ_windows.shape[0]):
        b = eff[e]
        if b == 0:
            continue
        i = occ_windows[e]  # rows are distinct, so threads never share (i, c) state
        dirty[i] = True
        ci = window_camera[i]
        for c in range(n_cams):
            if c == ci:
                continue
            okb = b & cam_ok[c]
            if okb == 0:
                continue
            s = slot[i, c]
            if s == REFUSED:
                slot[i, c] = NONE
                O[i, c] = 0
                continue
            n = popcount(okb)
            o = np.int64(O[i, c])
            if s == PRUNED or s == EXPIRED:  # noqa: SIM109 (numba: no tuple membership)
                # O now only measures time since pruning (readmit_after < limit).
                o = min(o + n, readmit)
                O[i, c] = o
                if o >= readmit:
                    slot[i, c] = EXPIRED
                continue
            if o + n < limit:
                if s >= 0:
                    _add(pool, s, okb, pad_lo[c], pad_hi[c], pad_local, pad_bits)
                O[i, c] = o + n
                continue
            # Overflow inside this block: count up to the tick where O reaches the limit,
            # halve, then count the rest (at most 63 ticks, so no second overflow).
            pre = okb & through_nth_bit(okb, limit - o)
            post = okb & ~pre
            if s >= 0:
                seg = np.empty(seg_len, dtype=np.int64)
                for q in range(seg_len):
                    seg[q] = pool[s, q]
                for p in range(pad_lo[c], pad_hi[c]):
                    seg[pad_local[p]] += popcount(pre & pad_bits[p])
                top = 0
                for q in range(seg_len):
                    pool[s, q] = seg[q] // 2
                    top = max(top, seg[q] // 2)
                pool[s, seg_len] = top
                _add(pool, s, post, pad_lo[c], pad_hi[c], pad_local, pad_bits)
            O[i, c] = limit // 2 + popcount(post)


@nb.njit(cache=True, nogil=True)
def _prune(
    slot: np.ndarray,
    O: np.ndarray,
    pool: np.ndarray,
    seg_len: np.ndarray,
    free: np.ndarray,
    n_free: np.ndarray,
    min_o: int,
    max_ratio: float,
    do_prune: bool,
    dirty: np.ndarray,
) -> tuple[int, int]:
    """Release refuted segments; re-admit expired ones. Returns (pruned, readmitted).

    Rows changed here are marked dirty too, or a checkpoint would miss them."""
    pruned = 0
    readmitted = 0
    top = n_free[0]
    for i in range(slot.shape[0]):
        for c in range(slot.shape[1]):
            s = slot[i, c]
            if s == EXPIRED:
                slot[i, c] = NONE
                O[i, c] = 0
                readmitted += 1
                dirty[i] = True
            elif (
                s >= 0
                and do_prune
                and O[i, c] >= min_o
                and pool[s, pool.shape[1] - 1] < max_ratio * O[i, c]  # the segment's max P
            ):
                pool[s, :] = 0
                free[top] = s
                top += 1
                slot[i, c] = PRUNED
                O[i, c] = 0
                pruned += 1
                dirty[i] = True
    n_free[0] = top
    return pruned, readmitted


@nb.njit(cache=True, nogil=True)
def c_prime_scalar(p: float, o: float, log_oref: float) -> float:
    """C'_ij = (P/O) * min(1, log O / log O_ref); 0 when O < 1."""
    if o < 1:
        return 0.0
    return (p / o) * min(1.0, math.log(o) / log_oref)


@nb.njit(cache=True, nogil=True)
def _p_floor(o: float, c_star: float, log_oref: float) -> float:
    """C'(p, o) > c_star iff p > this (C' grows with p at fixed o); inf when no p <= o passes."""
    if o < 1:
        return np.inf
    conf = min(1.0, math.log(o) / log_oref)
    if conf <= 0.0 or c_prime_scalar(o, o, log_oref) <= c_star:
        return np.inf
    return c_star * o / conf


@nb.njit(cache=True, nogil=True)
def _adjacent(
    rows: np.ndarray,
    upper: bool,
    both: bool,
    slot: np.ndarray,
    O: np.ndarray,
    pool: np.ndarray,
    offsets: np.ndarray,
    window_camera: np.ndarray,
    seg_len: np.ndarray,
    c_star: float,
    log_oref: float,
) -> tuple[list[int], list[int]]:
    """(i, j) with i in ``rows`` and C' above c_star both ways (only j > i when ``upper``);
    with ``both`` False, C'_ij alone (half-edges: row j may live in another worker).

    Compares counts with a per-segment floor instead of computing C' for every entry: the scan
    reads every live segment of the rows, and a log per entry dominated it."""
    out_i = []
    out_j = []
    for i in rows:
        ci = window_camera[i]
        for c in range(slot.shape[1]):
            s = slot[i, c]
            if s < 0:
                continue
            o = O[i, c]
            floor = _p_floor(o, c_star, log_oref) * (1 - 1e-9)  # a prefilter; C' decides
            if floor == np.inf or pool[s, pool.shape[1] - 1] <= floor:
                continue  # not even the segment's largest P passes
            base = offsets[c]
            for lj in range(seg_len[c]):
                j = base + lj
                p = pool[s, lj]
                if p <= floor or (upper and j < i) or c_prime_scalar(p, o, log_oref) <= c_star:
                    continue
                if not both:
                    out_i.append(i)
                    out_j.append(j)
                    continue
                r = slot[j, ci]
                if r < 0:
                    continue
                if c_prime_scalar(pool[r, i - offsets[ci]], O[j, ci], log_oref) > c_star:
                    out_i.append(i)
                    out_j.append(j)
    return out_i, out_j


class FastExclusion:
    """Exclusion counts in (O per window x camera, P in pooled segments) form."""

    limit: int

    def __init__(
        self,
        network: Network,
        *,
        activity_gate: int = 0,
        prune: bool = False,
        prune_min_opportunities: int = 16,
        prune_max_ratio: float = 0.5,
        prune_interval: int = 10 * MAX_BLOCK_TICKS,
        max_pool_bytes: int | None = None,
        initial_segments: int = 4096,
        count_limit: int = 256,
        readmit_after: int = 2048,
    ) -> None:
        if prune_interval % MAX_BLOCK_TICKS:
            raise ValueError(f"prune_interval must be a multiple of {MAX_BLOCK_TICKS} ticks")
        self.network = network
        self.activity_gate = activity_gate
        self.prune_enabled = prune
        self.prune_min_opportunities = prune_min_opportunities
        self.prune_max_ratio = prune_max_ratio
        self.prune_interval = prune_interval
        self.max_pool_bytes = max_pool_bytes
        if not (2 <= count_limit <= 1 << 16 and count_limit % 2 == 0):
            raise ValueError(f"count_limit must be even and in 2..65536, got {count_limit}")
        dtype = np.uint8 if count_limit <= 256 else np.uint16
        self.limit = count_limit  # O reaching this is halved, with P
        self.readmit_after = min(readmit_after, count_limit // 2)
        n_w, n_c = network.n_windows, network.n_cameras
        self.seg_len = np.diff(network.offsets).astype(np.int64)
        self.O = np.zeros((n_w, n_c), dtype=dtype)
        self.slot = np.full((n_w, n_c), NONE, dtype=np.int32)
        self.activity = np.zeros(n_w, dtype=np.int64)
        self.dirty = np.zeros(n_w, dtype=np.bool_)  # changed since the last checkpoint
        self.stale = np.zeros(n_w, dtype=np.bool_)  # taken by a checkpoint, not yet re-scanned
        # One column more than the widest camera: a segment's largest P, kept by the counting
        # kernel, lets pruning and the adjacency scan skip a segment without reading it.
        width = max(network.max_windows_per_camera, 1) + 1
        if max_pool_bytes is not None:
            # Take the whole budget at once: zeroed pages cost no memory until a segment is
            # first used, and growing by copying would briefly need old + new pool.
            initial_segments = max(1, max_pool_bytes // (width * np.dtype(dtype).itemsize))
        self.pool = np.zeros((initial_segments, width), dtype=dtype)
        # Lowest slots first, so the pool is touched from its start.
        self.free = np.arange(initial_segments - 1, -1, -1, dtype=np.int32)
        self.n_free = np.array([initial_segments], dtype=np.int64)
        self.high_water = 0  # slots ever in use at once: the part of the pool in memory
        self.refused_total = 0
        self.dropped_on_import = 0  # stored segments the budget could not hold (import_row)
        self.pruned_total = 0
        self.readmitted_total = 0
        self.last_tick: int | None = None
        # Rows this engine counts (None: all). A partitioned counting worker owns the rows of
        # some store shards; padding still reads every window, so its counts equal those rows
        # of an engine that counts everything.
        self.owned: np.ndarray | None = None

    # --- updating -----------------------------------------------------------------------------
    def update(self, block: PaddedBlock) -> None:
        """Count one padded block (ticks must come in increasing order)."""
        if block.occ_windows.size:
            self._count_block(block)
        # Prune at fixed tick positions, so that how ticks were batched never changes counts.
        start = block.start_tick if self.last_tick is None else self.last_tick
        end = block.start_tick + block.n_ticks
        if end // self.prune_interval > start // self.prune_interval:
            self.prune_pass()
        self.last_tick = end

    def _count_block(self, block: PaddedBlock) -> None:
        occ_windows, occ_bits = block.occ_windows, block.occ_bits
        if self.owned is not None:
            mine = self.owned[occ_windows]
            occ_windows, occ_bits = occ_windows[mine], occ_bits[mine]
            if occ_windows.size == 0:
                return
        eff = _gate(occ_windows, occ_bits, self.activity, self.activity_gate, self.dirty)
        cam = self.network.window_camera
        pad_cam = cam[block.pad_windows]
        pad_local = (block.pad_windows - self.network.offsets[pad_cam]).astype(np.int64)
        bounds = np.searchsorted(block.pad_windows, self.network.offsets)
        pad_lo, pad_hi = bounds[:-1].astype(np.int64), bounds[1:].astype(np.int64)
        pad_any = np.zeros(self.network.n_cameras, dtype=np.uint64)
        np.bitwise_or.at(pad_any, pad_cam, block.pad_bits)
        active_cams = np.flatnonzero(pad_any).astype(np.int64)
        while True:
            refused = _allocate(
                occ_windows, eff, pad_any, active_cams, cam, self.slot, self.free, self.n_free
            )
            if not refused or not self._grow(refused):
                break
            self.slot[self.slot == REFUSED] = NONE  # retry with the larger pool
        self.refused_total += refused
        self.high_water = max(self.high_water, self.pool.shape[0] - int(self.n_free[0]))
        _count(
            occ_windows, eff, block.cam_ok, pad_lo, pad_hi, pad_local, block.pad_bits,
            cam, self.slot, self.O, self.pool, self.dirty, self.limit, self.readmit_after,
        )  # fmt: skip

    def _grow(self, needed: int) -> bool:
        cap, width = self.pool.shape
        # Grow by a quarter: doubling would overshoot by up to 2x at the sizes that matter.
        new_cap = max(cap + cap // 4, cap + needed)
        if self.max_pool_bytes is not None:
            new_cap = min(new_cap, self.max_pool_bytes // (width * self.pool.itemsize))
        if new_cap <= cap:
            return False
        pool = np.zeros((new_cap, width), dtype=self.pool.dtype)
        pool[:cap] = self.pool
        free = np.empty(new_cap, dtype=np.int32)
        top = int(self.n_free[0])
        free[:top] = self.free[:top]
        fresh = np.arange(new_cap - 1, cap - 1, -1, dtype=np.int32)
        free[top : top + fresh.size] = fresh
        self.pool, self.free = pool, free
        self.n_free[0] = top + fresh.size
        return True

    def prune_pass(self) -> tuple[int, int]:
        pruned, readmitted = _prune(
            self.slot, self.O, self.pool, self.seg_len, self.free, self.n_free,
            self.prune_min_opportunities, self.prune_max_ratio, self.prune_enabled, self.dirty,
        )  # fmt: skip
        self.pruned_total += pruned
        self.readmitted_total += readmitted
        return pruned, readmitted

    # --- reading ------------------------------------------------------------------------------
    def pair_counts(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(O_ij, P_ij) int64 for index arrays i, j (same-camera pairs read 0)."""
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        cj = self.network.window_camera[j]
        same = self.network.window_camera[i] == cj
        o = np.where(same, 0, self.O[i, cj]).astype(np.int64)
        s = self.slot[i, cj]
        live = (s >= 0) & ~same
        p = np.zeros(i.shape, dtype=np.int64)
        p[live] = self.pool[s[live], (j - self.network.offsets[cj])[live]]
        return o, p

    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) of all pairs with P_ij > 0."""
        i_s, c_s = np.nonzero(self.slot >= 0)
        seg = self.pool[self.slot[i_s, c_s], :-1]
        rows, cols = np.nonzero(seg)
        return i_s[rows].astype(np.int64), (self.network.offsets[c_s[rows]] + cols).astype(np.int64)

    def adjacent_pairs(
        self, c_star: float, o_ref: float, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) with C'_ij > c_star and C'_ji > c_star: every pair with i < j, or, given
        ``rows``, every pair with i in ``rows`` (j on either side of i)."""
        scan = np.arange(self.network.n_windows) if rows is None else rows
        return self._scan(scan, rows is None, True, c_star, o_ref)

    def half_pairs(
        self, c_star: float, o_ref: float, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) with i in ``rows`` and C'_ij > c_star, whatever C'_ji is: what a worker that
        owns only some rows contributes to adjacency (the other half lives with row j)."""
        return self._scan(rows, False, False, c_star, o_ref)

    def _scan(
        self, rows: np.ndarray, upper: bool, both: bool, c_star: float, o_ref: float
    ) -> tuple[np.ndarray, np.ndarray]:
        out_i, out_j = _adjacent(
            np.asarray(rows, dtype=np.int64), upper, both, self.slot, self.O, self.pool,
            self.network.offsets, self.network.window_camera, self.seg_len, c_star,
            math.log(o_ref),
        )  # fmt: skip
        return np.asarray(out_i, dtype=np.int64), np.asarray(out_j, dtype=np.int64)

    def stats(self) -> EngineStats:
        return EngineStats(
            live_segments=int((self.slot >= 0).sum()),
            pruned_segments=int(((self.slot == PRUNED) | (self.slot == EXPIRED)).sum()),
            refused_allocations=self.refused_total,
            pool_capacity=self.pool.shape[0],
            nbytes=self.nbytes,
        )

    @property
    def nbytes(self) -> int:
        """Memory in use: the arrays, and of the pool only the segments ever touched."""
        arrays = (self.O, self.slot, self.activity, self.dirty, self.stale, self.free)
        touched = self.high_water * self.pool.shape[1] * self.pool.itemsize
        return sum(a.nbytes for a in arrays) + touched

    # --- persistence of rows (the topology store keeps them as RLE blobs) ----------------------
    def take_dirty(self, among: np.ndarray | None = None) -> np.ndarray:
        """Rows changed since the last call (and clear the marks); only rows where the bool
        mask ``among`` is set, if given."""
        rows = np.flatnonzero(self.dirty if among is None else self.dirty & among)
        self.dirty[rows] = False
        self.stale[rows] = True
        return rows

    def take_changed(self, among: np.ndarray | None = None) -> np.ndarray:
        """Rows changed since the last call of this (adjacency refresh), whether or not a
        checkpoint took them since; checkpoints keep their own marks. Only ``among`` (int
        row indices), if given."""
        if among is None:
            rows = np.flatnonzero(self.dirty | self.stale)
        else:
            rows = among[self.dirty[among] | self.stale[among]]
        self.stale[rows] = False  # every stale row among them is in rows
        return rows

    def export_row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Row i as (O (C,), slot state int8 (C,), P (W,), activity); counts in the engine's
        dtype (uint8 or uint16)."""
        state = np.clip(self.slot[i], -4, 0).astype(np.int8)  # live segments read as 0
        p = np.zeros(self.network.n_windows, dtype=self.pool.dtype)
        for c in np.flatnonzero(self.slot[i] >= 0):
            lo = self.network.offsets[c]
            p[lo : lo + self.seg_len[c]] = self.pool[self.slot[i, c], : self.seg_len[c]]
        return self.O[i].copy(), state, p, int(self.activity[i])

    def import_row(
        self, i: int, o: np.ndarray, state: np.ndarray, p: np.ndarray, activity: int
    ) -> None:
        """Restore row i from :meth:`export_row` output (releasing what it held).

        A segment the pool budget cannot hold (a worker taking over more rows than its
        budget) is dropped as a refused allocation would be: the pair restarts from O = 0;
        counted in ``refused_total`` and ``dropped_on_import``."""
        self.stale[i] = True
        for c in np.flatnonzero(self.slot[i] >= 0):
            self._release(int(self.slot[i, c]))
        self.O[i] = o
        self.activity[i] = activity
        self.slot[i] = np.where(state == 0, NONE, state).astype(np.int32)
        for c in np.flatnonzero(state == 0):
            if self.n_free[0] == 0 and not self._grow(1):
                self.O[i, c] = 0
                self.refused_total += 1
                self.dropped_on_import += 1
                continue
            s = self._take()
            lo = self.network.offsets[c]
            self.pool[s, : self.seg_len[c]] = p[lo : lo + self.seg_len[c]]
            self.pool[s, -1] = self.pool[s, : self.seg_len[c]].max(initial=0)
            self.slot[i, c] = s

    def forget_camera(self, camera: int) -> int:
        """Forget every count of a camera's windows, both ways (its rows, and its column in
        every row), as if it had just joined: for a camera whose view changed. Returns the
        number of rows changed (marked dirty, so checkpoints and adjacency see it)."""
        lo, hi = self.network.offsets[camera], self.network.offsets[camera + 1]
        rows = np.zeros(self.network.n_windows, dtype=np.bool_)
        rows[lo:hi] = True
        rows |= self.slot[:, camera] != NONE
        rows |= self.O[:, camera] > 0
        for i in np.flatnonzero(rows[lo:hi]) + lo:
            for c in np.flatnonzero(self.slot[i] >= 0):
                self._release(int(self.slot[i, c]))
        live = np.flatnonzero(self.slot[:, camera] >= 0)
        for i in live:
            self._release(int(self.slot[i, camera]))
        self.slot[lo:hi] = NONE
        self.O[lo:hi] = 0
        self.slot[:, camera] = NONE
        self.O[:, camera] = 0
        # activity (the row gate) is kept: the windows were in use, and a new row is wanted now
        self.dirty |= rows
        return int(rows.sum())

    def _take(self) -> int:
        self.n_free[0] -= 1
        return int(self.free[self.n_free[0]])

    def _release(self, s: int) -> None:
        self.pool[s] = 0
        self.free[self.n_free[0]] = s
        self.n_free[0] += 1
