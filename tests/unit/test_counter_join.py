"""The counting workers' topology between ranges: half-edges refreshed a few shards per range,
the leader's join in a thread (counting goes on meanwhile, each join's changes handed out
exactly once, a failed join surfaces in the counting loop), joins within their share of the
time, and a pause that brings the topology up to date. (A stand-in for the Redis store: this
is the hand-over logic on the memory:// store; tests/integration covers Redis.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from camtopo.core.adjacency import HalfEdgeIndex
from camtopo.core.evidence import WindowEdges
from camtopo.core.grid import Network
from camtopo.core.partitioned import WholeRanges
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors.counter import RowCounter
from topology_store.context import Estimator
from topology_store.store import LeaseLost, TopologyStore


class SlowStore(TopologyStore):
    """The store on the memory:// double, except: half-edges are recorded, each publish waits
    until released and reports one change, checkpoints are recorded only."""

    def __init__(self, network: Network, settings: Settings) -> None:
        super().__init__(f"memory://{uuid.uuid4().hex}", network, settings)
        self.release = threading.Event()
        self.published: list[int] = []  # range_end_ms of every join
        self.fail: Exception | None = None
        self.halves: list[int] = []  # shards whose half-edges were written, in order
        self.checkpoints: list[int] = []  # range of every checkpoint slice written

    def write_half_edges(self, shard: int, half: np.ndarray) -> None:
        self.halves.append(shard)
        super().write_half_edges(shard, half)

    def publish_topology(
        self, edges: WindowEdges, transit: Any, range_end_ms: int
    ) -> list[dict[str, Any]]:
        assert self.release.wait(10), "the test never released the join"
        self.published.append(range_end_ms)
        if self.fail is not None:
            raise self.fail
        return [{"change": "edge_added", "range_end_ms": range_end_ms}]

    def checkpoint_shards(
        self, estimator: Estimator, range_id: int, shards: Sequence[int], token: str
    ) -> int:
        self.checkpoints.append(range_id)
        return 0


@pytest.fixture
def leader() -> tuple[RowCounter, SlowStore]:
    sim = Simulation.from_name("campus", 6, seed=1)
    settings = Settings(
        processor={"topology_every_ranges": 1},
        partitioned={"topology_max_share": 1.0},
        transit={"enabled": False},
    )
    store = SlowStore(sim.network, settings)
    counter = RowCounter(sim.network, settings, store)
    est = TopologyEstimator(sim.network, settings.estimator_parameters())
    counter.estimator, counter.shards = est, [0]  # shard 0: the leader
    counter.half = HalfEdgeIndex(est.counts, settings.algorithm.c_star, settings.algorithm.o_ref)  # type: ignore[arg-type]
    yield counter, store
    store.release.set()
    counter.close()


def _until_done(counter: RowCounter) -> None:
    deadline = time.monotonic() + 10
    while counter._join is not None and not counter._join.done():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_counting_goes_on_while_a_join_runs_and_its_changes_come_out_once(leader) -> None:
    counter, store = leader
    started = time.monotonic()
    assert counter.topology(1) == []  # the join of range 1 starts and blocks
    assert counter.topology(2) == []  # still under way: no second join is started
    assert time.monotonic() - started < 5
    store.release.set()
    _until_done(counter)
    end_1 = int(counter.grid.end_ms(1))
    assert counter.topology(3) == [{"change": "edge_added", "range_end_ms": end_1}]
    _until_done(counter)  # range 3's join
    assert store.published == [end_1, int(counter.grid.end_ms(3))]
    assert counter.close() == [{"change": "edge_added", "range_end_ms": store.published[1]}]


def test_a_failed_join_raises_once_in_the_counting_loop_and_the_next_one_runs(leader) -> None:
    counter, store = leader
    store.fail = LeaseLost("Redis restarted")
    store.release.set()
    counter.topology(1)  # range 1's join fails in its thread
    _until_done(counter)
    with pytest.raises(LeaseLost):
        counter.topology(2)  # where the loop rebuilds (run_counter)
    store.fail = None
    assert counter.topology(3) == []  # a new join starts
    _until_done(counter)
    assert counter.close() == [{"change": "edge_added", "range_end_ms": store.published[-1]}]
    assert store.published == [int(counter.grid.end_ms(1)), int(counter.grid.end_ms(3))]


def test_a_join_waits_out_its_share_but_a_pause_brings_the_topology_up_to_date(leader) -> None:
    counter, store = leader
    counter.settings = counter.settings.replace(partitioned={"topology_max_share": 1e-6})
    store.release.set()
    counter.topology(1)
    _until_done(counter)  # the next join waits a million times as long as this one took
    assert counter._next_join > time.monotonic()
    changes = counter.topology(2)  # range 2's halves are written but not joined yet
    assert changes == [{"change": "edge_added", "range_end_ms": int(counter.grid.end_ms(1))}]
    assert counter._join is None and store.published == [int(counter.grid.end_ms(1))]
    counter.idle()  # the stream paused: join now
    _until_done(counter)
    assert store.published[-1] == int(counter.grid.end_ms(2))
    assert counter.idle() == [{"change": "edge_added", "range_end_ms": store.published[-1]}]
    assert counter.idle() == [] and len(store.published) == 2  # nothing new: no new join


def test_each_range_refreshes_a_few_shards_and_the_leader_joins_once_all_are_new() -> None:
    sim = Simulation.from_name("campus", 12, seed=1)
    settings = Settings(
        processor={"topology_every_ranges": 4},
        partitioned={"topology_max_share": 1.0},
        redis={"shards": 8},
        transit={"enabled": False},
    )
    store = SlowStore(sim.network, settings)
    store.release.set()
    counter = RowCounter(sim.network, settings, store)
    est = TopologyEstimator(sim.network, settings.estimator_parameters())
    for tick in sim.ticks(600):  # every shard has rows that changed
        keep = tick.available[tick.cam]
        est.buffer.add_tick(tick.index, tick.available, tick.cam[keep], tick.window[keep])
    est.advance(600)
    assert set(counter._window_shard[np.flatnonzero(est.counts.dirty)]) == set(range(8))
    counter.estimator, counter.shards = est, list(range(8))
    counter.half = HalfEdgeIndex(est.counts, settings.algorithm.c_star, settings.algorithm.o_ref)  # type: ignore[arg-type]
    try:
        for range_id in range(3):  # 8 shards over 4 ranges: 2 a range, no join yet
            counter.topology(range_id)
            assert store.halves == list(range(2 * range_id + 2))
            assert counter._join is None
        counter.topology(3)  # the last two: every shard is new, the join starts
        _until_done(counter)
        assert store.halves == list(range(8)) and store.published == [int(counter.grid.end_ms(3))]
        counter.topology(4)  # the next round starts over (the rows are still uncheckpointed)
        assert store.halves[8:] == [0, 1]
    finally:
        counter.close()


def _empty(range_id: int) -> WholeRanges:
    return WholeRanges(range_id, range_id, np.zeros(0, np.int64), np.zeros(0, np.int64), [])


def test_a_range_behind_defers_its_checkpoint_and_half_edges_a_few_ranges_at_most(leader) -> None:
    counter, store = leader
    counter.settings = counter.settings.replace(partitioned={"counter_defer_max_ranges": 2})
    store.release.set()
    grid = counter.grid
    now = grid.last_closed(time.time() * 1000.0)  # the newest range closed by now
    old = now - 100  # ranges counted a long way behind: the next one has always closed
    for k in range(6):
        counter.count(_empty(old + k))
        _until_done(counter)
    # two ranges in a row wait, the third does everything
    assert store.checkpoints == [old + 2, old + 5]
    assert store.published == [int(grid.end_ms(old + 2)), int(grid.end_ms(old + 5))]  # joins
    counter.count(_empty(old + 6))  # waits; then the stream pauses: the join is of range old + 6
    counter.idle()
    _until_done(counter)
    assert store.published[-1] == int(grid.end_ms(old + 6))
    ahead = now + 100  # caught up (its next range closes minutes from now)
    counter.count(_empty(ahead))
    _until_done(counter)
    assert store.checkpoints[-1] == ahead and store.published[-1] == int(grid.end_ms(ahead))
    counter.settings = counter.settings.replace(partitioned={"counter_defer_max_ranges": 0})
    counter.count(_empty(ahead + 1))
    counter.count(_empty(old + 50))  # far behind, but deferring is off
    assert store.checkpoints[-2:] == [ahead + 1, old + 50]
