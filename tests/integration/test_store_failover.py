"""The store's half of a Redis failover, on two REAL Redis servers and no Kafka: a promoted
replica that lacks the last checkpoints is brought level from the counts in memory
(docs/operations.md, "Redis failover"; the whole pipeline: test_redis_failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from camtopo.connections import redis_client
from camtopo.core.topology import TopologyEstimator
from camtopo.operations.localstack import RedisServer
from tests.integration.test_topology_store_redis import SETTINGS, fresh_store, same_counts
from topology_store import synthetic
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis


def test_a_promoted_replica_that_lacks_a_checkpoint_is_brought_level_from_memory(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    net = synthetic.make_network(8, seed=6)
    est = synthetic.run(net, SETTINGS, 600)
    store = fresh_store(redis_server.url, net)
    store.checkpoint(est, 0, {0: 10})
    # The replica as asynchronous replication may leave it: everything through range 0.
    with RedisServer(data_dir=tmp_path / "replica") as replica:
        primary, copy = redis.Redis.from_url(redis_server.url), redis.Redis.from_url(replica.url)
        for key in primary.scan_iter(f"{store.keys.prefix}:*"):
            copy.restore(key, 0, primary.dump(key), replace=True)
        synthetic.run(net, SETTINGS, 600, start_tick=600, estimator=est)
        store.checkpoint(est, 1, {0: 20})  # acknowledged by the primary alone
        # The failover: the same client object now reaches the promoted replica.
        store.redis = redis_client(SETTINGS, replica.url, decode_responses=False)
        synthetic.run(net, SETTINGS, 30, start_tick=1200, estimator=est)  # few rows change
        report = store.checkpoint(est, 2, {0: 30})
        twin = TopologyEstimator(net.network, SETTINGS.estimator_parameters())
        loader = TopologyStore(replica.url, net.network, SETTINGS, prefix=store.keys.prefix)
        cp = loader.load_into(twin)
        assert cp is not None and cp.range_id == 2 and cp.resume_offsets == {0: 30}
        assert min(cp.shard_ranges.values()) == 2, cp.shard_ranges  # every shard rewritten
        same_counts(est, twin)  # rows changed in range 1 only included
        assert report.rows_written > 0
