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


def capture_tick(t_ms: int, fps: int) -> int:
    """:func:`tick_of` on a grid of ``fps`` in whole numbers: exact at any rate (1000 / 15 ms
    is not a float, and a time half a tick off the grid must round up, not by float luck)."""
    return (2 * int(t_ms) * fps + 1000) // 2000


def frame_ticks(t_ms: int, fps: int, camera_fps: int) -> tuple[int, int]:
    """The ticks [first, stop) of a network ticking at ``fps`` that a frame captured at
    ``t_ms`` by a camera at ``camera_fps`` stands for.

    A frame shows its camera's view from half a frame period before ``t_ms`` to half a period
    after: it stands for every tick whose time k * 1000 / fps lies in
    (t_ms - 500 / camera_fps, t_ms + 500 / camera_fps], and always for the tick it was
    captured in (:func:`capture_tick`). So a camera at the network's rate gives one tick per
    frame, as :func:`tick_of`; a faster camera gives its capture tick only (the frames of one
    tick are OR-ed: "occupied at some frame of the tick"; none is dropped); a slower camera's
    frame is held over the ticks until its next frame is due, so the camera has data at every
    tick, as temporal padding needs, and a missing frame is missing data.
    """
    k0 = capture_tick(t_ms, fps)
    if camera_fps >= fps:
        return k0, k0 + 1
    t2f = 2 * int(t_ms) * camera_fps
    first = ((t2f - 1000) * fps) // (2000 * camera_fps) + 1
    last = ((t2f + 1000) * fps) // (2000 * camera_fps)
    return min(first, k0), max(last, k0) + 1


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

    def __init__(
        self, network: Network, tolerance: int, radius: int = 1, tick_ms: float | None = None
    ) -> None:
        """``tick_ms``: one tick (default: one frame at the network's ``fps``); a network
        with mixed frame rates ticks at its ``fps``, and only there."""
        if tolerance < 0 or radius < 0:
            raise ValueError("tolerance and radius must be >= 0")
        self.network = network
        self.tick_ms = 1000.0 / network.fps if tick_ms is None else tick_ms
        if network.mixed_rates and abs(self.tick_ms * network.fps - 1000.0) > 1e-6:
            raise ValueError(
                f"a network with per-camera frame rates ticks at its fps ({network.fps}), "
                f"not every {self.tick_ms} ms"
            )
        self.tolerance = tolerance
        # Capture times of frames of cameras not at the tick rate, by (camera, half frame
        # period), to find duplicates; kept by capture tick so they go with their ticks.
        self._frames: dict[tuple[int, int], list[int]] = {}
        self._frames_by_tick: dict[int, list[tuple[int, int]]] = {}
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

    def add_frame(self, camera: int, t_ms: int, windows: np.ndarray | list[int]) -> int:
        """One camera frame by its capture time, at the camera's own frame rate
        (:func:`frame_ticks`); returns the tick it was captured in.

        Refused as late when that tick was released (a slower camera's frame then gives no
        tick before it either). A duplicate is a second frame on the same tick at the
        network's rate; at another rate, a frame less than half its camera's frame period
        from another (timestamps in whole ms put a 30 fps camera's frames 33 or 34 ms apart,
        so frame numbers would collide)."""
        if not self.network.mixed_rates:
            tick = tick_of(t_ms, self.tick_ms)
            self.add(camera, tick, windows)
            return tick
        fps, rate = self.network.fps, self.network.rate(camera)
        tick = capture_tick(t_ms, fps)
        if rate == fps:
            self.add(camera, tick, windows)
            return tick
        if self.next_tick is not None and tick < self.next_tick:
            raise LateFrameError(f"tick {tick} was already processed (next is {self.next_tick})")
        t_ms = int(t_ms)
        bucket = 2 * rate * t_ms // 1000  # half frame periods: a duplicate is in this or next to it
        for b in (bucket - 1, bucket, bucket + 1):
            for other in self._frames.get((camera, b), ()):
                if 2 * rate * abs(t_ms - other) < 1000:
                    raise DuplicateFrameError(
                        f"camera {self.network.cameras[camera]!r} ({rate} fps) has two frames "
                        f"less than half a frame apart: t_ms {other} and {t_ms}"
                    )
        self._check_windows(camera, windows)
        first, stop = frame_ticks(t_ms, fps, rate)
        if self.next_tick is not None:
            first = max(first, self.next_tick)  # a held frame's ticks already counted: no data
        glob = np.asarray(windows, dtype=np.int64) + self.network.offsets[camera]
        for k in range(first, stop):
            entry = self._tick(k)
            entry.available[camera] = True
            if glob.size:
                entry.windows.append(glob)
        self._frames.setdefault((camera, bucket), []).append(t_ms)
        self._frames_by_tick.setdefault(tick, []).append((camera, bucket))
        return tick

    def _check_windows(self, camera: int, windows: np.ndarray | list[int]) -> None:
        size = int(self._sizes[camera])
        # Python's min/max beat numpy's on the handful of windows a frame holds.
        if len(windows) and (min(windows) < 0 or max(windows) >= size):
            bad = next(w for w in windows if not 0 <= w < size)
            raise NetworkError(
                f"window {bad} is outside the {size}-window grid of camera "
                f"{self.network.cameras[camera]!r}"
            )

    def add(self, camera: int, tick: int, windows: np.ndarray | list[int]) -> None:
        """One camera frame at ``tick``: ``windows`` are its occupied local window indices."""
        self._check_windows(camera, windows)
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
            for t in [t for t in self._frames_by_tick if t < b1 - self.tolerance]:
                for key in self._frames_by_tick.pop(t):
                    self._frames.pop(key, None)

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
