"""Event-time ranges of the streaming processor (paper section 6.1), with no I/O.

Frames are grouped by *event time* (their tick) into ranges of Tr seconds. A range closes Td
seconds after its end, by the **processor clock**: a watermark over the input partitions, each
partition's clock being the highest Kafka record timestamp (CreateTime, set by the producer at
send) seen on it. Because every decision reads record timestamps, never the moment the
processor happens to run, a replay of the same records after a crash makes the same decisions.

- :class:`RangeGrid` — the arithmetic: tick -> range, range end, close time, lateness.
- :class:`ProcessorClock` — the watermark: the lowest partition clock among partitions that
  are not idle; while every partition is idle it advances with the wall clock, so the last
  ranges of a stream that stops still close.
- :class:`RangeAssembler` — frames of open ranges, the duplicate check, and which ranges a
  given clock closes, handed out as a :class:`ClosedBatch` for the estimator.

**Early close** (``silence_ms`` set): a range also closes as soon as every *live* camera has
delivered it, i.e. sent a frame (of any status: an empty frame, or MISSING for a dark camera)
for a tick past its end, and the clock is at least ``hold_ms`` past its end; Td stays the cap.
It is sound because a camera's records come in order (one key, one partition; a frame behind
the camera's newest is refused as a duplicate): once its progress passed a range, no frame of
it for that range can follow. And because the clock is the low watermark of the partitions
(every record stamped before it has been read), ``hold_ms`` lets in every frame sent within
that long of its range's end, whichever partitions it comes from and however they interleave:
a camera not seen yet, or back from silence, that sends promptly is never cut off. A camera is
live while its newest record is stamped within ``silence_ms`` of the clock; one that goes
silent stops holding ranges after that long. Only frames sent later than ``hold_ms`` after
their range's end by a camera that was not live when it closed are lost (``closed``, in the
late metric); whether such a frame came just before or just after the close can depend on
timing, as can lateness through an idle partition with the Td rule alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class RangeGrid:
    """Ranges of ``ticks_per_range`` ticks; range k holds ticks [k * n, (k + 1) * n)."""

    ticks_per_range: int
    tick_ms: float
    late_ms: float  # Td in ms
    tolerance: int  # temporal padding, ticks: the buffer holds this many ticks past a close

    def __post_init__(self) -> None:
        if self.ticks_per_range < 1 or self.tick_ms <= 0 or self.late_ms < 0 or self.tolerance < 0:
            raise ValueError(f"bad range grid {self}")

    def range_of(self, tick: int) -> int:
        return tick // self.ticks_per_range

    def first_tick(self, k: int) -> int:
        return k * self.ticks_per_range

    def end_ms(self, k: int) -> float:
        """Event time at which range k ends (exclusive)."""
        return (k + 1) * self.ticks_per_range * self.tick_ms

    def close_ms(self, k: int) -> float:
        """Processor clock at which range k closes: its end + Td."""
        return self.end_ms(k) + self.late_ms

    def last_closed(self, clock_ms: float) -> int:
        """Highest range id whose close time is <= ``clock_ms``."""
        return self.last_ended(clock_ms, self.late_ms)

    def last_ended(self, clock_ms: float, after_ms: float) -> int:
        """Highest range id that ended at least ``after_ms`` before ``clock_ms``."""
        per_range = self.ticks_per_range * self.tick_ms
        return math.floor((clock_ms - after_ms) / per_range) - 1

    def is_late(self, tick: int, record_ms: float) -> bool:
        """Was the record carrying this frame sent at or after its range's close time?"""
        return record_ms >= self.close_ms(self.range_of(tick))

    def held_from(self, closed_through: int) -> int:
        """First tick not yet counted once ranges <= ``closed_through`` are counted."""
        return self.first_tick(closed_through + 1) - self.tolerance


class ProcessorClock:
    """Watermark over partitions: min of the non-idle partitions' highest record timestamps.

    ``wall_ms`` arguments are the caller's wall clock (ms); a partition is idle when it gave no
    record for ``idle_ms``. A partition that is assigned but has not yet given a record holds
    the clock back (None) until it has been idle that long, so a fresh start waits for every
    partition's first fetch instead of closing ranges on the first partition alone.
    """

    def __init__(self, idle_ms: float) -> None:
        if idle_ms <= 0:
            raise ValueError("idle_ms must be positive")
        self.idle_ms = idle_ms
        self.high: dict[int, int] = {}  # partition -> highest record timestamp
        self.last_seen: dict[int, float] = {}  # partition -> wall ms of its last record
        self._floor: float | None = None  # the clock never goes backwards

    def assign(self, partitions: Iterable[int], wall_ms: float) -> None:
        """Partitions this processor reads (a rebalance may add or remove some)."""
        wanted = set(partitions)
        for p in list(self.last_seen):
            if p not in wanted:
                del self.last_seen[p]
                self.high.pop(p, None)
        for p in wanted:
            self.last_seen.setdefault(p, wall_ms)

    def observe(self, partition: int, record_ms: int, wall_ms: float) -> int:
        """A *validated* record on ``partition``; returns the partition's clock *before* it.

        The record's timestamp counts at most up to ``wall_ms``: a record stamped ahead of the
        processor's wall clock (a skewed or forged producer) cannot carry the clock, and so the
        closing of every range, ahead of real time. A replay (wall time long past) is unchanged.
        """
        stamp = min(record_ms, math.floor(wall_ms))
        before = self.high.get(partition, stamp)
        if stamp > self.high.get(partition, -(2**62)):
            self.high[partition] = stamp
        self.last_seen[partition] = wall_ms
        return before

    def peek(self) -> int | None:
        """A lower bound of the next :meth:`now` (no side effects): the lowest high of every
        assigned partition, idle or not; None while one of them has not spoken."""
        if not self.last_seen or any(p not in self.high for p in self.last_seen):
            return None
        return min(self.high[p] for p in self.last_seen)

    def now(self, wall_ms: float, behind: Iterable[int] = ()) -> float | None:
        """The processor clock in ms, or None while no partition has given a timestamp.

        ``behind``: partitions known to have records waiting (a catch-up after a restart), or
        whose broker has not answered a fetch lately (an outage: producers are buffering). They
        are never idle, and their idleness starts again once they are no longer behind, so the
        end of an outage does not close at once every range it spanned.
        """
        waiting = set(behind)
        for p in waiting & self.last_seen.keys():
            self.last_seen[p] = max(self.last_seen[p], wall_ms)
        if not self.high:
            return None
        active = [
            p for p, seen in self.last_seen.items() if wall_ms - seen < self.idle_ms or p in waiting
        ]
        if active:
            if any(p not in self.high for p in active):
                clock = None  # some partition has not spoken yet: wait for it (or its idling)
            else:
                clock = float(min(self.high[p] for p in active))
        else:
            # Everything idle: the stream paused or ended; let wall time close its last ranges.
            last_wall = max(self.last_seen.values())
            clock = max(self.high.values()) + (wall_ms - last_wall)
        if clock is None:
            return self._floor
        if self._floor is None or clock > self._floor:
            self._floor = clock
        return self._floor


class Verdict(Enum):
    ACCEPTED = "accepted"  # into an open range
    HELD = "held"  # closed range, tick still held for padding: counted with the next batch
    LATE = "late"  # sent after its range's close time
    CLOSED = "closed"  # its range closed, and its tick was counted, before it came: lost
    REPLAYED = "replayed"  # after a restart: a tick a previous run counted (Kafka replays it)
    CONTEXT = "context"  # after a restart: a counted tick the next block's padding reads


@dataclass
class ClosedBatch:
    """Frames to count now: every range <= ``range_id`` is closed.

    ``cameras`` / ``ticks`` int64 (n,), ``windows`` list of n int64 arrays (local windows).
    ``frontier`` is the first tick of the oldest open range: advance the estimator to it.
    """

    range_id: int
    frontier: int
    cameras: np.ndarray
    ticks: np.ndarray
    windows: list[np.ndarray]
    ranges: list[int] = field(default_factory=list)  # ranges closed by this batch (with data)
    context: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # after a restart

    def __len__(self) -> int:
        return int(self.ticks.size)


class RangeAssembler:
    """Frames of open ranges, keyed by range; hands out closed ranges in order."""

    def __init__(
        self,
        grid: RangeGrid,
        closed_through: int | None = None,
        silence_ms: float | None = None,
        hold_ms: float = 0.0,
    ) -> None:
        if silence_ms is not None and (silence_ms <= 0 or not 0 <= hold_ms <= grid.late_ms):
            raise ValueError(f"early close needs silence_ms > 0, 0 <= hold_ms <= Td ({grid})")
        self.grid = grid
        self.silence_ms = silence_ms  # None: ranges close Td after their end only
        self.hold_ms = hold_ms  # early close: never sooner than this after a range's end
        # camera -> (highest tick it has spoken for, timestamp of its newest record)
        self._progress: dict[int, tuple[int, float]] = {}
        self.closed_early = 0  # batches closed before their Td
        self.closed_through = closed_through  # highest closed range id (None: none yet)
        self._open: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        self._held: list[tuple[int, int, np.ndarray]] = []  # frames of closed, uncounted ticks
        self._seen: dict[int, set[int]] = {}  # range -> camera << 32 | tick offset, for dups
        self.n_open_frames = 0
        # After a restart: ticks [a, b) were counted, but the next block's temporal padding
        # reads them; their replayed frames go to the buffer as context only.
        self.context_window: tuple[int, int] | None = None
        self._context: list[tuple[int, int, np.ndarray]] = []
        self.replayed_until: int | None = None  # ticks below were counted by a previous run
        # camera -> newest tick stored: a camera's records come in order (one key, one
        # partition), so a tick at or before it is a record sent again, whatever its range.
        self._newest: dict[int, int] = {}

    def restart_at(self, closed_through: int, counted: bool = True) -> None:
        """Resume after ranges <= ``closed_through`` were counted (by a previous run; not
        ``counted``: closed empty, so frames that come for them are lost, not replayed)."""
        self.closed_through = closed_through
        held = self.grid.held_from(closed_through)
        self.context_window = (held - self.grid.tolerance, held)
        self.replayed_until = held if counted else None

    @property
    def held_from(self) -> int | None:
        """First tick not counted yet, or None before the first close."""
        if self.closed_through is None:
            return None
        return self.grid.held_from(self.closed_through)

    def _key(self, camera: int, tick: int) -> int:
        return (camera << 32) | (tick % self.grid.ticks_per_range)

    def is_duplicate(self, camera: int, ticks: Iterable[int]) -> bool:
        """Would any of these frames repeat a (camera, tick) already stored, or go back behind
        the camera's newest one (a record sent again after its range was counted)?"""
        local: set[tuple[int, int]] = set()
        newest = self._newest.get(camera)
        for tick in ticks:
            if (camera, tick) in local or (newest is not None and tick <= newest):
                return True
            local.add((camera, tick))
            seen = self._seen.get(self.grid.range_of(tick))
            if seen is not None and self._key(camera, tick) in seen:
                return True
        return False

    def verdict(self, tick: int, record_ms: float) -> Verdict:
        """Where a frame of ``tick`` sent at ``record_ms`` goes (pure; nothing is stored)."""
        if self.grid.is_late(tick, record_ms):
            return Verdict.LATE
        k = self.grid.range_of(tick)
        if self.closed_through is not None and k <= self.closed_through:
            held_from = self.grid.held_from(self.closed_through)
            if tick >= held_from:
                return Verdict.HELD
            cw = self.context_window
            if cw is not None and cw[0] <= tick < cw[1]:
                return Verdict.CONTEXT
            if self.replayed_until is not None and tick < self.replayed_until:
                return Verdict.REPLAYED
            return Verdict.CLOSED
        return Verdict.ACCEPTED

    def add(self, camera: int, tick: int, windows: np.ndarray, verdict: Verdict) -> None:
        """Store a frame whose verdict was ACCEPTED or HELD."""
        k = self.grid.range_of(tick)
        frame = (camera, tick, windows)
        if verdict is Verdict.ACCEPTED:
            self._open.setdefault(k, []).append(frame)
            self.n_open_frames += 1
        elif verdict is Verdict.HELD:
            self._held.append(frame)
        elif verdict is Verdict.CONTEXT:
            self._context.append(frame)
        else:
            raise ValueError(f"a {verdict.value} frame is not stored")
        self._seen.setdefault(k, set()).add(self._key(camera, tick))
        if tick > self._newest.get(camera, tick - 1):
            self._newest[camera] = tick

    def progress(self, camera: int, through_tick: int, record_ms: float) -> None:
        """The camera's record stamped ``record_ms`` speaks for every tick up to
        ``through_tick`` (frames of any status). Call for each accepted record, in order."""
        before = self._progress.get(camera)
        if before is not None:
            through_tick = max(through_tick, before[0])
            record_ms = max(record_ms, before[1])
        self._progress[camera] = (through_tick, record_ms)

    def complete_through(self, clock_ms: float) -> int | None:
        """Highest range every live camera has delivered, ended ``hold_ms`` before
        ``clock_ms`` (None: early close off, or no camera live)."""
        if self.silence_ms is None:
            return None
        since = clock_ms - self.silence_ms
        live = [tick for tick, stamp in self._progress.values() if stamp >= since]
        if not live:
            return None
        # Silent cameras are forgotten: they hold nothing, and memory stays bounded.
        if len(live) < len(self._progress):
            self._progress = {c: v for c, v in self._progress.items() if v[1] >= since}
        # A frame in range k + 1, not just one at k's last tick: a camera faster than the
        # network's tick rate sends several frames of one tick (OR-ed), maybe in two records.
        delivered = self.grid.range_of(min(live)) - 1
        return min(delivered, self.grid.last_ended(clock_ms, self.hold_ms))

    def due_frames(self, clock_ms: float) -> int:
        """Frames stored for ranges the clock ``clock_ms`` has closed by Td: what the next
        :meth:`close` at that clock, or later, hands out at the latest."""
        last = self.grid.last_closed(clock_ms)
        return len(self._held) + sum(len(v) for k, v in self._open.items() if k <= last)

    @property
    def open_ranges(self) -> list[int]:
        return sorted(self._open)

    def close(self, clock_ms: float | None, at_most: int | None = None) -> ClosedBatch | None:
        """Close every range the clock has passed, or (early close) every live camera has
        delivered (up to ``at_most``); None if none closes."""
        if clock_ms is None:
            return None
        last = self.grid.last_closed(clock_ms)
        early = self.complete_through(clock_ms)
        by_data = False
        if early is not None and early > last:
            last, by_data = early, True
        if at_most is not None:
            last = min(last, at_most)
        if self.closed_through is None:
            if not self._open or min(self._open) > last:
                return None  # the first close waits until a range with data is due
        elif last <= self.closed_through:
            return None
        if by_data and (at_most is None or at_most > self.grid.last_closed(clock_ms)):
            self.closed_early += 1
        frames = list(self._held)
        self._held.clear()
        closed = [k for k in self._open if k <= last]
        for k in sorted(closed):
            frames.extend(self._open.pop(k))
        self.n_open_frames = sum(len(v) for v in self._open.values())
        self.closed_through = last
        context, self._context = self._context, []
        self.context_window = None  # the first block after the restart has its context now
        # Duplicate keys are needed only while a tick can still be accepted or held.
        oldest_needed = self.grid.range_of(self.grid.held_from(last))
        for k in [k for k in self._seen if k < oldest_needed]:
            del self._seen[k]
        return ClosedBatch(
            range_id=last,
            frontier=self.grid.first_tick(last + 1),
            cameras=np.fromiter((f[0] for f in frames), dtype=np.int64, count=len(frames)),
            ticks=np.fromiter((f[1] for f in frames), dtype=np.int64, count=len(frames)),
            windows=[f[2] for f in frames],
            ranges=sorted(closed),
            context=context,
        )
