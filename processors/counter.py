"""Counting workers of the partitioned pipeline (`camtopo process --role count`).

Every counting worker reads every partition of the ranges topic (whole ranges need every
camera: padding reads all windows) and counts only the rows of the Redis shards it owns. Which
shards it owns is decided by Kafka: the workers form one consumer group on an empty topic with
one partition per shard (``counter_shards_topic``), so adding a worker, or losing one, moves
shards through an ordinary group rebalance. On every change of its shards a worker rebuilds:
it loads its shards' rows from Redis, claims them (a lease token in Redis that every write
checks, so a worker that lost a shard cannot overwrite it), and replays the ranges topic from
the oldest range its shards hold — exactly the single worker's crash recovery, per shard.

The worker that owns shard 0 is the *leader*: it also keeps the transit evidence (it needs
every camera's blocks, which every worker has) and joins all workers' half-edges into the
topology and its change events. Nothing long runs between two ranges: each range refreshes
the half-edges of a few owned shards only (a pass over all rows took ~4 s at 1,000 cameras),
and the join runs in a thread of its own (on a frozen copy of the transit evidence) — at
1,000 cameras it reads ~7 M half-edges and took 2-7 s. Both take at most
``topology_max_share`` of the time. :class:`RowCounter` is the logic without Kafka;
:class:`processors.counting_worker.CountingWorker` is its Kafka loop.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from camtopo.core.adjacency import HalfEdgeIndex
from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import mutual_edges
from camtopo.core.grid import Network
from camtopo.core.parameters import EstimatorParameters
from camtopo.core.partitioned import RangeCollector, WholeRanges, owned_windows, window_shards
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from processors import metrics
from topology_store.context import TRANSIENT_ERRORS
from topology_store.store import NO_RANGE, LeaseLost, TopologyStore

log = logging.getLogger(__name__)


@dataclass
class Counted:
    """What one :meth:`RowCounter.count` did."""

    first_range: int
    range_id: int
    frames: int
    rejected: int
    rows_written: int
    seconds: float
    changes: list[dict[str, Any]]


class RowCounter:
    """The rows of some shards, counted from whole ranges and checkpointed under a lease."""

    def __init__(self, network: Network, settings: Settings, store: TopologyStore) -> None:
        self.network = network
        self.settings = settings
        self.store = store
        self.grid = settings.range_grid()
        self.shards: list[int] = []
        self.estimator: TopologyEstimator | None = None
        self.collector: RangeCollector | None = None
        self.token = ""
        self.context_range: int | None = None  # its frames are padding context (restart)
        self.replay_until = NO_RANGE  # ranges some owned shard already holds: one by one
        self.half: HalfEdgeIndex | None = None
        self._checkpoints = 0
        self._half_cursor = 0  # the owned shard whose half-edges are refreshed next
        self._unpassed: int | None = None  # newest range counted since the stream last paused
        self._unjoined: int | None = None  # leader: newest range of halves not yet joined
        self._next_join = 0.0  # monotonic: no join starts before (topology_max_share)
        self._uncheckpointed: int | None = None  # newest range counted but not all written
        self._deferred = 0  # ranges in a row whose checkpoint slice and half-edges waited
        self.last_counted_wall = time.monotonic()  # the stream pauses when this gets old
        self._window_shard = window_shards(network, settings.redis.shards)
        self._joiner = ThreadPoolExecutor(1, thread_name_prefix="topology-join")
        self._join: Future[list[dict[str, Any]]] | None = None  # the leader's join under way
        self._carry: list[dict[str, Any]] = []  # changes of a join finished before a rebuild
        # (range, capture ticks) counted but not yet in Redis for every owned shard
        self._undurable: list[tuple[int, np.ndarray]] = []

    @property
    def leader(self) -> bool:
        return 0 in self.shards

    # --- ownership ----------------------------------------------------------------------------
    def rebuild(self, shards: Sequence[int]) -> int | None:
        """Own ``shards`` from now on: fresh engine, their rows from Redis, a new lease.

        Returns the first range to read (None: from the first range every partition has)."""
        try:  # a join under way finishes first; its changes go out with the next range
            self._carry += self._joined(wait=True)
        except (LeaseLost, *TRANSIENT_ERRORS) as exc:
            log.warning("topology join before the rebuild failed (the next one redoes it): %s", exc)
        self.shards = sorted(shards)
        self._undurable.clear()
        metrics.OWNED_SHARDS.set(len(self.shards))
        self.estimator = self.collector = self.half = None
        self._uncheckpointed = self._unpassed = self._unjoined = None
        self._half_cursor = 0
        if not self.shards:
            return None
        owned = owned_windows(self.network, self.settings.redis.shards, self.shards)
        est = TopologyEstimator(self.network, self.pool_share(owned))
        counts = est.counts
        if not isinstance(counts, FastExclusion):  # shards, leases and half-edges need its rows
            raise TypeError(f"a counting worker needs FastExclusion, not {type(counts).__name__}")
        counts.owned = owned
        if not self.leader:
            est.transit = None  # the leader keeps it
        self.token = uuid.uuid4().hex
        self.store.claim_shards(self.shards, self.token)
        held = self.store.load_shards_into(est, self.shards)
        dropped = counts.dropped_on_import
        if dropped:
            log.warning(
                "%d stored segments did not fit this worker's share of CAMTOPO_MAX_POOL_MB=%d "
                "and restart from zero",
                dropped, self.settings.algorithm.max_pool_mb,
            )  # fmt: skip
        start = min(r for r, _ in held.values())
        self.replay_until = max(r for r, _ in held.values())
        if start == NO_RANGE:
            self.context_range = None
            self.collector = RangeCollector(self.grid, self.settings.kafka.occupancy_partitions)
        else:
            # Resume where the oldest shard stands; its range's frames are padding context.
            counts.last_tick = next(t for r, t in held.values() if r == start)
            est.buffer.next_tick = self.grid.held_from(start)
            self.context_range = start
            self.collector = RangeCollector(
                self.grid, self.settings.kafka.occupancy_partitions, start
            )
        self.estimator = est
        self.half = HalfEdgeIndex(
            counts, self.settings.algorithm.c_star, self.settings.algorithm.o_ref
        )
        log.info(
            "counting shards %s (leader: %s) from range %s, replaying through %d",
            self.shards, self.leader, start, self.replay_until,
        )  # fmt: skip
        return None if start == NO_RANGE else start

    def pool_share(self, owned: np.ndarray) -> EstimatorParameters:
        """Parameters whose pool budget is this worker's share of ``max_pool_mb`` (by rows
        owned): the budget bounds the counts of the whole network, as in one engine, however
        many workers count them; a worker that takes over more shards gets more."""
        mb = max(1, round(self.settings.algorithm.max_pool_mb * int(owned.sum()) / owned.size))
        params = self.settings.estimator_parameters()
        return replace(params, exclusion=replace(params.exclusion, max_pool_mb=mb))

    # --- counting -----------------------------------------------------------------------------
    def next_batch(self) -> WholeRanges | None:
        """Whole ranges to count now: the context range alone, then one range at a time
        while some shard already holds it, then everything whole."""
        if self.collector is None:
            return None
        nxt = self.collector.next
        # Some owned shard may hold the next range (from the start, if one shard was never
        # written): count it alone, so its rows can be put back as Redis holds them.
        replaying = self.replay_until != NO_RANGE and (nxt is None or nxt <= self.replay_until)
        return self.collector.ready(single=replaying or nxt == self.context_range)

    def count(self, whole: WholeRanges) -> Counted:
        started = time.perf_counter()
        est = self.estimator
        assert est is not None
        cams, ticks, windows = whole.cameras, whole.ticks, whole.windows
        if whole.first_range == self.context_range:
            # After a rebuild: ticks of this range before the held tail were counted; the
            # next block's temporal padding reads the last ``tolerance`` of them.
            frontier = est.buffer.next_tick
            assert frontier is not None
            est.buffer.next_tick = None
            tail = np.flatnonzero((ticks >= frontier - self.grid.tolerance) & (ticks < frontier))
            est.buffer.add_frames(cams[tail], ticks[tail], [windows[n] for n in tail.tolist()])
            est.buffer.next_tick = frontier
            keep = np.flatnonzero(ticks >= frontier)
            cams, ticks, windows = cams[keep], ticks[keep], [windows[n] for n in keep.tolist()]
            self.context_range = None
        occupied = est.observations
        late, duplicate = est.buffer.add_frames(cams, ticks, windows)
        lap = _phase("frames", started)
        rejected = late + duplicate
        if rejected:  # the collector makes this impossible; count, don't crash
            log.warning("%d late and %d duplicate frames not counted", late, duplicate)
        est.advance(self.grid.first_tick(whole.range_id + 1))
        lap = _phase("count", lap)
        if ticks.size:
            metrics.observe_many(
                metrics.DELAY,
                time.time() - np.asarray(ticks) * (self.settings.grid.tick_ms / 1000.0),
            )
        if whole.range_id <= self.replay_until:
            self.store.restore_applied_rows(est, whole.range_id)
        self._uncheckpointed = whole.range_id
        replaying = whole.range_id <= self.replay_until
        if not replaying:
            self._undurable.append((whole.range_id, ticks))
        if replaying or not self._defer(whole.range_id):
            rows = self.checkpoint(whole=replaying)
            _phase("checkpoint", lap)
            changes = self.topology(whole.range_id, whole.range_id - whole.first_range + 1)
        else:
            rows, changes = 0, self._take()
            self._unpassed = whole.range_id  # a pause still brings the topology up to it
        seconds = time.perf_counter() - started
        # From the end of the range, not its checkpoint: a long topology pass must not make
        # the next wait look like a pause, or the whole-shard checkpoint (~1 GB at 1,000
        # cameras) lands mid-stream.
        self.last_counted_wall = time.monotonic()
        metrics.RANGE_SECONDS.observe(seconds)
        metrics.RANGES_CLOSED.inc(whole.range_id - whole.first_range + 1)
        metrics.LAST_RANGE.set(whole.range_id)
        metrics.COUNTED_THROUGH.set(self.grid.end_ms(whole.range_id) / 1000.0)
        metrics.FRAMES_COUNTED.inc(ticks.size - rejected)
        metrics.OCCUPIED_COUNTED.inc(est.observations - occupied)
        metrics.ENGINE_BYTES.set(getattr(est.counts, "nbytes", 0))
        return Counted(
            whole.first_range, whole.range_id, len(whole), rejected, rows, seconds, changes
        )

    def _defer(self, range_id: int) -> bool:
        """Should this range's checkpoint slice and half-edge refresh wait? Yes while the next
        range has already closed (counting is a range behind), at most
        ``counter_defer_max_ranges`` ranges in a row: under a lasting overload, Redis and the
        topology still move on."""
        next_closed = time.time() * 1000.0 >= self.grid.close_ms(range_id + 1)
        if not next_closed or self._deferred >= self.settings.partitioned.counter_defer_max_ranges:
            self._deferred = 0
            return False
        self._deferred += 1
        metrics.DEFERRED_RANGES.inc()
        return True

    def spread_slice(self) -> list[int]:
        """The owned shards the next spread checkpoint writes: spaced evenly over every
        ``counter_checkpoint_spread_ranges`` checkpoints (32 shards over 60: one every
        second range, not 32 in a row and then 28 without a write)."""
        n = self.settings.partitioned.counter_checkpoint_spread_ranges
        k = self._checkpoints % n
        self._checkpoints += 1
        return [s for pos, s in enumerate(self.shards) if pos * n // len(self.shards) == k]

    def checkpoint(self, whole: bool = False) -> int:
        """Write a slice of the owned shards (all of them if ``whole``); rows written."""
        if self._uncheckpointed is None or self.estimator is None:
            return 0
        shards = self.shards if whole else self.spread_slice()
        rows = self.store.checkpoint_shards(
            self.estimator, self._uncheckpointed, shards, self.token
        )
        if whole:
            self._uncheckpointed = None
        held = self.store.held_range(self.shards)
        now, tick_s = time.time(), self.settings.grid.tick_ms / 1000.0
        while self._undurable and self._undurable[0][0] <= held:
            metrics.observe_many(metrics.DURABLE_DELAY, now - self._undurable.pop(0)[1] * tick_s)
        return rows

    def topology(self, range_id: int, ranges: int = 1) -> list[dict[str, Any]]:
        """After counting ``ranges`` ranges through ``range_id``: refresh the half-edges of the
        next owned shards, so that every shard's are at most ``topology_every_ranges`` ranges
        old — fewer shards when that takes more than ``topology_max_share`` of the ranges' time
        (at least one; a pass over all rows took ~4 s at 1,000 cameras, and no range was
        counted meanwhile), and later by the ranges that skipped this (:meth:`_defer`). Once
        every owned shard's are new, the leader joins every worker's halves into the topology
        (:meth:`_start_join`). Returns changes of a join since."""
        changes = self._take()
        self._unpassed = range_id
        most = math.ceil(len(self.shards) * ranges / self.settings.processor.topology_every_ranges)
        budget = (
            self.settings.partitioned.topology_max_share
            * self.settings.processor.range_seconds
            * ranges
        )
        self._half_edges(most, budget)
        self._start_join()
        return changes

    def idle(self) -> list[dict[str, Any]]:
        """The stream has paused: bring the topology up to the last range counted (every
        shard's half-edges and a join, whatever the time share); returns changes of a join
        finished since."""
        if self._unpassed is not None:
            self._half_edges(len(self.shards), math.inf)  # a whole round: the leader may join
            self._unpassed = None
        self._start_join(now=True)
        return self._take()

    def _half_edges(self, most: int, budget: float) -> None:
        """Refresh up to ``most`` owned shards' half-edges, from where the last call stopped,
        until ``budget`` seconds have gone (at least one shard)."""
        assert self.half is not None
        lap = time.perf_counter()
        for done in range(most):
            if done and time.perf_counter() - lap > budget:
                break
            shard = self.shards[self._half_cursor]
            rows = np.flatnonzero(self._window_shard == shard)
            if self.half.refresh(rows).size:
                self.store.write_half_edges(shard, self.half.half(rows))
            self._half_cursor = (self._half_cursor + 1) % len(self.shards)
            if self._half_cursor == 0 and self.leader:  # every owned shard's halves are new
                self._unjoined = self._unpassed
        _phase("half_edges", lap)

    def _start_join(self, now: bool = False) -> None:
        """The leader's join of the newest halves, in its thread, unless one is under way
        (the next call starts it) or the last one's share of the time says wait."""
        if self._unjoined is None or self._join is not None:
            return
        if not now and time.monotonic() < self._next_join:
            return
        est = self.estimator
        assert est is not None
        self._join = self._joiner.submit(
            self._join_halves,
            est.transit.snapshot() if est.transit is not None else None,
            int(self.grid.end_ms(self._unjoined)),
            {"observed_ticks": est.observed_ticks, "observations": est.observations},
        )
        self._unjoined = None

    def _joined(self, wait: bool = False) -> list[dict[str, Any]]:
        """The changes of the leader's last join once it has finished (``wait``: wait for
        it); its errors (lease lost, Redis down) are raised here, in the counting loop."""
        if self._join is None or not (wait or self._join.done()):
            return []
        job, self._join = self._join, None
        return job.result()

    def _take(self, wait: bool = False) -> list[dict[str, Any]]:
        """Changes not yet handed out (a failed join raises and leaves them for later)."""
        self._carry += self._joined(wait)
        changes, self._carry = self._carry, []
        return changes

    def close(self) -> list[dict[str, Any]]:
        """Wait for the join under way; returns the changes not yet handed out."""
        try:
            return self._take(wait=True)
        finally:
            self._joiner.shutdown()

    def _join_halves(
        self, transit: Any, range_end_ms: int, totals: dict[str, int]
    ) -> list[dict[str, Any]]:
        """In the join thread: every worker's half-edges into the topology, published."""
        lap = time.perf_counter()
        edges = mutual_edges(self.store.read_half_edges(), self.settings.algorithm.o_ref)
        changes = self.store.publish_topology(edges, transit, range_end_ms)
        self.store.write_meta(totals)
        seconds = _phase("join", lap) - lap
        self._next_join = time.monotonic() + seconds * (
            1 / self.settings.partitioned.topology_max_share - 1
        )
        return changes


def _phase(name: str, since: float) -> float:
    """Add the time since ``since`` to phase ``name``; returns now (the next phase's start)."""
    now = time.perf_counter()
    metrics.COUNTER_PHASE_SECONDS.labels(name).inc(now - since)
    return now


def run_counter(network: Network, settings: Settings, store: TopologyStore) -> int:
    """The Kafka loop of one counting worker (:class:`processors.counting_worker.CountingWorker`);
    returns on SIGTERM / SIGINT."""
    from processors.counting_worker import CountingWorker

    return CountingWorker(network, settings, store).run()
