"""The topology store's contract, on a REAL Redis and on the memory:// test double alike:
checkpoints restore identical counts, a processor crash between shards neither loses nor
double-counts a range, the graph and its change log read back; and on Redis, a Redis crash
loses nothing checkpointed."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.graph import EDGE_ADDED
from topology_store.memory import forget_server
from topology_store.store import NO_RANGE, StoreError, TopologyStore

pytestmark = pytest.mark.redis

SETTINGS = Settings(redis={"shards": 8})


@pytest.fixture(params=["redis", "memory"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The same tests on a real Redis and on the memory:// double (topology_store/memory.py)."""
    if request.param == "redis":
        yield request.getfixturevalue("redis_server").url
        return
    url = f"memory://{uuid.uuid4().hex[:8]}"
    yield url
    forget_server(url)


def fresh_store(url: str, net: synthetic.SyntheticNetwork, **kw: Any) -> TopologyStore:
    return TopologyStore(url, net.network, SETTINGS, prefix=f"t{uuid.uuid4().hex[:8]}", **kw)


def reopen(url: str, net: synthetic.SyntheticNetwork, store: TopologyStore) -> TopologyStore:
    """A second store on the same keys, as a restarted process would open."""
    return TopologyStore(url, net.network, SETTINGS, prefix=store.keys.prefix)


def same_counts(a: TopologyEstimator, b: TopologyEstimator) -> None:
    for i in range(a.network.n_windows):
        ra, rb = a.counts.export_row(i), b.counts.export_row(i)
        for x, y in zip(ra[:3], rb[:3], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"row {i}")
        assert ra[3] == rb[3], f"activity of row {i}"


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_checkpoint_then_load_into_new_engine_gives_identical_counts(store_url, engine) -> None:
    net = synthetic.make_network(10, seed=4)
    est = synthetic.run(net, SETTINGS, 1500, engine=engine)
    store = fresh_store(store_url, net)
    report = store.checkpoint(est, 7, {0: 120, 3: 44})
    assert report.rows_written == int(
        np.count_nonzero(est.counts.O.any(axis=1) | (est.counts.activity > 0))
    )

    twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine=engine)
    loader = TopologyStore(store_url, net.network, SETTINGS, prefix=store.keys.prefix)
    cp = loader.load_into(twin)
    assert cp is not None and cp.range_id == 7 and cp.resume_offsets == {0: 120, 3: 44}
    assert cp.observed_ticks == est.observed_ticks and cp.last_tick == est.counts.last_tick
    same_counts(est, twin)
    # Both go on counting the same data to the same counts (nothing hidden outside the rows).
    synthetic.run(net, SETTINGS, 300, start_tick=1500, estimator=est, engine=engine)
    synthetic.run(net, SETTINGS, 300, start_tick=1500, estimator=twin, engine=engine)


def test_only_dirty_rows_are_rewritten_and_empty_store_loads_none(store_url) -> None:
    net = synthetic.make_network(6, seed=1)
    store = fresh_store(store_url, net)
    assert (
        store.load_into(
            TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine="exact")
        )
        is None
    )
    est = synthetic.run(net, SETTINGS, 600)
    first = store.checkpoint(est, 0, {})
    again = store.checkpoint(est, 1, {})
    assert first.rows_written > 0 and again.rows_written == 0


def test_redis_sigkill_and_restart_loses_nothing_checkpointed(redis_server) -> None:
    net = synthetic.make_network(8, seed=5)
    est = synthetic.run(net, SETTINGS, 1200)
    store = fresh_store(redis_server.url, net)
    store.checkpoint(est, 3, {1: 99})
    store.update_topology(est, 120_000)
    time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk
    redis_server.kill()
    redis_server.start()
    twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine="exact")
    cp = TopologyStore(redis_server.url, net.network, SETTINGS, prefix=store.keys.prefix).load_into(
        twin
    )
    assert cp is not None and cp.range_id == 3 and cp.resume_offsets == {1: 99}
    same_counts(est, twin)
    assert store.graph()["edges"], "the stored camera graph survived too"
    # The same client object reconnects by itself after the restart.
    assert store.checkpoint(est, 4, {1: 100}).range_id == 4


class CrashAfter:
    """Fault injection: the process 'dies' after ``n`` shard transactions of a checkpoint."""

    def __init__(self, store: TopologyStore, n: int) -> None:
        self.real = store.redis.pipeline
        self.left = n
        store.redis.pipeline = self  # type: ignore[method-assign]

    def __call__(self, transaction: bool = True, **kw: Any) -> Any:
        pipe = self.real(transaction=transaction, **kw)
        if not transaction:
            return pipe
        if self.left == 0:
            raise SystemExit("processor killed mid-checkpoint")
        self.left -= 1
        return pipe


def test_crash_between_shards_then_replay_neither_loses_nor_double_counts(store_url) -> None:
    net = synthetic.make_network(16, seed=6)
    r0, r1 = (0, 900), (900, 1800)

    # Uninterrupted reference: ranges 0 and 1 applied once each.
    ref = synthetic.run(net, SETTINGS, r0[1])
    synthetic.run(net, SETTINGS, r1[1] - r1[0], start_tick=r1[0], estimator=ref)

    # The processor: range 0 checkpointed; range 1 dies after 3 of 8 shards.
    est = synthetic.run(net, SETTINGS, r0[1])
    buffer_after_r0 = copy.deepcopy(est.buffer)  # what its replay from offsets would rebuild
    store = fresh_store(store_url, net)
    store.checkpoint(est, 0, {0: 900})
    synthetic.run(net, SETTINGS, r1[1] - r1[0], start_tick=r1[0], estimator=est)
    CrashAfter(store, 3)
    with pytest.raises(SystemExit):
        store.checkpoint(est, 1, {0: 1800})

    # Restart: load, see shards at mixed ranges, replay range 1 from the meta's offsets.
    restarted = TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine="exact")
    store2 = TopologyStore(store_url, net.network, SETTINGS, prefix=store.keys.prefix)
    cp = store2.load_into(restarted)
    assert cp is not None and cp.range_id == 0 and cp.resume_offsets == {0: 900}
    assert sorted(cp.shard_ranges.values()).count(1) == 3
    assert {store2.applied_range(s) for s in range(8)} == {0, 1}
    mask = store2.rows_already_applied(1)
    assert mask.any() and not mask.all()

    restarted.buffer = buffer_after_r0
    synthetic.run(net, SETTINGS, r1[1] - r1[0], start_tick=r1[0], estimator=restarted)
    restored = store2.restore_applied_rows(restarted, 1)
    assert restored > 0
    report = store2.checkpoint(restarted, 1, {0: 1800})
    assert report.rows_skipped == 0 and report.rows_written > 0
    same_counts(ref, restarted)

    # And what is in Redis now is the uninterrupted run's state too.
    final = TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine="exact")
    reopen(store_url, net, store).load_into(final)
    same_counts(ref, final)


def test_without_the_mask_replay_would_double_count(store_url) -> None:
    """The mask is load-bearing: skipping restore_applied_rows gives different counts."""
    net = synthetic.make_network(16, seed=6)
    est = synthetic.run(net, SETTINGS, 900)
    buf = copy.deepcopy(est.buffer)
    store = fresh_store(store_url, net)
    store.checkpoint(est, 0, {})
    synthetic.run(net, SETTINGS, 900, start_tick=900, estimator=est)
    CrashAfter(store, 3)
    with pytest.raises(SystemExit):
        store.checkpoint(est, 1, {})
    naive = TopologyEstimator(net.network, SETTINGS.estimator_parameters(), engine="exact")
    reopen(store_url, net, store).load_into(naive)
    naive.buffer = buf
    synthetic.run(net, SETTINGS, 900, start_tick=900, estimator=naive)
    with pytest.raises(AssertionError):
        same_counts(est, naive)


def test_store_refuses_a_different_network_and_out_of_order_ranges(store_url) -> None:
    net = synthetic.make_network(6, seed=1)
    est = synthetic.run(net, SETTINGS, 300)
    store = fresh_store(store_url, net)
    store.checkpoint(est, 5, {})
    with pytest.raises(StoreError, match="older"):
        store.checkpoint(est, 4, {})
    other = synthetic.make_network(7, seed=1)
    wrong = TopologyStore(store_url, other.network, SETTINGS, prefix=store.keys.prefix)
    with pytest.raises(StoreError, match="different network"):
        wrong.load_into(
            TopologyEstimator(other.network, SETTINGS.estimator_parameters(), engine="exact")
        )
    assert store.applied_range(7 % 8) in (5, NO_RANGE)


def test_update_topology_stores_graph_and_logs_changes(store_url) -> None:
    net = synthetic.make_network(10, seed=2)
    est = synthetic.run(net, SETTINGS, 3000)
    store = fresh_store(store_url, net)
    store.checkpoint(est, 0, {})
    changes = store.update_topology(est, 300_000)
    assert changes and {c["change"] for c in changes} == {EDGE_ADDED}
    assert {(c["a"], c["b"]) for c in changes} <= net.links
    assert store.update_topology(est, 300_000) == []  # nothing changed, nothing announced
    logged = store.changes()
    assert [e for _, e in logged] == changes
    # A new store instance diffs against what is stored, not against nothing.
    again = TopologyStore(store_url, net.network, SETTINGS, prefix=store.keys.prefix)
    assert again.update_topology(est, 300_000) == []
    a, b = changes[0]["a"], changes[0]["b"]
    nb = again.neighbours(a)
    assert b in [n["camera"] for n in nb["neighbours"]]
    win = again.window_overlaps(a, b)["windows"][0]
    ev = again.pair_evidence(f"{a}:{win['a']}", f"{b}:{win['b']}")
    assert ev["adjacent"] and ev["o_ab"] == win["o_ab"] and ev["p_ba"] == win["p_ba"]


def test_a_checkpoint_ahead_of_the_clock_is_refused_and_rewind_brings_it_back(
    store_url,
) -> None:
    # The probe: a forged timestamp 30 days ahead carried the processor clock, and so the
    # checkpoint, there; every restart then dropped all real frames as closed.
    from topology_store.store import CheckpointAhead

    net = synthetic.make_network(6, seed=2)
    est = synthetic.run(net, SETTINGS, 600)
    store = fresh_store(store_url, net)
    now_range = store.grid.last_closed(time.time() * 1000)
    ahead = now_range + 30 * 86_400 // 2  # 30 days of 2 s ranges
    store.checkpoint(est, ahead, {0: 10})
    assert store.health()["status"] == "clock_ahead"
    with pytest.raises(CheckpointAhead, match="camtopo store rewind"):
        reopen(store_url, net, store).load_into(
            TopologyEstimator(net.network, SETTINGS.estimator_parameters())
        )
    moved = reopen(store_url, net, store).rewind()
    assert moved and all(old >= ahead for key, old in moved.items() if key.endswith(":range"))
    twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters())
    cp = reopen(store_url, net, store).load_into(twin)
    assert cp is not None and now_range <= cp.range_id < ahead
    assert cp.resume_offsets == {0: 10}
    same_counts(est, twin)  # the counts stay
    assert store.health()["status"] == "ok"
