"""The partitioned pipeline's logic, with no I/O: ranges per input partition, then whole ranges.

The paper (section 8) proposes splitting the central node. Counting a tick needs every camera's
frame of it (padding reads every window), but a *row* of the counts (window i against all
others) needs only window i's own occupancy plus everybody's padded occupancy. So the work
splits in two stages that each scale with more processes:

1. :class:`PartitionRanges` — any number of *assembler* workers share the input partitions
   (one consumer group). Each partition is assembled into event-time ranges by **its own**
   clock (the highest record timestamp seen on it, or wall time while it is idle), so what a
   partition's block holds depends on that partition's records only: a replay after a crash or
   a rebalance rebuilds it the same. A closed range is handed out as a :class:`RangeBlock`.
2. :class:`RangeCollector` — every *counting* worker reads every partition's blocks and gets
   whole ranges once each partition has closed them; it then counts only the rows it owns.

Blocks are deduplicated by range: a partition's ranges are closed in order, so a block whose
ranges were already received (a worker republishing after a restart) is dropped, and of a block
that overlaps what was received only the newer ranges are kept. The first block of a range is
complete: its records are acknowledged only once the block is on the broker.

After every rebalance Faust seeks each assigned partition back to its committed offset, even
one this worker keeps with its state: :meth:`PartitionRanges.redelivery` tells the records
read again by their offset, so they are acked with their original instead of judged again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.offsets import PartitionOffsets, next_offsets
from camtopo.core.ranges import ProcessorClock, RangeAssembler, RangeGrid, Verdict

H = TypeVar("H")  # whatever the driver needs to acknowledge a record


def window_shards(network: Network, n_shards: int) -> np.ndarray:
    """int64 (n_windows,): the store shard of every window (its camera index mod ``n_shards``)."""
    return (network.window_camera % n_shards).astype(np.int64)


def owned_windows(network: Network, n_shards: int, shards: Iterable[int]) -> np.ndarray:
    """bool (n_windows,): windows whose rows live in ``shards``."""
    mine = np.zeros(n_shards, dtype=np.bool_)
    mine[list(shards)] = True
    owned: np.ndarray = mine[window_shards(network, n_shards)]
    return owned


@dataclass
class RangeBlock:
    """One partition's frames of ranges ``first_range`` .. ``range_id`` (all closed).

    ``cameras`` / ``ticks`` int64 (n,), ``windows`` n int64 arrays of local windows. A range in
    the span with no frame is closed and empty.
    """

    partition: int
    first_range: int
    range_id: int
    cameras: np.ndarray
    ticks: np.ndarray
    windows: list[np.ndarray]

    def __post_init__(self) -> None:
        if self.first_range > self.range_id:
            raise ValueError(f"block spans ranges {self.first_range}..{self.range_id}")

    def __len__(self) -> int:
        return int(self.ticks.size)


@dataclass
class _Partition(Generic[H]):
    assembler: RangeAssembler
    clock: ProcessorClock
    offsets: PartitionOffsets[H] = field(default_factory=PartitionOffsets)


class PartitionRanges(Generic[H]):
    """Stage 1: frames of the partitions this worker owns, closed into blocks per partition.

    ``published``: partition -> highest range already on the ranges topic (from whoever owned
    it before); a partition taken over resumes after it. An older value than the truth is
    harmless (the collector drops ranges it has); a newer one would drop frames, so callers
    pass only what they read from the topic or published themselves.
    """

    def __init__(
        self,
        grid: RangeGrid,
        idle_ms: float,
        published: dict[int, int] | None = None,
        silence_ms: float | None = None,
        hold_ms: float = 0.0,
    ):
        self.grid = replace(grid, tolerance=0)  # padding is the counting stage's business
        self.idle_ms = idle_ms
        self.silence_ms, self.hold_ms = silence_ms, hold_ms  # early close (None: off)
        self.published: dict[int, int] = dict(published or {})
        self.parts: dict[int, _Partition[H]] = {}
        self.redelivered = 0  # records read again after a rebalance (not judged again)

    def assign(self, partitions: Iterable[int], wall_ms: float) -> None:
        """The partitions this worker now owns: drop the others' state (their records will be
        replayed by the new owner from Kafka's committed offsets), start the new ones."""
        wanted = set(partitions)
        for p in [p for p in self.parts if p not in wanted]:
            del self.parts[p]
        for p in sorted(wanted - set(self.parts)):
            self.start(p, wall_ms)

    def start(self, partition: int, wall_ms: float) -> None:
        """Take a partition on (its first record may come before the assignment is seen)."""
        if partition in self.parts:
            return
        assembler = RangeAssembler(self.grid, silence_ms=self.silence_ms, hold_ms=self.hold_ms)
        if partition in self.published:
            assembler.restart_at(self.published[partition])
        clock = ProcessorClock(self.idle_ms)
        clock.assign([partition], wall_ms)
        self.parts[partition] = _Partition(assembler, clock)

    def redelivery(self, partition: int, offset: int, handle: H) -> list[H] | None:
        """None for a record not taken before: it is now (judge it, then :meth:`take` it with
        its offset). Else it was read again and the partition's state already holds it: the
        handles to ack now (:meth:`PartitionOffsets.again`; a held original's copies come out
        of :meth:`delivered` with it). A partition whose state was dropped (revoked) starts
        afresh: its records are new."""
        again = self.parts[partition].offsets.again(offset, handle)
        if again is not None:
            self.redelivered += 1
        return again

    def dead_lettered(self, partition: int, offset: int) -> None:
        """The record at ``offset`` went to the dead-letter topic: its copies wait for that."""
        self.parts[partition].offsets.dead_lettered(offset)

    def dead_letter_sent(self, partition: int, offset: int) -> list[H]:
        """The dead letter of the record at ``offset`` is on Kafka: its copies, to ack with it."""
        part = self.parts.get(partition)
        return [] if part is None else part.offsets.sent(offset)  # revoked: replayed

    @property
    def next_offsets(self) -> dict[int, int]:
        """Per partition held, the offset after the last record taken."""
        return next_offsets({p: part.offsets for p, part in self.parts.items()})

    def is_duplicate(self, partition: int, camera: int, ticks: Sequence[int]) -> bool:
        return self.parts[partition].assembler.is_duplicate(camera, ticks)

    def take(
        self,
        partition: int,
        camera: int,
        ticks: Sequence[int],
        windows: Sequence[np.ndarray],
        record_ms: int,
        wall_ms: float,
        handle: H,
        offset: int,
        through: int | None = None,
    ) -> tuple[list[Verdict], H | None]:
        """Judge and keep a record's frames. Returns the verdicts, and the handle when the
        record kept no frame (ack it now); else it is released by :meth:`delivered`.
        ``offset``: the record's, so that a copy read again is released with it.
        ``through``: the highest tick the record speaks for (early close)."""
        part = self.parts[partition]
        part.clock.observe(partition, record_ms, wall_ms)
        verdicts = []
        kept = None
        for tick, w in zip(ticks, windows, strict=True):
            verdict = part.assembler.verdict(tick, record_ms)
            if verdict is Verdict.ACCEPTED:
                part.assembler.add(camera, tick, w, verdict)
                kept = tick if kept is None else max(kept, tick)
            verdicts.append(verdict)
        if through is not None:
            part.assembler.progress(camera, through, min(record_ms, wall_ms))
        if kept is None:
            return verdicts, handle
        part.offsets.keep(kept, offset, handle)
        return verdicts, None

    def due(self, wall_ms: float, behind: Iterable[int] = ()) -> list[RangeBlock]:
        """Blocks of the ranges each partition's clock has closed (at most one per partition)."""
        waiting = set(behind)
        out = []
        for p, part in self.parts.items():
            busy = [p] if p in waiting else []
            clock = part.clock.now(wall_ms, busy)
            a = part.assembler
            idle = not busy and wall_ms - part.clock.last_seen[p] >= self.idle_ms
            if clock is None:
                if not idle:
                    continue
                clock = wall_ms  # nothing ever arrived: wall time closes its (empty) ranges
            if a.closed_through is None and not a.open_ranges and idle:
                # An idle partition with no history: close empty ranges from now on, so the
                # counting workers need not wait for cameras that send nothing.
                a.restart_at(self.grid.last_closed(clock) - 1, counted=False)
            before = a.closed_through
            batch = a.close(clock)
            if batch is None:
                continue
            first = before + 1 if before is not None else min(batch.ranges, default=batch.range_id)
            out.append(
                RangeBlock(p, first, batch.range_id, batch.cameras, batch.ticks, batch.windows)
            )
        return out

    def delivered(self, block: RangeBlock) -> list[H]:
        """The block is on the broker: handles of the partition's records it completes."""
        self.published[block.partition] = max(
            block.range_id, self.published.get(block.partition, block.range_id)
        )
        part = self.parts.get(block.partition)
        if part is None:  # revoked meanwhile: its new owner replays and republishes
            return []
        return part.offsets.release_before(self.grid.first_tick(block.range_id + 1))

    @property
    def unacked(self) -> int:
        return sum(len(part.offsets.kept) for part in self.parts.values())

    @property
    def open_frames(self) -> int:
        return sum(part.assembler.n_open_frames for part in self.parts.values())


@dataclass
class WholeRanges:
    """Every partition's frames of ranges ``first_range`` .. ``range_id``, ready to count."""

    first_range: int
    range_id: int
    cameras: np.ndarray
    ticks: np.ndarray
    windows: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.ticks.size)


class RangeCollector:
    """Stage 2: blocks of every partition in, whole ranges out, in order, each once.

    ``start_range``: ranges below it are already counted and dropped (None: start at the
    first range every partition has reached). Frames of ranges not yet whole are buffered;
    :attr:`buffered` lets the caller pause partitions that run far ahead.
    """

    def __init__(self, grid: RangeGrid, n_partitions: int, start_range: int | None = None):
        self.grid = grid
        self.n_partitions = n_partitions
        self.next = start_range
        self.through: dict[int, int] = {}  # partition -> highest range received
        self.first: dict[int, int] = {}  # partition -> first range of its first block
        self._frames: dict[int, list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]] = {}
        self.buffered = 0
        self.duplicates = 0  # blocks (or parts of blocks) dropped as already received
        self.gaps: list[tuple[int, int, int]] = []  # (partition, first, last) ranges not seen

    def add(self, block: RangeBlock) -> int:
        """Take a block; returns the frames kept."""
        if not 0 <= block.partition < self.n_partitions:
            raise ValueError(
                f"block of partition {block.partition}; expected 0..{self.n_partitions - 1}"
            )
        seen = self.through.get(block.partition)
        if seen is not None and block.range_id <= seen:
            self.duplicates += 1
            return 0
        if seen is None and self.next is not None and block.first_range > self.next:
            # Nothing on the topic for ranges the counts still need: past the retention, or
            # the partition had no data then; the caller says so.
            self.gaps.append((block.partition, self.next, block.first_range - 1))
        lo = block.first_range if seen is None else max(block.first_range, seen + 1)
        if seen is not None and lo > block.first_range:
            self.duplicates += 1
        if self.next is not None:
            lo = max(lo, self.next)
        self.through[block.partition] = block.range_id
        self.first.setdefault(block.partition, lo)
        if len(block) == 0:
            return 0
        ranges = block.ticks // self.grid.ticks_per_range
        keep = ranges >= lo
        if not keep.any():
            return 0
        idx = np.flatnonzero(keep)
        for k in np.unique(ranges[idx]).tolist():
            sel = idx[ranges[idx] == k]
            self._frames.setdefault(k, []).append(
                (block.cameras[sel], block.ticks[sel], [block.windows[e] for e in sel.tolist()])
            )
        self.buffered += int(idx.size)
        return int(idx.size)

    @property
    def whole_through(self) -> int | None:
        """Highest range every partition has closed (None until each sent a block)."""
        if len(self.through) < self.n_partitions:
            return None
        return min(self.through.values())

    def ready(self, single: bool = False) -> WholeRanges | None:
        """The next whole ranges as one batch (only the next range if ``single``), or None."""
        last = self.whole_through
        if last is None:
            return None
        if self.next is None:
            self.next = min(self.first.values())
        if single:
            last = min(last, self.next)
        if last < self.next:
            return None
        parts = [f for k in range(self.next, last + 1) for f in self._frames.pop(k, [])]
        for k in [k for k in self._frames if k <= last]:  # below start: nothing to count
            del self._frames[k]
        first, self.next = self.next, last + 1
        cams = [p[0] for p in parts]
        ticks = [p[1] for p in parts]
        windows = [w for p in parts for w in p[2]]
        out = WholeRanges(
            first,
            last,
            np.concatenate(cams) if cams else np.zeros(0, np.int64),
            np.concatenate(ticks) if ticks else np.zeros(0, np.int64),
            windows,
        )
        self.buffered -= len(out)
        return out

    def ahead(self, limit: int) -> list[int]:
        """Partitions to pause: more than ``limit`` frames wait and they are past the slowest."""
        if self.buffered <= limit:
            return []
        last = self.whole_through
        if last is None:  # some partition has sent nothing yet: wait for it
            return list(self.through)
        return [p for p, k in self.through.items() if k > last]
