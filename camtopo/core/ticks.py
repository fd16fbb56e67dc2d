"""Assembly of camera frames into ticks, released as padded blocks once their span is complete.

Frames arrive per camera, roughly in time order. A block of ticks [b0, b1) can be padded only
when every tick its temporal padding reads, [b0 - tol, b1 + tol), has had its chance to
arrive; the caller says how far that is (``complete_until``): the offline estimator from the
trace's own progress, the streaming processor from its closed ranges.

Blocks are cut at absolute multiples of 64 ticks (and wherever ``complete_until`` falls), so
periodic engine work aligned to that grid happens at the same ticks however data is batched.
A frame for a tick already released is *late*: it is refused with :class:`LateFrameError`
rather than counted against the wrong block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from camtopo.core.bits import MAX_BLOCK_TICKS
from camtopo.core.grid import Network, NetworkError
from camtopo.core.padding import PaddedBlock, pad_span


def tick_of(t_ms: float, tick_ms: float) -> int:
    """The tick nearest a capture time, halves rounded up (the one rule, streaming and offline).

    Not Python's ``round()``: it rounds halves to even, so a camera whose clock sits exactly
    half a tick off the grid (at 10 FPS, t_ms = 100 k + 50: a skew or a start time that lands
    there) had frames k and k + 1 on one tick every other tick, and two frames 100 ms apart
    were refused as duplicates.
    """
    return math.floor(t_ms / tick_ms + 0.5)


class LateFrameError(ValueError):
    """A frame arrived for a tick that was already released in a block."""


class DuplicateFrameError(ValueError):
    """A camera sent two frames for the same tick."""


@dataclass
class _Tick:
    available: np.ndarray  # bool (n_cameras,)
    windows: list[np.ndarray] = field(default_factory=list)  # global windows, int64


class OccupancyBuffer:
    """Per-tick occupancy of the whole network, released as :class:`PaddedBlock` s."""

    def __init__(self, network: Network, tolerance: int, radius: int = 1) -> None:
        if tolerance < 0 or radius < 0:
            raise ValueError("tolerance and radius must be >= 0")
        self.network = network
        self.tolerance = tolerance
        self._neighbours = network.neighbour_table(radius)
        self._sizes = np.diff(network.offsets)
        self._ticks: dict[int, _Tick] = {}
        self.next_tick: int | None = None  # first tick not yet released
        self.max_tick: int | None = None

    def _tick(self, tick: int) -> _Tick:
        if self.next_tick is not None and tick < self.next_tick:
            raise LateFrameError(f"tick {tick} was already processed (next is {self.next_tick})")
        entry = self._ticks.get(tick)
        if entry is None:
            entry = self._ticks[tick] = _Tick(np.zeros(self.network.n_cameras, dtype=np.bool_))
        if self.max_tick is None or tick > self.max_tick:
            self.max_tick = tick
        return entry

    def add(self, camera: int, tick: int, windows: np.ndarray | list[int]) -> None:
        """One camera frame: ``windows`` are the camera's occupied local window indices."""
        size = int(self._sizes[camera])
        # Python's min/max beat numpy's on the handful of windows a frame holds.
        if len(windows) and (min(windows) < 0 or max(windows) >= size):
            bad = next(w for w in windows if not 0 <= w < size)
            raise NetworkError(
                f"window {bad} is outside the {size}-window grid of camera "
                f"{self.network.cameras[camera]!r}"
            )
        entry = self._tick(tick)
        if entry.available[camera]:
            raise DuplicateFrameError(
                f"camera {self.network.cameras[camera]!r} has two frames for tick {tick}"
            )
        entry.available[camera] = True
        if len(windows):
            entry.windows.append(np.asarray(windows, dtype=np.int64) + self.network.offsets[camera])

    def add_frames(
        self, cameras: np.ndarray, ticks: np.ndarray, windows: Sequence[np.ndarray]
    ) -> tuple[int, int]:
        """Many frames at once (a counting worker's whole ranges, ~20,000 frames each): the
        same as :meth:`add` for every frame, without a Python call per frame. Frames that
        :meth:`add` would refuse as late or duplicate are skipped and counted:
        returns (late, duplicate). A window outside its camera's grid raises, as in ``add``."""
        cameras = np.asarray(cameras, dtype=np.int64)
        ticks = np.asarray(ticks, dtype=np.int64)
        lengths = np.fromiter((len(w) for w in windows), np.int64, count=len(windows))
        flat = np.concatenate(windows).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(cameras.size), lengths)  # frame of each window
        bad = np.flatnonzero((flat < 0) | (flat >= self._sizes[cameras[owner]]))
        if bad.size:
            cam = int(cameras[owner[bad[0]]])
            raise NetworkError(
                f"window {int(flat[bad[0]])} is outside the {int(self._sizes[cam])}-window grid "
                f"of camera {self.network.cameras[cam]!r}"
            )
        keep = np.ones(cameras.size, dtype=np.bool_)
        if self.next_tick is not None:
            keep &= ticks >= self.next_tick
        late = int(cameras.size - keep.sum())
        duplicate = 0
        for tick, frames in _groups(ticks, np.flatnonzero(keep)):
            entry = self._tick(tick)
            cams = cameras[frames]
            # a camera already given this tick, or twice in this batch: the first one counts
            fresh = np.zeros(cams.size, dtype=np.bool_)
            fresh[np.unique(cams, return_index=True)[1]] = True
            fresh &= ~entry.available[cams]
            duplicate += int(cams.size - fresh.sum())
            keep[frames[~fresh]] = False
            entry.available[cams[fresh]] = True
        taken = np.flatnonzero(keep[owner])  # windows of the frames taken
        glob = flat[taken] + self.network.offsets[cameras[owner[taken]]]
        for tick, at in _groups(ticks[owner[taken]], np.arange(taken.size)):
            self._ticks[tick].windows.append(glob[at])
        return late, duplicate

    def add_tick(
        self, tick: int, available: np.ndarray, cameras: np.ndarray, windows: np.ndarray
    ) -> None:
        """A whole tick at once (simulators, load tests): ``available`` bool (n_cameras,),
        ``cameras`` / ``windows`` int (n,) the occupied (camera, local window) pairs."""
        entry = self._tick(tick)
        if np.any(entry.available & available):
            raise DuplicateFrameError(f"tick {tick} was already given for some cameras")
        entry.available |= available
        if len(windows):
            entry.windows.append(self.network.offsets[cameras] + windows)

    def release(self, complete_until: int) -> Iterator[PaddedBlock]:
        """Yield blocks for every tick t with t + tolerance < complete_until."""
        if not self._ticks and self.next_tick is None:
            return
        last = complete_until - self.tolerance  # blocks end (exclusive) at most here
        if self.next_tick is None:
            first = min(self._ticks) // MAX_BLOCK_TICKS * MAX_BLOCK_TICKS
            if first >= last:
                # Nothing is complete yet: the first block's start stays open, so a frame
                # behind the earliest one held (cameras' clocks skewed, staggered starts)
                # is still taken rather than refused as late.
                return
            self.next_tick = first
        while self.next_tick < last:
            b0 = self.next_tick
            b1 = min((b0 // MAX_BLOCK_TICKS + 1) * MAX_BLOCK_TICKS, last)
            yield self._block(b0, b1)
            self.next_tick = b1
            for t in [t for t in self._ticks if t < b1 - self.tolerance]:
                del self._ticks[t]

    def flush(self) -> Iterator[PaddedBlock]:
        """Release everything held (end of a trace)."""
        if self.max_tick is not None:
            yield from self.release(self.max_tick + self.tolerance + 1)

    def _block(self, b0: int, b1: int) -> PaddedBlock:
        tol = self.tolerance
        span = range(b0 - tol, b1 + tol)
        avail = np.zeros((len(span), self.network.n_cameras), dtype=np.bool_)
        occ_t: list[np.ndarray] = []
        occ_w: list[np.ndarray] = []
        for s, tick in enumerate(span):
            entry = self._ticks.get(tick)
            if entry is None:
                continue
            avail[s] = entry.available
            for w in entry.windows:
                occ_t.append(np.full(len(w), s, dtype=np.int64))
                occ_w.append(w)
        empty = np.zeros(0, dtype=np.int64)
        return pad_span(
            b0,
            b1 - b0,
            tol,
            avail,
            np.concatenate(occ_t) if occ_t else empty,
            np.concatenate(occ_w) if occ_w else empty,
            self._neighbours,
            self.network.window_camera,
        )

    @property
    def held_ticks(self) -> int:
        return len(self._ticks)


def _groups(keys: np.ndarray, items: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``items`` (indices into ``keys``) grouped by key, in key order."""
    if not items.size:
        return
    order = items[np.argsort(keys[items], kind="stable")]
    for part in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
        yield int(keys[part[0]]), part
