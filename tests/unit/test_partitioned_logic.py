"""The partitioned pipeline's pure logic: per-partition ranges, whole ranges, rows split among
workers, half-edges joined — each equal to what one worker computes over everything."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from camtopo.core.adjacency import HalfEdgeIndex
from camtopo.core.evidence import mutual_edges
from camtopo.core.partitioned import (
    PartitionRanges,
    RangeBlock,
    RangeCollector,
    owned_windows,
)
from camtopo.core.ranges import RangeGrid
from camtopo.core.ticks import tick_of
from camtopo.core.topology import TopologyEstimator
from camtopo.formats.avro import UndecodableRecord
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors.blocks import decode_block, encode_block
from processors.trace import Record, simulated_records

PARTITIONS = 4


def _trace(n_ticks: int = 600, cameras: int = 12, seed: int = 3) -> tuple[Simulation, list[Record]]:
    sim = Simulation.from_name("campus", cameras, seed=seed)
    return sim, list(simulated_records(sim, n_ticks, frames_per_record=5, send_delay_ms=300))


def _partition(rec: Record) -> int:
    return zlib.crc32(rec.camera.encode()) % PARTITIONS


def _assemble(
    sim: Simulation, records: list[Record], settings: Settings, order: list[int] | None = None
) -> list[RangeBlock]:
    """Feed the records to PartitionRanges (in ``order``) and close everything at the end."""
    grid = settings.range_grid()
    ranges: PartitionRanges[int] = PartitionRanges(
        grid, settings.processor.idle_partition_seconds * 1000
    )
    ranges.assign(range(PARTITIONS), wall_ms=0)
    blocks = []
    tick_ms = settings.grid.tick_ms
    order = order if order is not None else list(range(len(records)))
    last_of = {_partition(records[n]): pos for pos, n in enumerate(order)}
    for pos, n in enumerate(order):
        rec = records[n]
        cam = sim.network.camera_index(rec.camera)
        ticks = [tick_of(t, tick_ms) for t, _ in rec.frames]
        windows = [np.asarray(o, dtype=np.int64) for _, o in rec.frames]
        ranges.take(_partition(rec), cam, ticks, windows, rec.send_ms, rec.send_ms, n, n)
        # Partitions with records still to read are never idle (the broker says so).
        behind = [p for p, last in last_of.items() if last > pos]
        for block in ranges.due(rec.send_ms, behind):
            blocks.append(block)
            ranges.delivered(block)
    end = max(r.send_ms for r in records) + 60_000
    for block in ranges.due(end):
        blocks.append(block)
        ranges.delivered(block)
    assert ranges.unacked == 0  # every record was released by a delivered block
    return blocks


def _frames_by_range(cams: np.ndarray, ticks: np.ndarray, windows: list[np.ndarray], n: int):
    out: dict[int, set[tuple[int, int, tuple[int, ...]]]] = {}
    for c, t, w in zip(cams.tolist(), ticks.tolist(), windows, strict=True):
        out.setdefault(t // n, set()).add((c, t, tuple(w.tolist())))
    return out


def test_whole_ranges_hold_every_frame_once_in_any_partition_interleaving() -> None:
    settings = Settings()
    sim, records = _trace()
    grid = settings.range_grid()
    # Partitions read at different speeds: all of partition 0 first, then the rest in order.
    order = sorted(range(len(records)), key=lambda n: (_partition(records[n]) != 0, n))
    collected = {}
    for order_ in (None, order):
        collector = RangeCollector(grid, PARTITIONS)
        for block in _assemble(sim, records, settings, order_):
            collector.add(block)
        batches = []
        while (whole := collector.ready()) is not None:
            batches.append(whole)
        cams = np.concatenate([b.cameras for b in batches])
        ticks = np.concatenate([b.ticks for b in batches])
        windows = [w for b in batches for w in b.windows]
        collected[order_ is None] = _frames_by_range(cams, ticks, windows, grid.ticks_per_range)
        assert collector.buffered == 0
    expected: dict[int, set] = {}
    for rec in records:
        cam = sim.network.camera_index(rec.camera)
        for t, occ in rec.frames:
            tick = tick_of(t, settings.grid.tick_ms)
            expected.setdefault(tick // grid.ticks_per_range, set()).add((cam, tick, occ))
    assert collected[True] == expected
    # Each partition's clock is its own: reading one far ahead of the others changes nothing.
    assert collected[False] == expected


def test_republished_blocks_are_dropped_and_overlaps_keep_only_new_ranges() -> None:
    grid = RangeGrid(ticks_per_range=20, tick_ms=100, late_ms=5000, tolerance=5)
    one = np.array([0], dtype=np.int64)

    def block(first: int, last: int, tick: int | None = None) -> RangeBlock:
        if tick is None:
            return RangeBlock(0, first, last, one[:0], one[:0], [])
        return RangeBlock(0, first, last, one, np.array([tick]), [np.array([3])])

    collector = RangeCollector(grid, 1)
    assert collector.add(block(0, 1, 25)) == 1
    assert collector.add(block(0, 1, 25)) == 0  # the same block again (a restart)
    assert collector.add(block(1, 2, 30)) == 0  # range 1 was had: only range 2, no frame
    assert collector.add(block(3, 3, 61)) == 1
    whole = collector.ready()
    assert whole is not None and (whole.first_range, whole.range_id) == (0, 3)
    assert whole.ticks.tolist() == [25, 61]
    assert collector.duplicates == 2


def test_a_partition_that_sends_nothing_closes_empty_ranges_once_idle() -> None:
    settings = Settings()
    grid = settings.range_grid()
    ranges: PartitionRanges[int] = PartitionRanges(grid, 5000.0)
    ranges.assign([0, 1], wall_ms=100_000)
    ranges.take(0, 0, [1000], [np.array([1])], 100_100, 100_100, 7, 0)
    assert [b.partition for b in ranges.due(100_200)] == []  # partition 1 not idle yet
    blocks = ranges.due(108_000)
    assert {b.partition for b in blocks} == {0, 1}
    silent = next(b for b in blocks if b.partition == 1)
    assert len(silent) == 0 and silent.range_id == grid.last_closed(108_000)


def test_a_taken_over_partition_resumes_after_what_was_published() -> None:
    grid = RangeGrid(ticks_per_range=20, tick_ms=100, late_ms=5000, tolerance=5)
    ranges: PartitionRanges[int] = PartitionRanges(grid, 5000.0, published={0: 9})
    ranges.assign([0], wall_ms=0)
    verdicts, ack = ranges.take(0, 1, [190, 200], [np.array([1]), np.array([2])], 9000, 9000, 1, 0)
    assert [v.value for v in verdicts] == ["replayed", "accepted"]
    assert ack is None  # tick 200 is kept: acked once its block is delivered
    (block,) = ranges.due(30_000)
    assert block.first_range == 10 and block.ticks.tolist() == [200]
    assert ranges.delivered(block) == [1]


@pytest.mark.parametrize("split", [2, 3])
def test_rows_counted_by_several_workers_equal_one_worker_and_so_does_adjacency(
    split: int,
) -> None:
    # The paper's thresholds: adjacency appears within the short trace.
    settings = Settings(
        redis={"shards": 8}, algorithm={"o_ref": 20, "c_star": 0.8, "activity_gate": 0}
    )
    sim, records = _trace(n_ticks=1200)
    net = sim.network

    def run(owned: np.ndarray | None) -> TopologyEstimator:
        est = TopologyEstimator(net, settings.estimator_parameters())
        est.counts.owned = owned  # type: ignore[attr-defined]
        for rec in records:
            cam = net.camera_index(rec.camera)
            for t, occ in rec.frames:
                est.add_frame(cam, t, list(occ))
        est.finish()
        return est

    whole = run(None)
    shards = [list(range(settings.redis.shards))[k::split] for k in range(split)]
    parts = [run(owned_windows(net, settings.redis.shards, s)) for s in shards]
    assert whole.observations > 1000
    for i in range(net.n_windows):
        want = whole.counts.export_row(i)  # type: ignore[attr-defined]
        owner = next(k for k, s in enumerate(shards) if int(net.window_camera[i]) % 8 in s)
        got = parts[owner].counts.export_row(i)  # type: ignore[attr-defined]
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), net.label(i)
    halves = []
    for est in parts:
        index = HalfEdgeIndex(est.counts, settings.algorithm.c_star, settings.algorithm.o_ref)  # type: ignore[arg-type]
        index.refresh()
        halves.append(index.half(np.arange(net.n_windows)))
    joined = mutual_edges(np.concatenate(halves, axis=1), settings.algorithm.o_ref)
    expected = whole.window_edges()
    assert len(expected) > 0
    for name in ("i", "j", "o_ij", "p_ij", "o_ji", "p_ji", "c_ij", "c_ji"):
        assert np.array_equal(getattr(joined, name), getattr(expected, name)), name


def test_range_blocks_round_trip_through_avro_and_refuse_garbage() -> None:
    block = RangeBlock(
        3, 40, 42, np.array([0, 5]), np.array([800, 845]), [np.array([1, 7]), np.array([])]
    )
    back = decode_block(encode_block(block, n_cameras=6), n_cameras=6)
    assert (back.partition, back.first_range, back.range_id) == (3, 40, 42)
    assert back.cameras.tolist() == [0, 5] and back.ticks.tolist() == [800, 845]
    assert [w.tolist() for w in back.windows] == [[1, 7], []]
    with pytest.raises(UndecodableRecord, match="written for 6 cameras"):
        decode_block(encode_block(block, n_cameras=6), n_cameras=4)
    with pytest.raises(UndecodableRecord):
        decode_block(b"\x00\x00\x00\x00\x01junk", n_cameras=6)


def test_counting_workers_share_one_pool_budget_by_the_rows_they_own() -> None:
    from processors.counter import RowCounter
    from topology_store.store import TopologyStore

    sim = Simulation.from_name("campus", 12, seed=3)
    settings = Settings(algorithm={"max_pool_mb": 1000}, redis={"shards": 8})
    store = TopologyStore("memory://pool-budget", sim.network, settings)
    counter = RowCounter(sim.network, settings, store)
    halves = [owned_windows(sim.network, 8, shards) for shards in ([0, 2, 4, 6], [1, 3, 5, 7])]
    budgets = [counter.pool_share(rows).exclusion.max_pool_mb for rows in halves]
    assert sum(budgets) == pytest.approx(1000, abs=1) and min(budgets) < 1000
    # Take over every shard (the other worker died): the whole budget.
    everything = owned_windows(sim.network, 8, range(8))
    assert counter.pool_share(everything).exclusion.max_pool_mb == 1000


def test_records_read_again_are_released_with_their_original_until_the_partition_is_dropped() -> (
    None
):
    grid = RangeGrid(ticks_per_range=20, tick_ms=100, late_ms=5000, tolerance=5)
    ranges: PartitionRanges[int] = PartitionRanges(grid, 5000.0)
    ranges.assign([0], wall_ms=0)
    for offset in range(10):
        assert ranges.redelivery(0, offset, offset) is None  # new: judge and take it
        tick = 100 + offset
        ranges.take(0, 1, [tick], [np.array([1])], tick * 100 + 300, 0, offset, offset)
    # A seek back to the committed offset 5 (after a rebalance that kept the partition).
    assert [ranges.redelivery(0, offset, 100 + offset) for offset in range(5, 10)] == [[]] * 5
    assert ranges.redelivered == 5 and ranges.next_offsets == {0: 10} and ranges.unacked == 10
    (block,) = ranges.due(60_000)
    assert sorted(ranges.delivered(block)) == [*range(10), *range(105, 110)]
    assert ranges.redelivery(0, 9, 209) == [209]  # its original was released: ack at once
    # Revoked then assigned again: the state is dropped, so the records are new again.
    ranges.assign([], wall_ms=70_000)
    ranges.assign([0], wall_ms=70_000)
    assert ranges.next_offsets == {}
    assert ranges.redelivery(0, 5, 305) is None and ranges.next_offsets == {0: 6}
