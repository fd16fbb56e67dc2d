"""Publishing occupancy to Kafka, and the loop that serves many cameras in one process.

:class:`OccupancyPublisher` follows confluent-kafka's producer conventions: an idempotent
producer with ``acks=all`` (a broker restart neither loses nor duplicates records), a delivery
callback per record, ``poll(0)`` after every produce, a bounded local queue and backpressure
(``BufferError`` -> serve delivery reports and retry), and ``flush()`` on close.

:class:`ProducerLoop` ticks every camera once per frame period -- at real-time pace (the
paper's artificial delays for recorded footage) or as fast as possible -- and publishes each
camera's frames, batched ``frames_per_record`` to a record, keyed by camera.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from camtopo.connections import kafka_config
from camtopo.formats import avro
from camtopo.settings import Settings, get_settings
from producers import metrics
from producers.camera import CameraBatch, Feed


class PublishError(RuntimeError):
    """The producer hit a fatal error (e.g. idempotence broken); the message says which."""


@dataclass
class PublishStats:
    records: int = 0  # produced (queued)
    frames: int = 0
    bytes: int = 0  # key + value bytes handed to Kafka
    delivered: int = 0
    failed: int = 0
    backpressure_waits: int = 0
    wire_tx_bytes: int = 0  # bytes librdkafka sent to brokers (from its statistics)
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))


class OccupancyPublisher:
    """Avro occupancy records to the ``occupancy`` topic, keyed by camera."""

    def __init__(
        self,
        bootstrap: str,
        topic: str | None = None,
        settings: Settings | None = None,
        producer_id: str | None = None,
        config: dict[str, Any] | None = None,
        on_delivery: Callable[[str, dict[str, Any] | None, KafkaError | None], None] | None = None,
        stats_interval_ms: int = 0,
    ) -> None:
        s = settings or get_settings()
        self.topic = topic or s.kafka.occupancy_topic
        self.producer_id = producer_id or f"produce-{uuid.uuid4().hex[:8]}"
        self.stats = PublishStats()
        self._on_delivery = on_delivery
        conf = kafka_config(s.replace(kafka={"bootstrap": bootstrap}), "producer")
        conf |= {
            "client.id": self.producer_id,
            "enable.idempotence": True,
            "acks": "all",
            "queue.buffering.max.messages": s.producer.queue_messages,
            "linger.ms": s.producer.linger_ms,
            "compression.type": s.producer.compression,
            # After a broker outage, deliver what was buffered within ~1 s (librdkafka backs
            # off up to 10 s), well inside the processor's idle_partition_seconds.
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._error,
        }
        if stats_interval_ms:
            conf["statistics.interval.ms"] = stats_interval_ms
            conf["stats_cb"] = self._statistics
        conf.update(config or {})
        self.flush_timeout_s = s.producer.flush_timeout_s
        # Before the Kafka producer: in registry mode the schema is registered now, and an
        # unreachable registry stops here, with nothing produced (never a record unframed).
        self._encoder = avro.encoder(s, avro.OCCUPANCY, self.topic)
        self._producer = Producer(conf)
        self._fatal: str | None = None

    # --- callbacks (run inside poll/flush, on this thread) -----------------------------------
    def _error(self, err: KafkaError) -> None:
        # Transient errors (broker down, reconnecting) are retried by librdkafka itself.
        self.stats.errors.append(f"{err.name()}: {err.str()}")
        if err.fatal():
            self._fatal = f"fatal producer error {err.name()}: {err.str()}"

    def _statistics(self, payload: str) -> None:
        data = json.loads(payload)
        self.stats.wire_tx_bytes = sum(
            int(b.get("txbytes", 0)) for b in data.get("brokers", {}).values()
        )

    def _delivered(
        self, camera: str, record: dict[str, Any] | None, has_data: bool = False
    ) -> Callable[..., None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.stats.delivered += 1
                metrics.DELIVERED.labels("ok").inc()
                if has_data:
                    metrics.LAST_FRAME.labels(camera).set_to_current_time()
            else:
                self.stats.failed += 1
                metrics.DELIVERED.labels("failed").inc()
                self.stats.errors.append(f"delivery of {camera}: {err.name()}: {err.str()}")
            if self._on_delivery is not None:
                self._on_delivery(camera, record, err)

        return report

    # --- publishing ----------------------------------------------------------------------------
    def publish(self, record: dict[str, Any]) -> None:
        """Encode and queue one record; while the queue is full, serve delivery reports and wait."""
        if self._fatal:
            raise PublishError(self._fatal)
        value = self._encoder.encode(record)
        key = record["camera"].encode()
        has_data = any(f["status"] == "OK" for f in record["frames"])
        callback = self._delivered(
            record["camera"], record if self._on_delivery else None, has_data
        )
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=callback)
                break
            except BufferError:
                # Bounded queue full: backpressure. Serve delivery reports, then retry.
                self.stats.backpressure_waits += 1
                metrics.BACKPRESSURE.inc()
                self._producer.poll(0.1)
                if self._fatal:
                    raise PublishError(self._fatal) from None
            except KafkaException as exc:
                raise PublishError(f"cannot produce to {self.topic}: {exc}") from exc
        self.stats.records += 1
        self.stats.frames += len(record["frames"])
        self.stats.bytes += len(value) + len(key)
        metrics.RECORDS_OUT.inc()
        for frame in record["frames"]:
            metrics.FRAMES_OUT.labels(frame["status"]).inc()
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def pending(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float | None = None) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        return int(self._producer.flush(self.flush_timeout_s if timeout is None else timeout))


@dataclass
class LoopSummary:
    ticks: int = 0
    seconds: float = 0.0
    late_ticks: int = 0  # real-time pace only: ticks that started behind schedule
    per_camera: dict[str, dict[str, int]] = field(default_factory=dict)
    undelivered: int = 0


class ProducerLoop:
    """Ticks every feed once per frame period and publishes its frames in batches."""

    def __init__(
        self,
        feeds: Sequence[Feed],
        publisher: OccupancyPublisher,
        fps: int = 10,
        frames_per_record: int = 5,
        realtime: bool = True,
        before_tick: Callable[[], None] | None = None,
        max_ticks: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[int], None] | None = None,
    ) -> None:
        self.feeds = list(feeds)
        self.publisher = publisher
        self.fps = fps
        self.realtime = realtime
        self.before_tick = before_tick
        self.max_ticks = max_ticks
        self.stop = stop or threading.Event()
        self.on_tick = on_tick
        self.batches = [CameraBatch(f.camera, f.grid, frames_per_record) for f in self.feeds]

    def run(self) -> LoopSummary:
        summary = LoopSummary()
        start = time.perf_counter()
        period = 1.0 / self.fps
        tick = 0
        try:
            while not self.stop.is_set() and (self.max_ticks is None or tick < self.max_ticks):
                if all(b.finished for b in self.batches):
                    break
                if self.realtime:
                    due = start + tick * period
                    wait = due - time.perf_counter()
                    if wait > 0:
                        # Sleep in short slices, serving delivery reports meanwhile.
                        while wait > 0:
                            self.publisher.poll(min(wait, 0.05))
                            wait = due - time.perf_counter()
                    elif wait < -period:
                        summary.late_ticks += 1
                        metrics.LATE_TICKS.inc()
                if self.before_tick is not None:
                    self.before_tick()
                for feed, batch in zip(self.feeds, self.batches, strict=True):
                    if batch.finished:
                        continue
                    if batch.add(feed.next_frame(tick)):
                        self.publisher.publish(batch.take(self.publisher.producer_id))
                tick += 1
                if self.on_tick is not None:
                    self.on_tick(tick)
        finally:
            for batch in self.batches:
                if batch.frames:
                    self.publisher.publish(batch.take(self.publisher.producer_id))
            for feed in self.feeds:
                feed.close()
            summary.undelivered = self.publisher.flush()
            summary.ticks = tick
            summary.seconds = time.perf_counter() - start
            summary.per_camera = {b.camera: dict(b.counts, seq=b.seq) for b in self.batches}
        return summary
