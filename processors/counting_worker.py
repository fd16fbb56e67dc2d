"""The Kafka loop of one counting worker of the partitioned pipeline (`camtopo process --role
count`): :class:`CountingWorker` around a :class:`~processors.counter.RowCounter`.

Three clients: the *lease* consumer (the group on ``counter_shards_topic`` whose rebalances hand
out the Redis shards: :meth:`CountingWorker.on_assign` / :meth:`CountingWorker.on_revoke`), the
*reader* of every partition of the ranges topic, and the producer of topology changes. Each
:meth:`CountingWorker.step` applies a new assignment (a rebuild), reads blocks, pauses the
partitions that are ahead, counts the ranges that are whole and publishes their changes.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from camtopo.connections import kafka_config
from camtopo.core.grid import Network
from camtopo.core.partitioned import RangeCollector
from camtopo.formats import avro
from camtopo.settings import Settings
from processors import metrics
from processors.blocks import decode_block
from processors.changes import publish_changes
from processors.counter import RowCounter
from processors.topics import ensure_topics
from topology_store.context import TRANSIENT_ERRORS
from topology_store.store import LeaseLost, TopologyStore

# The loop's log lines keep the logger they were written with before this module existed.
log = logging.getLogger("processors.counter")


class CountingWorker:
    """One counting worker: its clients, the shards the last rebalance wants, and the loop."""

    def __init__(self, network: Network, settings: Settings, store: TopologyStore) -> None:
        ensure_topics(settings)
        self.network = network
        self.settings = settings
        # Registry mode registers the topology_change schema now: unreachable = stop at start.
        self.encoder = avro.encoder(
            settings, avro.TOPOLOGY_CHANGE, settings.kafka.topology_changes_topic
        )
        self.counter = RowCounter(network, settings, store)
        self.stop = False  # set by SIGTERM / SIGINT
        # The shards of a rebalance not yet applied: set by the callbacks inside lease.poll().
        self.wanted: list[int] | None = None
        self.start: int | None = None  # the first range the shards need (None: every range)
        self.paused: set[int] = set()  # ranges partitions paused: ahead of the others
        session_ms = int(settings.processor.session_timeout_seconds * 1000)
        self.lease = Consumer(
            kafka_config(
                settings,
                "counter",
                **{
                    "group.id": settings.partitioned.counter_group,
                    "enable.auto.commit": False,
                    "session.timeout.ms": session_ms,
                    "heartbeat.interval.ms": session_ms // 3,
                },
            )
        )
        self.lease.subscribe(
            [settings.partitioned.counter_shards_topic],
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
        )
        group = f"{settings.partitioned.counter_group}-reader-{uuid.uuid4().hex[:8]}"
        self.reader = Consumer(
            kafka_config(
                settings,
                "counter",
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.max.bytes": 64 << 20,
                },
            )
        )
        self.producer = Producer(kafka_config(settings, "counter", **{"enable.idempotence": True}))
        self.ranges_topic = settings.partitioned.ranges_topic
        self.n_parts = settings.kafka.occupancy_partitions
        self.everything = [
            TopicPartition(self.ranges_topic, p, OFFSET_BEGINNING) for p in range(self.n_parts)
        ]

    # --- rebalance callbacks (inside lease.poll) ----------------------------------------------
    def on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.wanted = sorted(p.partition for p in parts)

    def on_revoke(self, _consumer: Consumer, _parts: list[TopicPartition]) -> None:
        try:  # still the owner: leave the next one less to replay
            self.counter.checkpoint(whole=True)
        except (LeaseLost, *TRANSIENT_ERRORS) as exc:
            log.warning("no final checkpoint before the rebalance: %s", exc)
        self.counter.rebuild([])  # stop writing: the shards are somebody else's now
        self.wanted = []

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        """Loop until SIGTERM / SIGINT; then the last join's changes go out and clients close."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        print(
            f"camtopo process --role count: {self.network.n_cameras} cameras; waiting for shards",
            flush=True,
        )
        try:
            while not self.stop:
                self.step()
        finally:
            self.close()
        return 0

    def _on_signal(self, *_: Any) -> None:
        self.stop = True

    def step(self) -> None:
        """One iteration: a wanted assignment, blocks read, flow control, ranges counted."""
        self.lease.poll(0)  # serves rebalance callbacks; heartbeats run in the background
        if self.wanted is not None and not self._apply_assignment(self.wanted):
            return
        collector = self.counter.collector
        if collector is None:
            time.sleep(0.2)
            return
        self._read_blocks(collector)
        self._flow_control(collector)
        try:
            self._count_ready()
            self._checkpoint_if_idle()
        except (LeaseLost, *TRANSIENT_ERRORS) as exc:
            # Lost a shard, or Redis went away mid-checkpoint: what is in memory may be
            # ahead of Redis in some shards; rebuilding from Redis and replaying is exact.
            log.warning("%s: rebuilding from the current assignment", exc)
            metrics.STORE_RETRIES.labels("rebuild").inc()
            self.wanted = sorted(tp.partition for tp in self.lease.assignment())
            time.sleep(0.5)
        metrics.CONSUMER_LAG.set(self._lag())

    def _apply_assignment(self, shards: list[int]) -> bool:
        """Own ``shards`` (a rebuild) and read the ranges topic from the start again; False
        if Redis is down (``wanted`` stays, the next step tries again)."""
        self.wanted = None
        try:
            self.start = self.counter.rebuild(shards)
        except TRANSIENT_ERRORS as exc:  # Redis down: try again in a moment
            log.warning("cannot load shards %s: %s", shards, exc)
            self.wanted = shards
            time.sleep(1.0)
            return False
        self.reader.assign(self.everything)  # replay: blocks of counted ranges are skipped by key
        self.paused.clear()
        if shards:
            print(f"camtopo process: counting shards {shards} from range {self.start}", flush=True)
        return True

    def _read_blocks(self, collector: RangeCollector) -> None:
        for msg in self.reader.consume(num_messages=200, timeout=0.2):
            if (err := msg.error()) is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("ranges topic: %s", err)
                continue
            k = _block_range(msg.key())
            if k is not None and self.start is not None and k < self.start:
                continue  # counted before the restart: skip without decoding
            self._add_block(collector, msg)

    def _add_block(self, collector: RangeCollector, msg: Message) -> None:
        try:
            collector.add(decode_block(msg.value(), self.network.n_cameras))
            while collector.gaps:
                p, lo, hi = collector.gaps.pop()
                log.warning(
                    "partition %d has no blocks for ranges %d..%d on %s (older than "
                    "its retention, or no data then): counted as empty",
                    p, lo, hi, self.ranges_topic,
                )  # fmt: skip
        except ValueError as exc:  # our own topic: a bug or a foreign writer
            metrics.DEAD_LETTERS.labels("bad_block").inc()
            log.error("block %s/%d/%d not counted: %s", msg.topic(), msg.partition(),
                      msg.offset(), exc)  # fmt: skip

    def _flow_control(self, collector: RangeCollector) -> None:
        """Pause the partitions ahead of the others by ``counter_buffer_frames``, resume the
        rest."""
        ahead = set(collector.ahead(self.settings.partitioned.counter_buffer_frames))
        if ahead == self.paused:
            return
        if ahead - self.paused:
            self.reader.pause(self._partitions(ahead - self.paused))
        if self.paused - ahead:
            self.reader.resume(self._partitions(self.paused - ahead))
        self.paused = ahead

    def _partitions(self, ps: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self.ranges_topic, p) for p in ps]

    def _count_ready(self) -> None:
        """Count every batch of whole ranges and publish its changes."""
        while (batch := self.counter.next_batch()) is not None:
            self._publish(self.counter.count(batch).changes)
            # A long replay must still poll, or the group drops this worker after
            # max.poll.interval.ms; a rebalance (revoke clears the collector) ends it.
            self.lease.poll(0)
            if self.wanted is not None:  # set by on_assign / on_revoke inside poll()
                break

    def _checkpoint_if_idle(self) -> None:
        """The stream has paused (nothing counted for two ranges): checkpoint every owned
        shard and bring the topology up to date."""
        since = time.monotonic() - self.counter.last_counted_wall
        if since > 2 * self.settings.processor.range_seconds:
            self.counter.checkpoint(whole=True)
            self._publish(self.counter.idle())

    def _publish(self, changes: list[dict[str, Any]]) -> None:
        if changes:
            publish_changes(
                self.producer,
                changes,
                self.settings.kafka.topology_changes_topic,
                encoder=self.encoder,
            )

    def _lag(self) -> int:
        """Blocks on the broker not yet read, from cached watermarks (no broker round trip)."""
        lag = 0
        for tp in self.reader.position(self._partitions(range(self.n_parts))):
            _, high = self.reader.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lag += max(0, high - tp.offset)
        return lag

    def close(self) -> None:
        """The last join's changes go out; the clients close."""
        try:
            self._publish(self.counter.close())
        except (LeaseLost, *TRANSIENT_ERRORS) as exc:
            log.warning("last topology join failed: %s", exc)
        self.lease.close()
        self.reader.close()
        self.producer.flush(10)


def _block_range(key: bytes | None) -> int | None:
    try:
        return int(key) if key is not None else None
    except ValueError:
        return None
