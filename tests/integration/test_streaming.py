"""The streaming processor on the real services: Kafka -> `camtopo process` (Faust) -> Redis.

- equivalence: the counts the processor checkpoints to Redis equal, row by row, the offline
  estimator's on the same trace (same ranges), and so does the adjacency;
- recovery: SIGKILL of the processor mid-stream, then a restart, gives the same counts;
- bad input: undecodable and invalid records land on the dead-letter topic with their
  original bytes and a reason, and the good records around them are still counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from camtopo.core.grid import Network
from camtopo.core.ticks import tick_of
from camtopo.core.topology import TopologyEstimator
from camtopo.operations.localstack import free_port
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors import dead_letters
from processors.trace import Record, encode_frames, simulated_records
from tests.integration.conftest import Stack
from topology_store.store import TopologyStore

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "kafka_bootstrap", "occupancy_topic", "dead_letter_topic", "topology_changes_topic",
        "occupancy_partitions", "redis_url", "redis_shards", "processor_group",
        "idle_partition_seconds", "processor_metrics_port", "broker_silence_seconds",
    ):  # fmt: skip
        env[f"CAMTOPO_{name.upper()}"] = str(settings.by_variable()[name])
    return env


class Processor:
    def __init__(self, stack: Stack, log: Path, settings: Settings | None = None) -> None:
        self.stack = stack
        self.log = log
        self.settings = settings or stack.settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "camtopo.cli", "process", "--network",
             str(self.stack.network_path)],
            env=_env(self.settings), cwd=REPO,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"processor exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")


@pytest.fixture
def processor(stack: Stack, tmp_path: Path) -> Iterator[Processor]:
    p = Processor(stack, tmp_path / "processor.log")
    yield p
    p.stop()


def _trace(n_cameras: int, seconds: int, seed: int) -> tuple[Simulation, list[Record]]:
    sim = Simulation.from_name("campus", n_cameras, seed=seed)
    n_ticks = seconds * sim.fps
    # Stamp the trace so it ends a few seconds ago: real-looking Kafka timestamps.
    offset = int(time.time() * 1000) - sim.start_ms - seconds * 1000 - 5000
    records = list(simulated_records(sim, n_ticks, 5, send_delay_ms=300, time_offset_ms=offset))
    return sim, records


def _produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.max.bytes": 1 << 20}
    )
    for rec in records:
        producer.produce(topic, rec.value, rec.camera.encode(), timestamp=rec.send_ms)
        producer.poll(0)
    assert producer.flush(60) == 0


def _offline(network: Network, settings: Settings, records: list[Record]) -> TopologyEstimator:
    est = TopologyEstimator(network, settings.estimator_parameters())
    for rec in records:
        cam = network.camera_index(rec.camera)
        for t, occ in rec.frames:
            est.add_frame(cam, t, list(occ))
    return est


def _last_range(settings: Settings, records: list[Record]) -> int:
    grid = settings.range_grid()
    return max(
        grid.range_of(tick_of(t, settings.grid.tick_ms)) for r in records for t, _ in r.frames
    )


def _first_range(settings: Settings, records: list[Record]) -> int:
    grid = settings.range_grid()
    return grid.range_of(tick_of(records[0].frames[0][0], settings.grid.tick_ms))


def _wait_for_range(stack: Stack, proc: Processor, network: Network, range_id: int,
                    timeout: float = 240) -> None:  # fmt: skip
    store = TopologyStore(stack.redis_url, network, stack.settings)
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        proc.check_alive()
        raw = store.redis.hget(store.keys.checkpoint, "range_id")
        got = int(raw) if raw is not None else -1
        if got >= range_id:
            return
        time.sleep(0.5)
    pytest.fail(f"checkpoint reached range {got}, not {range_id}:\n{proc.log.read_text()[-3000:]}")


def _assert_same_rows(a: TopologyEstimator, b: TopologyEstimator, rows: Iterable[int]) -> None:
    diff = []
    for i in rows:
        ra, rb = a.counts.export_row(i), b.counts.export_row(i)  # type: ignore[attr-defined]
        if not all(np.array_equal(x, y) for x, y in zip(ra, rb, strict=True)):
            diff.append(a.network.label(i))
    assert not diff, f"{len(diff)} rows differ, first: {diff[:5]}"


def _assert_stream_equals_offline(
    stack: Stack, network: Network, records: list[Record], processor: Processor
) -> tuple[TopologyEstimator, TopologyEstimator]:
    """The counts in Redis equal the offline estimator's over the same ranges.

    The processor is stopped first so that no checkpoint is written while the store is read.
    Each shard is compared at the range it holds: a kill can land between two shards'
    transactions, and after the data ends the idle clock keeps closing (empty) ranges, whose
    ticks cross the engine's fixed prune positions — so the offline run advances as far.
    """
    processor.kill()
    store = TopologyStore(stack.redis_url, network, stack.settings)
    streamed = TopologyEstimator(network, stack.settings.estimator_parameters())
    cp = store.load_into(streamed)
    assert cp is not None
    assert cp.range_id >= _last_range(stack.settings, records)
    offline = _offline(network, stack.settings, records)
    grid = stack.settings.range_grid()
    shard = np.array([store.shard_of_window(w) for w in range(network.n_windows)])
    for range_id in sorted(set(cp.shard_ranges.values())):
        offline.advance(grid.first_tick(range_id + 1))
        held = [s for s, r in cp.shard_ranges.items() if r == range_id]
        _assert_same_rows(streamed, offline, np.flatnonzero(np.isin(shard, held)).tolist())
    _assert_same_transit(store, streamed, _offline(network, stack.settings, records))
    return streamed, offline


def _assert_same_transit(
    store: TopologyStore, streamed: TopologyEstimator, offline: TopologyEstimator
) -> None:
    """The stored transit state equals the offline one through the same range (it survives
    restarts: a restored worker feeds it only the ticks it did not have)."""
    assert streamed.transit is not None and offline.transit is not None
    raw = store.redis.hget(store.keys.transit, "range_id")
    assert raw is not None, "no transit state was checkpointed"
    grid = store.settings.range_grid()
    offline.advance(grid.first_tick(int(raw) + 1))
    assert streamed.transit_through == offline.transit_through
    mine, theirs = streamed.transit.state(), offline.transit.state()
    differ = [k for k in mine if not np.array_equal(mine[k], theirs[k])]
    assert not differ, f"transit state differs in {differ}"
    assert offline.transit.stats[1] > 0, "no arrivals: the comparison would be empty"


def test_streaming_counts_equal_offline_estimator(stack: Stack, processor: Processor) -> None:
    sim, records = _trace(20, 90, seed=5)
    sim.network.save(stack.network_path)
    _produce(stack.kafka.bootstrap, stack.topic, records)
    processor.start()
    _wait_for_range(stack, processor, sim.network, _last_range(stack.settings, records))
    streamed, offline = _assert_stream_equals_offline(stack, sim.network, records, processor)
    assert offline.observations > 2000
    mine, theirs = streamed.topology(), offline.topology()
    assert np.array_equal(mine.window_edges.i, theirs.window_edges.i)
    assert np.array_equal(mine.window_edges.j, theirs.window_edges.j)


def test_kill_9_mid_stream_then_restart_counts_every_range_once(
    stack: Stack, processor: Processor
) -> None:
    sim, records = _trace(20, 120, seed=6)
    sim.network.save(stack.network_path)
    last = _last_range(stack.settings, records)
    # The whole trace is on Kafka first (a stream that paused would let the idle clock close
    # its ranges: the trace's timestamps are not the wall clock); the kill lands mid-catch-up.
    _produce(stack.kafka.bootstrap, stack.topic, records)
    processor.start()
    first = _first_range(stack.settings, records)
    _wait_for_range(stack, processor, sim.network, first + (last - first) // 3)
    processor.kill()  # no shutdown, no final commit, no final checkpoint
    store = TopologyStore(stack.redis_url, sim.network, stack.settings)
    killed_at = int(store.redis.hget(store.keys.checkpoint, "range_id"))
    assert killed_at < last, "the processor finished before the kill; make the trace longer"
    processor.start()
    _wait_for_range(stack, processor, sim.network, last)
    _assert_stream_equals_offline(stack, sim.network, records, processor)


def test_redis_killed_and_restarted_mid_stream_resumes_without_loss(
    stack: Stack, processor: Processor
) -> None:
    """SIGKILL of Redis (AOF on) mid-stream: the processor retries its checkpoint until Redis
    is back (acking nothing meanwhile), and the counts equal an uninterrupted run's."""
    sim, records = _trace(20, 120, seed=8)
    sim.network.save(stack.network_path)
    last = _last_range(stack.settings, records)
    _produce(stack.kafka.bootstrap, stack.topic, records)
    processor.start()
    first = _first_range(stack.settings, records)
    # Kill at the first checkpoint: catch-up closes many ranges per batch, a later kill
    # could land after the last one.
    _wait_for_range(stack, processor, sim.network, first)
    store = TopologyStore(stack.redis_url, sim.network, stack.settings)
    # Read before the kill: after the restart the processor's retried checkpoint may already
    # have written the whole trace.
    killed_at = int(store.redis.hget(store.keys.checkpoint, "range_id"))
    stack.redis.kill()  # no shutdown save: only what reached the AOF survives
    # Keep Redis down until a checkpoint has failed past redis-py's own retries (the
    # processor keeps consuming and counting meanwhile, and acks nothing).
    port = stack.settings.processor.metrics_port
    deadline = time.monotonic() + 90
    while _metric(port, "camtopo_store_retries_total") == 0 and time.monotonic() < deadline:
        processor.check_alive()
        time.sleep(0.5)
    processor.check_alive()
    stack.redis.start()
    assert _metric(port, "camtopo_store_retries_total") > 0, "no checkpoint met the outage"
    assert killed_at < last, "the processor finished before the Redis kill; lengthen the trace"
    _wait_for_range(stack, processor, sim.network, last)
    # One processor all along: no frame may have been judged late or closed (dropped).
    dropped = {v: _metric(port, "camtopo_frames_total", verdict=v) for v in ("late", "closed")}
    assert dropped == {"late": 0, "closed": 0}
    _assert_stream_equals_offline(stack, sim.network, records, processor)


def _metric(port: int, name: str, **labels: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _wait_metric(
    proc: Processor, what: str, check: Callable[[], bool], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            if check():
                return
        except OSError:  # metrics endpoint not up yet
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not seen in {timeout:.0f} s:\n{proc.log.read_text()[-3000:]}")


def test_a_rebalance_mid_stream_reads_records_again_without_dead_letters_or_loss(
    stack: Stack, processor: Processor, tmp_path: Path
) -> None:
    """Two workers in the group share the partitions, then one leaves: after each rebalance
    Faust seeks every partition a worker keeps back to its committed offset. The records read
    again are acked with their originals, never dead-lettered as duplicates, and the counts
    equal the offline estimator's."""
    sim, records = _trace(20, 120, seed=9)
    sim.network.save(stack.network_path)
    _produce(stack.kafka.bootstrap, stack.topic, records)
    port, second_port = stack.settings.processor.metrics_port, free_port()
    second = Processor(
        stack, tmp_path / "second.log",
        stack.settings.replace(processor={"metrics_port": second_port}),
    )  # fmt: skip
    # Started together, so that the catch-up cannot end before the group is shared (a lone
    # worker counts 120 s of 20 cameras in seconds).
    processor.start()
    second.start()
    owned = "camtopo_owned_partitions"
    try:
        _wait_metric(second, "the second worker owning partitions",
                     lambda: _metric(second_port, owned) > 0)  # fmt: skip
        _wait_metric(processor, "the first worker taking records of part of the partitions",
                     lambda: 0 < _metric(port, owned) < 4
                     and _metric(port, "camtopo_records_in_total") > 0)  # fmt: skip
    finally:
        second.stop()
    _wait_metric(processor, "all partitions back", lambda: _metric(port, owned) == 4)
    _wait_for_range(stack, processor, sim.network, _last_range(stack.settings, records))
    assert _metric(port, "camtopo_dead_letters_total") == 0
    assert _metric(port, "camtopo_redelivered_records_total") > 0, "nothing was read again"
    _assert_stream_equals_offline(stack, sim.network, records, processor)


def _dead_letters(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    consumer.close()
    return got


def test_bad_input_goes_to_dead_letters_and_counting_goes_on(
    stack: Stack, processor: Processor
) -> None:
    sim, records = _trace(12, 60, seed=7)
    net = sim.network
    net.save(stack.network_path)
    t = records[len(records) // 2].send_ms
    bad = {
        b"\x07not avro at all": "undecodable",
        b"\x00\x00\x00\x00\x09" + records[0].value[5:]: "unknown_schema",
        encode_frames(Network.uniform(["ghost"]), 0, [(t, 0, [1])]): "unknown_camera",
        encode_frames(net, 0, [(t, 0, [500])]): "window_outside_grid",
        encode_frames(net, 1, [(t + 600_000, 0, [3])]): "future_timestamp",
        encode_frames(net, 1, [(t - 86_400_000, 0, [3])]): "past_timestamp",
        # ~1 MB: its dead letter as it is would pass Faust's producer limit (the poison pill)
        b"\x07" + bytes(range(256)) * 3900: "undecodable",
    }
    mixed = list(records)
    for n, value in enumerate(bad):
        mixed.insert(len(mixed) // 2 + n, Record("bad", value, t, ()))
    # A valid record stamped 50 min ahead, on every partition (the forged clock): refused,
    # it moves no clock, and every real frame after it is still counted.
    ahead = encode_frames(net, 2, [(t, 0, [4])])
    for n in range(stack.settings.kafka.occupancy_partitions):
        mixed.insert(len(mixed) // 3, Record(f"cam-{n}", ahead, t + 3_000_000, ()))
    _produce(stack.kafka.bootstrap, stack.topic, mixed)
    processor.start()
    _wait_for_range(stack, processor, net, _last_range(stack.settings, records))
    got = _dead_letters(stack.kafka.bootstrap, stack.dead_letters, len(bad) + 4)
    headers = [dict(m.headers()) for m in got]
    reasons = {m.value(): h["reason"].decode() for m, h in zip(got, headers, strict=True)}
    truncated = dead_letters.TRUNCATED_BYTES
    assert reasons == {
        **{v[:truncated] if len(v) > truncated else v: r for v, r in bad.items()},
        ahead: "ahead_of_clock",
    }
    (big,) = [h for h in headers if h.get("truncated") == b"true"]
    assert big["original_size"] == str(3900 * 256 + 1).encode()
    # each dead letter says where its record came from
    assert all(stack.topic.encode() in h["source"] for h in headers)
    # Nothing holds a partition: everything is committed, and the processor's gauge says so.
    port = stack.settings.processor.metrics_port
    deadline = time.monotonic() + 60
    # (the gauge follows the group's commit on the processor's next 0.2 s watch: wait for both)
    while time.monotonic() < deadline and (
        _committed_lag(stack) or _metric(port, "camtopo_consumer_lag_records")
    ):
        time.sleep(1)
    assert _committed_lag(stack) == 0
    assert _metric(port, "camtopo_consumer_lag_records") == 0
    dropped = {v: _metric(port, "camtopo_frames_total", verdict=v) for v in ("late", "closed")}
    assert dropped == {"late": 0, "closed": 0}
    _assert_stream_equals_offline(stack, net, records, processor)


def _committed_lag(stack: Stack) -> int:
    """High watermark minus the processor group's committed offset, over the partitions."""
    from confluent_kafka import TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": stack.kafka.bootstrap, "group.id": stack.settings.processor.group}
    )
    try:
        parts = [
            TopicPartition(stack.topic, p) for p in range(stack.settings.kafka.occupancy_partitions)
        ]
        lag = 0
        for tp in consumer.committed(parts, timeout=10):
            high = consumer.get_watermark_offsets(tp, timeout=10)[1]
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()


def _produce_live(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Each record when the wall clock reaches its send time, stamped with it, as a camera-side
    producer does; librdkafka buffers (and keeps the stamps) while the broker is away."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True,
         "reconnect.backoff.max.ms": 1000}
    )  # fmt: skip
    for rec in records:
        time.sleep(max(0.0, rec.send_ms / 1000 - time.time()))
        producer.produce(topic, rec.value, rec.camera.encode(), timestamp=rec.send_ms)
        producer.poll(0)
    assert producer.flush(120) == 0


def test_a_broker_outage_mid_stream_closes_no_range_early_and_loses_nothing(
    stack: Stack, processor: Processor
) -> None:
    """The broker is stopped for 15 s while cameras stream in real time. Before, every partition
    looked idle meanwhile and wall time closed the ranges the producers were still buffering:
    1,166 of 26,938 frames were dropped as closed. Now no frame is late or closed and the
    counts equal the offline estimate."""
    import threading

    seconds = 50
    sim = Simulation.from_name("campus", 16, seed=9)
    sim.network.save(stack.network_path)
    offset = int(time.time() * 1000) - sim.start_ms + 8000  # the stream starts in 8 s
    records = list(
        simulated_records(sim, seconds * sim.fps, 5, send_delay_ms=300, time_offset_ms=offset)
    )
    settings = stack.settings.replace(
        processor={"idle_partition_seconds": 5.0, "broker_silence_seconds": 3.0}
    )
    processor.settings = settings
    processor.start()
    producer = threading.Thread(
        target=_produce_live, args=(stack.kafka.bootstrap, stack.topic, records), daemon=True
    )
    producer.start()
    time.sleep(max(0.0, records[0].send_ms / 1000 - time.time()) + 15)
    processor.check_alive()
    stack.kafka.stop()
    try:
        time.sleep(15)
    finally:
        stack.kafka.start()
    producer.join(180)
    assert not producer.is_alive(), "the producer did not deliver its records"
    _wait_for_range(stack, processor, sim.network, _last_range(settings, records))
    port = settings.processor.metrics_port
    dropped = {v: _metric(port, "camtopo_frames_total", verdict=v) for v in ("late", "closed")}
    assert _metric(port, "camtopo_unconfirmed_partitions") == 0
    assert dropped == {"late": 0, "closed": 0}
    _assert_stream_equals_offline(stack, sim.network, records, processor)


def test_a_full_redis_stops_acks_and_resumes_when_memory_is_freed(
    stack: Stack, processor: Processor
) -> None:
    """Redis at maxmemory (noeviction) refuses every checkpoint: the processor keeps the counts,
    acks nothing, retries (camtopo_store_retries_total, for CamtopoStoreRetrying) however long
    it takes, and once memory is freed the counts equal an uninterrupted run's."""
    import redis

    sim, records = _trace(20, 90, seed=12)
    sim.network.save(stack.network_path)
    _produce(stack.kafka.bootstrap, stack.topic, records)
    admin = redis.Redis.from_url(stack.redis_url)
    port = stack.settings.processor.metrics_port
    store = TopologyStore(stack.redis_url, sim.network, stack.settings)
    # Below what Redis holds already: with noeviction every write is refused (reads are not).
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", max(1 << 20, used // 2))
    try:
        processor.start()
        deadline = time.monotonic() + 120
        retries = 0.0
        while retries < 3 and time.monotonic() < deadline:
            processor.check_alive()
            time.sleep(0.5)
            with contextlib.suppress(OSError):  # its metrics server may not be up yet
                retries = _metric(port, "camtopo_store_retries_total")
        assert retries >= 3, "Redis never refused a write"
        # Past checkpoint_retry_seconds of an outage the worker would stop; a full Redis is
        # waited for, and nothing is written or acked meanwhile.
        processor.check_alive()
        assert store.redis.hget(store.keys.checkpoint, "range_id") is None
        assert _committed_lag(stack) == len(records)
    finally:
        admin.config_set("maxmemory", 0)
    _wait_for_range(stack, processor, sim.network, _last_range(stack.settings, records))
    dropped = {v: _metric(port, "camtopo_frames_total", verdict=v) for v in ("late", "closed")}
    assert dropped == {"late": 0, "closed": 0}
    _assert_stream_equals_offline(stack, sim.network, records, processor)
