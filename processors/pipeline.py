"""The processor's logic without Faust: records in, closed ranges counted, checkpoints out.

:class:`StreamProcessor` is driven by the Faust agent (``processors/app.py``) but has no
asyncio in it, so tests and benchmarks can drive it directly. Its parts:

- ``on_record`` (event loop): validate, judge each frame against the ranges, keep it;
- ``due_batch`` (event loop): the ranges the processor clock has closed, as one batch;
- ``apply`` (executor thread): count the batch with the one shared
  :class:`~camtopo.core.topology.TopologyEstimator`, checkpoint it to the store, and now and
  then recompute the topology. Only this thread touches the estimator;
- ``ackable`` (event loop): records all of whose frames are checkpointed, to be acked so Kafka
  commits past them. A crash replays from the committed offsets; replayed frames of counted
  ticks are skipped by the range logic, so nothing is lost or counted twice.

After every rebalance Faust seeks each assigned partition back to its committed offset, even
one this worker keeps, so records already taken come again while the state built from them is
still here. ``on_record`` tells them by their offset (below the partition's next offset) and
acks them with the original record instead of judging them again (they would all be
``duplicate`` dead letters).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import numpy as np
from redis.exceptions import OutOfMemoryError

from camtopo.core.grid import Network
from camtopo.core.offsets import PartitionOffsets, next_offsets
from camtopo.core.ranges import ClosedBatch, ProcessorClock, RangeAssembler, Verdict
from camtopo.core.ticks import DuplicateFrameError, LateFrameError
from camtopo.core.topology import TopologyEstimator
from camtopo.formats import avro
from camtopo.settings import Settings
from processors import metrics
from processors.metrics import LOST
from processors.registry_sync import RegistrySync
from processors.validate import DeadLetter, Limits, ValidRecord, duplicate, validate
from topology_store.context import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

E = TypeVar("E")  # whatever the driver needs to ack a record (a Faust event)
P = ParamSpec("P")
R = TypeVar("R")


class Checkpoint(Protocol):
    """What the store restored (read-only: the store's own is a frozen dataclass)."""

    @property
    def range_id(self) -> int: ...

    @property
    def resume_offsets(self) -> dict[int, int]: ...

    @property
    def rows(self) -> int: ...

    @property
    def max_shard_range(self) -> int: ...


class CheckpointReport(Protocol):
    @property
    def durable_range(self) -> int: ...  # every shard is exact in the store through this range


class CountStore(Protocol):
    """What the processor needs of ``topology_store.store.TopologyStore``."""

    def load_into(self, estimator: TopologyEstimator) -> Checkpoint | None: ...

    def checkpoint(
        self,
        estimator: TopologyEstimator,
        range_id: int,
        resume_offsets: Mapping[int, int],
        shards: Sequence[int] | None = None,
    ) -> CheckpointReport: ...

    def restore_applied_rows(self, estimator: TopologyEstimator, range_id: int) -> int: ...

    def update_topology(
        self, estimator: TopologyEstimator, range_end_ms: int
    ) -> list[dict[str, Any]]: ...


@dataclass
class Applied:
    """What one :meth:`StreamProcessor.apply` did."""

    range_id: int
    counted_until: int | None  # every tick below this is counted and durable in Redis (None:
    # nothing became durable this time, see ``checkpoint_spread_ranges``)
    frames: int
    rejected: int
    seconds: float
    changes: list[dict[str, Any]] = field(default_factory=list)


class StreamProcessor(Generic[E]):
    def __init__(
        self,
        network: Network,
        settings: Settings,
        store: CountStore | None = None,
        engine: str = "fast",
    ) -> None:
        self.network = network
        self.settings = settings
        self.store = store
        self.grid = settings.range_grid()
        self.estimator = TopologyEstimator(network, settings.estimator_parameters(), engine)
        self.clock = ProcessorClock(settings.processor.idle_partition_seconds * 1000.0)
        cfg = settings.processor
        self.assembler = RangeAssembler(
            self.grid,
            silence_ms=cfg.camera_silence_seconds * 1000.0 if cfg.early_close else None,
            hold_ms=min(cfg.early_close_hold_seconds * 1000.0, self.grid.late_ms),
        )
        self.limits = Limits.from_settings(settings)
        self.decoder = avro.decoder(settings)  # file mode, or ids resolved via the registry
        self.replay_until_range = -1  # shards may hold ranges past the meta: replay one by one
        self._ack_now: list[E] = []
        self._offsets: dict[int, PartitionOffsets[E]] = {}
        self.redelivered = 0  # records read again after a rebalance (not judged again)
        self._ranges_since_topology = 0
        self._checkpoints = 0  # spread checkpoints so far: picks the slice of shards
        # Counted, not yet durable in Redis: (range, counted_until, ticks)
        self._since_checkpoint: list[tuple[int, int, np.ndarray]] = []
        self.last_checkpoint_wall = time.monotonic()
        self._late = metrics.LateMinute()
        self.registry: RegistrySync | None = None  # the camera registry's pick-up, if followed

    # --- start ------------------------------------------------------------------------------
    def restore(self) -> Checkpoint | None:
        """Load the stored counts; later records of counted ticks are then skipped."""
        if self.store is None:
            return None
        cp = self.store.load_into(self.estimator)
        if cp is None or cp.range_id < 0:
            return cp
        self.assembler.restart_at(cp.range_id)
        self.estimator.buffer.next_tick = self.grid.held_from(cp.range_id)
        self.replay_until_range = cp.max_shard_range
        log.info(
            "restored range %d (shards up to %d); resuming after tick %d",
            cp.range_id, cp.max_shard_range, self.estimator.buffer.next_tick,
        )  # fmt: skip
        return cp

    # --- records (event loop) -----------------------------------------------------------------
    def on_record(
        self,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        handle: E,
        wall_ms: float | None = None,
    ) -> DeadLetter | None:
        """Take one record. Returns a DeadLetter to publish (then ack), else None.

        Records with frames still to count are kept until :meth:`ackable` releases them. A
        record taken before (Faust re-reads from the committed offset after a rebalance) is
        not judged again, but acked with it (:meth:`PartitionOffsets.again`).
        """
        offsets = self._offsets.setdefault(partition, PartitionOffsets())
        again = offsets.again(offset, handle)
        if again is not None:
            self.redelivered += 1
            metrics.REDELIVERED.inc()
            self._ack_now += again
            return None
        wall_ms = time.time() * 1000.0 if wall_ms is None else wall_ms
        metrics.RECORDS_IN.inc()
        result = validate(value, record_ms, wall_ms, self.network, self.limits, self.decoder)
        if isinstance(result, ValidRecord) and self.assembler.is_duplicate(
            result.camera, result.ticks.tolist()
        ):
            result = duplicate(self.network, result)
        if isinstance(result, ValidRecord) and self.registry is not None:
            result = self.registry.judge(result)
        if isinstance(result, DeadLetter):
            metrics.DEAD_LETTERS.labels(result.reason).inc()
            offsets.dead_lettered(offset)
            return result
        # Only a record found valid moves the clock: a refused one may carry any timestamp.
        self.clock.observe(partition, record_ms, wall_ms)
        max_kept = None
        late = 0
        for tick, windows in zip(result.ticks.tolist(), result.windows, strict=True):
            verdict = self.assembler.verdict(tick, record_ms)
            metrics.FRAMES.labels(verdict.value).inc()
            if verdict in (Verdict.ACCEPTED, Verdict.HELD, Verdict.CONTEXT):
                self.assembler.add(result.camera, tick, windows, verdict)
                max_kept = tick if max_kept is None else max(max_kept, tick)
            elif verdict in LOST:
                late += 1
        if result.through is not None:
            self.assembler.progress(result.camera, result.through, min(record_ms, wall_ms))
        self._late.add(wall_ms, len(result.ticks), late)
        if max_kept is not None:
            offsets.keep(max_kept, offset, handle)
        else:
            self._ack_now.append(handle)
        return None

    def dead_letter_sent(self, partition: int, offset: int) -> list[E]:
        """The dead letter of the record at ``offset`` is on Kafka: the handles of its copies
        read again meanwhile, to ack with it."""
        return self._offsets[partition].sent(offset)

    # --- closing (event loop) -----------------------------------------------------------------
    def due_batch(
        self, wall_ms: float | None = None, behind: Sequence[int] = ()
    ) -> ClosedBatch | None:
        """The ranges the clock has closed, or None. Call again only after ``apply`` returned.

        ``behind``: partitions with records waiting on the broker (never idle).
        """
        wall_ms = time.time() * 1000.0 if wall_ms is None else wall_ms
        clock = self.clock.now(wall_ms, behind)
        if clock is not None:
            metrics.CLOCK_LAG.set(max(0.0, (wall_ms - clock) / 1000.0))
        at_most = None
        ct = self.assembler.closed_through
        if ct is not None and ct < self.replay_until_range:
            at_most = ct + 1  # replaying ranges some shards already hold: one range per batch
        early = self.assembler.closed_early
        batch = self.assembler.close(clock, at_most=at_most)
        metrics.RANGES_CLOSED_EARLY.inc(self.assembler.closed_early - early)
        metrics.OPEN_FRAMES.set(self.assembler.n_open_frames)
        return batch

    def backlogged(self) -> bool:
        """More frames waiting to be counted or checkpointed than the buffer holds: take no
        record until the close loop has caught up. Only frames that it will count and
        checkpoint without new records are weighed, so this never waits on a clock that only
        new records could move."""
        limit = self.settings.processor.buffer_frames
        pending = self.uncheckpointed_frames
        if self.assembler.n_open_frames + pending <= limit:  # cheap test first: runs per record
            return False
        clock = self.clock.peek()
        due = 0 if clock is None else self.assembler.due_frames(clock)
        return due + pending > limit

    def resume_offsets(self, counted_until: int) -> dict[int, int]:
        """Per partition, the lowest offset of a record with frames at or after the tick."""
        out = self.next_offsets
        for partition, offsets in self._offsets.items():
            lowest = offsets.lowest_kept_offset(counted_until)
            if lowest is not None:
                out[partition] = min(lowest, out.get(partition, lowest))
        return out

    # --- counting (executor thread) -----------------------------------------------------------
    def apply(self, batch: ClosedBatch, resume_offsets: Mapping[int, int]) -> Applied:
        started = time.perf_counter()
        est = self.estimator
        occupied = est.observations
        rejected = 0
        if self.registry is not None:
            self.registry.poll(est)
            batch = self.registry.without_inactive(batch)
        if batch.context:
            # Counted ticks the next block's padding reads: into the buffer below its frontier.
            frontier, est.buffer.next_tick = est.buffer.next_tick, None
            for cam, tick, windows in batch.context:
                try:
                    est.buffer.add(cam, tick, windows)
                except DuplicateFrameError:
                    rejected += 1
            est.buffer.next_tick = frontier
        for cam, tick, windows in zip(
            batch.cameras.tolist(), batch.ticks.tolist(), batch.windows, strict=True
        ):
            try:
                est.buffer.add(cam, tick, windows)
            except (LateFrameError, DuplicateFrameError) as exc:
                # The range logic should make this impossible; count it rather than crash.
                rejected += 1
                log.warning("frame not counted: %s", exc)
        est.advance(batch.frontier)
        # The counts now hold these frames (the topology update reads them from here).
        metrics.observe_many(
            metrics.DELAY, time.time() - batch.ticks * (self.settings.grid.tick_ms / 1000.0)
        )
        # Records are released (acked) only once no block will read their ticks again: the
        # next block's padding reads ``tolerance`` ticks before the first uncounted one.
        counted_until = self.grid.held_from(batch.range_id) - self.grid.tolerance
        self._since_checkpoint.append((batch.range_id, counted_until, batch.ticks))
        changes: list[dict[str, Any]] = []
        replaying = batch.range_id <= self.replay_until_range
        if self.store is not None and replaying:
            self._retrying("restore", self.store.restore_applied_rows, est, batch.range_id)
        # Recovery needs each replayed range checkpointed whole; else a slice of the shards,
        # unless the counted records waiting for it fill half the buffer (a worker behind
        # counts big batches: spread over ten of them, their records would pile up unacked).
        whole = (
            self.store is None
            or replaying
            or self.uncheckpointed_frames > self.settings.processor.buffer_frames // 2
        )
        done, changes = self.checkpoint(resume_offsets, whole=whole)
        seconds = time.perf_counter() - started
        metrics.RANGE_SECONDS.observe(seconds)
        metrics.RANGES_CLOSED.inc(max(1, len(batch.ranges)))
        metrics.LAST_RANGE.set(batch.range_id)
        metrics.COUNTED_THROUGH.set(self.grid.end_ms(batch.range_id) / 1000.0)
        metrics.FRAMES_COUNTED.inc(len(batch) - rejected)
        metrics.OCCUPIED_COUNTED.inc(est.observations - occupied)
        metrics.ENGINE_BYTES.set(getattr(est.counts, "nbytes", 0))
        return Applied(batch.range_id, done, len(batch), rejected, seconds, changes)

    def acked_until_pending(self) -> int:
        """counted_until of the newest counted-but-not-checkpointed batch (resume offsets)."""
        return self._since_checkpoint[-1][1] if self._since_checkpoint else 0

    @property
    def uncheckpointed(self) -> int:
        """Closed batches counted but not yet durable in Redis (every shard holding them)."""
        return len(self._since_checkpoint)

    @property
    def uncheckpointed_frames(self) -> int:
        """Frames counted but not yet durable: their records wait, unacked, for a checkpoint."""
        return sum(len(ticks) for _, _, ticks in self._since_checkpoint)

    def spread_slice(self) -> list[int]:
        """The shards the next spread checkpoint writes: every ``checkpoint_spread_ranges``
        checkpoints in a row cover every shard once."""
        n = self.settings.processor.checkpoint_spread_ranges
        k = self._checkpoints % n
        self._checkpoints += 1
        return [s for s in range(self.settings.redis.shards) if s % n == k]

    def checkpoint(
        self, resume_offsets: Mapping[int, int], whole: bool = True
    ) -> tuple[int | None, list[dict[str, Any]]]:
        """Checkpoint what was counted since the last one (executor thread): every shard if
        ``whole``, else the next slice. Every ``topology_every_ranges`` ranges, recompute the
        topology and log its changes.

        Returns (counted_until of the newest range now durable in Redis, or None; changes).
        """
        if not self._since_checkpoint:
            return None, []
        range_id = self._since_checkpoint[-1][0]
        changes: list[dict[str, Any]] = []
        durable = range_id
        if self.store is not None:
            shards = None if whole else self.spread_slice()
            report = self._retrying("checkpoint", self.store.checkpoint, self.estimator,
                                    range_id, resume_offsets, shards)  # fmt: skip
            durable = report.durable_range
            self._ranges_since_topology += 1
            if self._ranges_since_topology >= self.settings.processor.topology_every_ranges:
                try:
                    changes = self.store.update_topology(
                        self.estimator, int(self.grid.end_ms(range_id))
                    )
                    self._ranges_since_topology = 0
                except TRANSIENT_ERRORS as exc:  # counts are safe; adjacency is redone next time
                    log.warning("topology update after range %d failed: %s", range_id, exc)
        self.last_checkpoint_wall = time.monotonic()
        now = time.time()
        counted_until = None
        while self._since_checkpoint and self._since_checkpoint[0][0] <= durable:
            _, counted_until, ticks = self._since_checkpoint.pop(0)
            metrics.observe_many(
                metrics.DURABLE_DELAY, now - ticks * (self.settings.grid.tick_ms / 1000.0)
            )
        return counted_until, changes

    def _retrying(self, what: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn`` through a Redis outage: counts stay in memory and nothing is acked until
        it succeeds; past ``checkpoint_retry_seconds`` the error propagates (worker stops). A
        full Redis is waited for as long as it takes (an operator frees memory; a restart would
        only find it full again), with ``camtopo_store_retries_total`` rising for the alert."""
        deadline = time.monotonic() + self.settings.processor.checkpoint_retry_seconds
        wait = 0.2
        while True:
            try:
                return fn(*args, **kwargs)
            except TRANSIENT_ERRORS as exc:
                if time.monotonic() >= deadline and not isinstance(exc, OutOfMemoryError):
                    raise
                metrics.STORE_RETRIES.labels(what).inc()
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, wait)
                time.sleep(wait)
                wait = min(2 * wait, 5.0)

    # --- acks (event loop) --------------------------------------------------------------------
    def ackable(self, counted_until: int | None = None) -> list[E]:
        """Handles of records whose frames are all counted (or that kept none)."""
        out = self._ack_now
        self._ack_now = []
        if counted_until is not None:
            for offsets in self._offsets.values():
                out.extend(offsets.release_before(counted_until))
        metrics.UNACKED.set(self.unacked)
        return out

    @property
    def next_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the last record taken by :meth:`on_record` (records
        read again after a rebalance do not move it back)."""
        return next_offsets(self._offsets)

    @property
    def unacked(self) -> int:
        return sum(len(offsets.kept) for offsets in self._offsets.values())


__all__: Sequence[str] = ("Applied", "CountStore", "StreamProcessor")
