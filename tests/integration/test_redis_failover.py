"""Redis failover mid-stream: primary + replica + three sentinels (camtopo.operations.localstack's
RedisSentinelGroup), the processor and the query service given only the sentinels.

The replica's link to the primary is cut (REPLICAOF to a closed port, as a network fault
would), so the primary's last checkpoints reach no replica; then the primary is SIGKILLed.
Sentinel promotes the replica, which lacks those writes. The processor follows the new
primary without a restart, rewrites what the new primary lacks from its counts in memory, and
the counts in Redis equal the offline estimate; the query service answers from the new
primary. docs/operations.md, "Redis failover".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from camtopo.operations.localstack import RedisSentinelGroup, free_port
from camtopo.settings import Settings
from tests.integration.conftest import Stack
from tests.integration.test_streaming import (
    REPO,
    Processor,
    _assert_same_rows,
    _assert_stream_equals_offline,
    _env,
    _first_range,
    _last_range,
    _metric,
    _produce,
    _trace,
)
from topology_store.store import TopologyStore

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
META = "camtopo:{meta}:checkpoint"


def _sentinel_env(settings: Settings) -> dict[str, str]:
    env = _env(settings)
    for name in ("redis_sentinels", "redis_sentinel_master", "redis_min_replicas_acked",
                 "redis_wait_timeout_ms"):  # fmt: skip
        env[f"CAMTOPO_{name.upper()}"] = str(settings.by_variable()[name])
    return env


class SentinelProcessor(Processor):
    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "camtopo.cli", "process", "--network",
             str(self.stack.network_path)],
            env=_sentinel_env(self.settings), cwd=REPO,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def group(tmp_path: Path) -> Iterator[RedisSentinelGroup]:
    ha = RedisSentinelGroup(tmp_path / "ha").start()
    yield ha
    ha.stop()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.mark.parametrize(
    ("cut", "min_replicas_acked"),
    [
        # Mid-stream, as deployed with a replica: checkpoints WAIT for it (2 s at most).
        ("mid", 1),
        # The single-Redis default, no WAIT; the cut spans the trace's end (from 20 ranges
        # before it at the earliest), so no later frame rewrites the rows the new primary
        # lacks: only the processor's follow-up can.
        ("end", 0),
    ],
)
def test_primary_killed_mid_stream_processor_and_query_service_follow_counts_exact(
    kafka, kafka_topic, group: RedisSentinelGroup, tmp_path: Path, cut: str,
    min_replicas_acked: int,
) -> None:  # fmt: skip
    started = time.monotonic()
    first_primary = group.primary()
    settings = Settings(
        kafka={
            "bootstrap": kafka.bootstrap,
            "occupancy_topic": kafka_topic(partitions=4),
            "dead_letter_topic": kafka_topic(partitions=1, prefix="dead"),
            "topology_changes_topic": kafka_topic(partitions=2, prefix="changes"),
            "occupancy_partitions": 4,
        },
        # The URL gives scheme and database only: the host is whatever the sentinels name.
        redis={
            "url": "redis://127.0.0.1:1/0",
            "shards": 8,
            "sentinels": group.sentinels,
            "sentinel_master": group.master,
            "min_replicas_acked": min_replicas_acked,
            "wait_timeout_ms": 2000,
        },
        processor={
            "group": f"proc-{uuid.uuid4().hex[:8]}",
            "idle_partition_seconds": 2.0,
            "metrics_port": free_port(),
        },
    )
    stack = Stack(kafka, first_primary, settings.kafka.occupancy_topic,
                  settings.kafka.dead_letter_topic, settings.redis.url, settings,
                  tmp_path / "network.json")  # fmt: skip
    sim, records = _trace(20, 240 if cut == "end" else 120, seed=11)
    sim.network.save(stack.network_path)
    first, last = _first_range(settings, records), _last_range(settings, records)
    _produce(kafka.bootstrap, stack.topic, records)
    processor = SentinelProcessor(stack, tmp_path / "processor.log")
    query_port = free_port()
    query_log = tmp_path / "query.log"
    query = None
    try:
        processor.start()
        direct = redis.Redis(port=first_primary.port)

        def wait_for(range_id: int) -> int:
            deadline = time.monotonic() + 120
            while (got := int(direct.hget(META, "range_id") or -1)) < range_id:
                processor.check_alive()
                assert time.monotonic() < deadline, processor.log.read_text()[-3000:]
                time.sleep(0.05)
            return got

        query = subprocess.Popen(
            [sys.executable, "-m", "camtopo.cli", "serve", "--network", str(stack.network_path),
             "--port", str(query_port)],
            env=_sentinel_env(settings) | {"CAMTOPO_HTTP_HOST": "127.0.0.1"}, cwd=tmp_path,
            stdout=query_log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{query_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, query_log.read_text()[-3000:]
            time.sleep(0.3)

        # Cut the replica off the primary: the checkpoints from now on reach no replica.
        wait_for(first + (last - first) // 4 if cut == "mid" else last - 20)
        replica = redis.Redis(port=group.replica().port)
        replica.replicaof("127.0.0.1", str(free_port()))
        # At least one checkpoint lands on the primary alone (then, mid-stream, kill it at
        # once: with WAIT that is while the processor waits for the replica).
        wait_for(int(replica.hget(META, "range_id") or -1) + 1)
        if cut == "end":
            wait_for(last)
        at_kill = int(direct.hget(META, "range_id") or -1)
        lacks = int(replica.hget(META, "range_id") or -1)
        first_primary.kill()
        killed = time.monotonic()
        if cut == "mid":
            assert at_kill < last, "the processor finished before the kill; lengthen the trace"

        # Sentinel promotes the replica; the processor's next checkpoint lands there.
        deadline = time.monotonic() + 60
        while True:
            processor.check_alive()
            assert time.monotonic() < deadline, processor.log.read_text()[-3000:]
            try:
                new = group.primary()
                if new is not first_primary:
                    # After the trace's end the clock still closes (empty) ranges.
                    moved = int(redis.Redis(port=new.port).hget(META, "range_id") or -1)
                    if moved > at_kill:
                        break
            except (redis.RedisError, RuntimeError):
                pass
            time.sleep(0.1)
        failover_s = time.monotonic() - killed
        # The operator restarts the dead node: Sentinel makes it the new primary's replica.
        first_primary.start()

        store = TopologyStore(settings.redis.url, sim.network, settings)
        deadline = time.monotonic() + 180
        while int(store.redis.hget(store.keys.checkpoint, "range_id") or -1) < last:
            processor.check_alive()
            assert time.monotonic() < deadline, processor.log.read_text()[-3000:]
            time.sleep(0.5)
        port = settings.processor.metrics_port
        switches = _metric(port, "camtopo_redis_primary_switches_total")
        rewritten = _metric(port, "camtopo_store_rows_rewritten_total")
        lost = _metric(port, "camtopo_store_server_changes_total", outcome="lost_writes")
        status, health = _get(f"{base}/health")
        assert status == 200, query_log.read_text()[-3000:]
        assert health["checkpoint"]["range_id"] >= last
        assert _get(f"{base}/api/graph")[0] == 200
        query_switches = _metric(query_port, "camtopo_redis_primary_switches_total")

        # Still the first processor: it followed the new primary, no restart.
        processor.check_alive()
        assert "camtopo process" in processor.log.read_text() and processor.proc is not None
        dropped = {v: _metric(port, "camtopo_frames_total", verdict=v) for v in ("late", "closed")}
        assert dropped == {"late": 0, "closed": 0}
        assert switches >= 1 and query_switches >= 1
        # The new primary lacked acknowledged checkpoints of the old one: rewritten.
        assert lacks < at_kill and lost >= 1 and rewritten > 0, (lacks, at_kill, lost, rewritten)
        streamed, offline = _assert_stream_equals_offline(stack, sim.network, records, processor)
        # Stricter than each shard at its own range (that allows a crash between shards, which
        # a replay repairs; none happened here): every row as the offline estimate has it at
        # the newest range. A shard left at the older range the new primary held, with Kafka
        # acked past it, fails here.
        _assert_same_rows(streamed, offline, range(sim.network.n_windows))
        print(
            f"failover to a served checkpoint {failover_s:.1f} s; the replica lacked ranges "
            f"{lacks + 1}..{at_kill}; {int(rewritten)} rows rewritten; test "
            f"{time.monotonic() - started:.0f} s"
        )
    finally:
        processor.stop()
        if query is not None:
            query.terminate()
            query.wait(20)


def test_counting_workers_rebuild_from_the_promoted_replica_and_replay_without_loss(
    kafka, kafka_topic, group: RedisSentinelGroup, tmp_path: Path
) -> None:
    """The partitioned pipeline (--role assemble / count) given only the sentinels: after the
    failover each counting worker finds another server, rebuilds its shards from the promoted
    replica (which lacked its last checkpoints) and replays the ranges topic."""
    from tests.integration.test_partitioned_pipeline import (
        Workers,
        _assert_shards_equal_offline,
        _live_trace,
        _wait_all_shards,
        _wait_shards_shared,
    )

    first_primary = group.primary()
    settings = Settings(
        kafka={
            "bootstrap": kafka.bootstrap,
            "occupancy_topic": kafka_topic(partitions=4),
            "dead_letter_topic": kafka_topic(partitions=1, prefix="dead"),
            "topology_changes_topic": kafka_topic(partitions=2, prefix="changes"),
            "occupancy_partitions": 4,
        },
        redis={
            "url": "redis://127.0.0.1:1/0",
            "shards": 8,
            "sentinels": group.sentinels,
            "sentinel_master": group.master,
            "min_replicas_acked": 1,
        },
        processor={"group": f"proc-{uuid.uuid4().hex[:8]}", "idle_partition_seconds": 2.0},
    )
    stack = Stack(kafka, first_primary, settings.kafka.occupancy_topic,
                  settings.kafka.dead_letter_topic, settings.redis.url, settings,
                  tmp_path / "network.json")  # fmt: skip
    workers = Workers(stack, tmp_path)
    try:
        sim, records, producing = _live_trace(stack, seed=9, seconds=80)
        last = _last_range(workers.settings, records)
        workers.start("assemble-1", "assemble")
        for n in (1, 2):
            workers.start(f"count-{n}", "count")
        first = _first_range(workers.settings, records)
        _wait_shards_shared(workers, ["count-1", "count-2"])
        _wait_all_shards(workers, sim.network, first + (last - first) // 2)
        store = TopologyStore(settings.redis.url, sim.network, workers.settings)
        replica = redis.Redis(port=group.replica().port)
        replica.replicaof("127.0.0.1", str(free_port()))
        held = store.shard_ranges()
        # At least one shard checkpoint lands on the primary alone, then the primary dies.
        deadline = time.monotonic() + 60
        while store.shard_ranges() == held:
            workers.check_alive()
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.05)
        primary_ranges = store.shard_ranges()
        replica_ranges = {s: int(replica.get(store.keys.range(s)) or -1) for s in held}
        first_primary.kill()
        assert replica_ranges != primary_ranges, "the cut lost nothing; nothing to rebuild"
        assert min(primary_ranges.values()) < last, "finished before the kill; lengthen it"
        time.sleep(3)
        first_primary.start()  # back as the new primary's replica
        producing.join(120)
        _wait_all_shards(workers, sim.network, last)
        logs = [(tmp_path / f"count-{n}.log").read_text() for n in (1, 2)]
        # Each followed the new primary and rebuilt (the primary changed during a checkpoint,
        # or was found changed at the next one).
        rebuilt = [log.split("Redis primary is now", 1)[-1] for log in logs]
        assert all("rebuilding from the current assignment" in log for log in rebuilt), (
            workers.logs()
        )
        _assert_shards_equal_offline(workers, sim.network, records)
    finally:
        workers.stop()
