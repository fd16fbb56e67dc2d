"""The memory:// test double: the store's count → checkpoint path, its failover follow-up,
shard leases and the query service, without Redis (the contract shared with a real Redis:
tests/integration/test_topology_store_redis.py runs on both)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.backend import store_client
from topology_store.memory import MemoryRedis, forget_server, memory_server
from topology_store.service import create_app
from topology_store.store import LeaseLost, TopologyStore

SETTINGS = Settings(redis={"shards": 8})


@pytest.fixture
def url() -> Iterator[str]:
    name = f"memory://{uuid.uuid4().hex[:8]}"
    yield name
    forget_server(name)


def _same_counts(a: TopologyEstimator, b: TopologyEstimator) -> None:
    for i in range(a.network.n_windows):
        for x, y in zip(a.counts.export_row(i), b.counts.export_row(i), strict=True):  # type: ignore[attr-defined]
            np.testing.assert_array_equal(x, y, err_msg=f"row {i}")


def _load(url: str, net: synthetic.SyntheticNetwork, prefix: str) -> TopologyEstimator:
    twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters())
    assert TopologyStore(url, net.network, SETTINGS, prefix=prefix).load_into(twin) is not None
    return twin


def test_the_url_picks_the_double_and_clients_share_its_server(url: str) -> None:
    a, b = store_client(SETTINGS, url), store_client(SETTINGS, url)
    assert isinstance(a, MemoryRedis) and a is not b  # own client objects, as with Redis
    a.set("k", 7)
    assert b.get("k") == b"7"  # one server: Redis's encoding of numbers, bytes replies
    a.hset("h", mapping={"x": b"\x00", 1: "y"})
    assert b.hgetall("h") == {b"x": b"\x00", b"1": b"y"}
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        b.hget("k", "x")


def test_change_log_is_capped_and_read_after_an_exclusive_id(url: str) -> None:
    client = store_client(SETTINGS, url)
    ids = [client.xadd("s", {"n": n}, maxlen=3) for n in range(5)]
    entries = client.xrange("s")
    assert [e for e, _ in entries] == ids[2:]  # MAXLEN keeps the newest three
    assert [f[b"n"] for _, f in client.xrange("s", min=f"({ids[3].decode()}")] == [b"4"]
    with pytest.raises(redis.ResponseError):
        client.xrange("s", min="(abc")


def test_an_outage_mid_checkpoint_loses_no_row(url: str) -> None:
    """Shards written before Redis went away stay written; the rest stay dirty, so the next
    checkpoint writes them."""
    net = synthetic.make_network(10, seed=3)
    est = synthetic.run(net, SETTINGS, 900)
    store = TopologyStore(url, net.network, SETTINGS, prefix="p")
    store.checkpoint(est, 0, {0: 9})
    synthetic.run(net, SETTINGS, 300, start_tick=900, estimator=est)
    # A checkpoint asks the server's id (INFO), then writes one transaction per shard.
    memory_server(url).fail_next(1, after=3)  # the third shard's transaction fails
    with pytest.raises(redis.ConnectionError):
        store.checkpoint(est, 2, {0: 12})
    assert 0 < len([r for r in store.shard_ranges().values() if r == 2]) < 8
    report = store.checkpoint(est, 2, {0: 12})
    assert report.rows_written > 0 and report.durable_range == 2
    _same_counts(est, _load(url, net, "p"))


def test_a_failover_that_lost_a_checkpoint_is_brought_level_from_memory(url: str) -> None:
    """As tests/integration/test_store_failover.py on two real servers."""
    net = synthetic.make_network(8, seed=6)
    est = synthetic.run(net, SETTINGS, 600)
    store = TopologyStore(url, net.network, SETTINGS, prefix="p")
    store.checkpoint(est, 0, {0: 10})
    replica = memory_server(url).snapshot()  # what asynchronous replication had copied
    synthetic.run(net, SETTINGS, 600, start_tick=600, estimator=est)
    store.checkpoint(est, 1, {0: 20})  # acknowledged by the old primary alone
    memory_server(url).restart(replica)  # the promoted replica answers
    synthetic.run(net, SETTINGS, 30, start_tick=1200, estimator=est)
    report = store.checkpoint(est, 2, {0: 30})
    assert report.rows_written > 0 and report.durable_range == 2
    twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters())
    cp = TopologyStore(url, net.network, SETTINGS, prefix="p").load_into(twin)
    assert cp is not None and cp.range_id == 2 and min(cp.shard_ranges.values()) == 2
    _same_counts(est, twin)  # rows changed in range 1 only are there too


def test_a_worker_that_lost_its_lease_writes_nothing(url: str) -> None:
    net = synthetic.make_network(8, seed=1)
    est = synthetic.run(net, SETTINGS, 600)
    old, new = (TopologyStore(url, net.network, SETTINGS, prefix="p") for _ in range(2))
    old.claim_shards([0, 1], "old")
    old.load_shards_into(TopologyEstimator(net.network, SETTINGS.estimator_parameters()), [0, 1])
    new.claim_shards([1], "new")  # a rebalance gave shard 1 to another worker
    with pytest.raises(LeaseLost, match="shard 1"):
        old.checkpoint_shards(est, 0, [0, 1], "old")
    assert old.shard_ranges()[0] == 0 and old.shard_ranges()[1] == -1  # shard 1 untouched


def test_the_query_service_reads_what_the_processor_wrote(url: str) -> None:
    net = synthetic.make_network(10, seed=2)
    est = synthetic.run(net, SETTINGS, 3000)
    store = TopologyStore(url, net.network, SETTINGS, prefix="q")
    store.checkpoint(est, 0, {0: 1})
    changes = store.update_topology(est, 300_000)
    edge = store.graph()["edges"][0]
    a, b = edge["a"], edge["b"]
    win = store.window_overlaps(a, b)["windows"][0]
    window_a, window_b = f"{a}:{win['a']}", f"{b}:{win['b']}"

    async def main() -> None:
        app = create_app(SETTINGS, redis_url=url, prefix="q", refresh_s=0.1)
        async with TestClient(TestServer(app)) as client:
            graph = await (await client.get("/api/graph")).json()
            assert graph == store.graph()
            params = {"a": window_a, "b": window_b}
            evidence = await (await client.get("/api/evidence", params=params)).json()
            assert evidence == store.pair_evidence(window_a, window_b)
            logged = await (await client.get("/api/changes")).json()
            assert [c["change"] for c in logged["changes"]] == [c["change"] for c in changes]
            health = await (await client.get("/health")).json()
            assert health["status"] == "ok" and health["checkpoint"]["range_id"] == 0

    asyncio.run(main())
