"""Assembler workers of the partitioned pipeline (`camtopo process --role assemble`).

Any number of them form one Faust consumer group on the occupancy topic. Each validates its
partitions' records (bad ones to the dead-letter topic, as in the single worker), assembles
every partition into event-time ranges by that partition's own clock, and publishes each
closed span as one :class:`~camtopo.core.partitioned.RangeBlock` to the same partition of the
ranges topic. A record is acked once the block holding its last frame is on the broker, so
Kafka commits never pass a frame no block carries; after a crash or a rebalance the new owner
replays from the committed offset and the counting workers drop the ranges they already have.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Generic, TypeVar

import faust

from camtopo.connections import SchemaRegistryUnavailable
from camtopo.core.grid import Network
from camtopo.core.partitioned import PartitionRanges, RangeBlock
from camtopo.formats import avro
from camtopo.settings import Settings
from processors import metrics
from processors.app import occupancy_app, stop_without_registry
from processors.blocks import encode_block
from processors.consumer_watch import ConsumerWatch
from processors.dead_letters import send_dead_letter
from processors.metrics import LOST
from processors.validate import DeadLetter, Limits, ValidRecord, duplicate, validate

log = logging.getLogger(__name__)
E = TypeVar("E")


class RangePublisher(Generic[E]):
    """The assembler's logic without Faust: records in, blocks out, handles to ack."""

    def __init__(
        self, network: Network, settings: Settings, published: dict[int, int] | None = None
    ) -> None:
        self.network = network
        self.settings = settings
        cfg = settings.processor
        grid = settings.range_grid()
        self.ranges: PartitionRanges[E] = PartitionRanges(
            grid,
            cfg.idle_partition_seconds * 1000.0,
            published,
            silence_ms=cfg.camera_silence_seconds * 1000.0 if cfg.early_close else None,
            hold_ms=min(cfg.early_close_hold_seconds * 1000.0, grid.late_ms),
        )
        self.limits = Limits.from_settings(settings)
        self.decoder = avro.decoder(settings)  # file mode, or ids resolved via the registry
        self._late = metrics.LateMinute()

    @property
    def next_offsets(self) -> dict[int, int]:
        """Per partition held, the offset after the last record taken (records read again
        after a rebalance do not move it back; a partition dropped starts again)."""
        return self.ranges.next_offsets

    @property
    def redelivered(self) -> int:
        """Records read again after a rebalance: acked with their original, not judged."""
        return self.ranges.redelivered

    def on_record(
        self,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        handle: E,
        wall_ms: float | None = None,
    ) -> tuple[DeadLetter | None, E | None]:
        """Take one record: (a dead letter to publish then ack, or None; a handle to ack now).

        A record read again after a rebalance (Faust re-reads from the committed offset) is
        not judged again: see :meth:`PartitionRanges.redelivery`.
        """
        wall_ms = time.time() * 1000.0 if wall_ms is None else wall_ms
        # Records come as soon as Faust is assigned a partition, maybe before the closing task
        # sees the assignment; a record of a partition revoked meanwhile is dropped with its
        # state at the task's next assign() — unacked, so its new owner replays it.
        self.ranges.start(partition, wall_ms)
        again = self.ranges.redelivery(partition, offset, handle)
        if again is not None:
            metrics.REDELIVERED.inc()
            return None, again[0] if again else None
        metrics.RECORDS_IN.inc()
        result = validate(value, record_ms, wall_ms, self.network, self.limits, self.decoder)
        if isinstance(result, ValidRecord) and self.ranges.is_duplicate(
            partition, result.camera, result.ticks.tolist()
        ):
            result = duplicate(self.network, result)
        if isinstance(result, DeadLetter):
            metrics.DEAD_LETTERS.labels(result.reason).inc()
            self.ranges.dead_lettered(partition, offset)
            return result, None
        verdicts, ack = self.ranges.take(
            partition,
            result.camera,
            result.ticks.tolist(),
            result.windows,
            record_ms,
            wall_ms,
            handle,
            offset,
            result.through,
        )
        for verdict in verdicts:
            metrics.FRAMES.labels(verdict.value).inc()
        self._late.add(wall_ms, len(verdicts), sum(v in LOST for v in verdicts))
        return None, ack


def create_assembler_app(
    network: Network, settings: Settings, published: dict[int, int]
) -> tuple[faust.App, RangePublisher[Any]]:
    app, occupancy, dead_letters = occupancy_app(settings.partitioned.assembler_group, settings)
    pub: RangePublisher[Any] = RangePublisher(network, settings, published)
    ranges_topic = app.topic(
        settings.partitioned.ranges_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka.occupancy_partitions,
    )

    watch = ConsumerWatch.from_settings(settings)

    @app.agent(occupancy, name="assemble-ranges")
    async def assemble(stream: faust.StreamT[bytes]) -> None:
        if not isinstance(stream, faust.Stream):  # noack() is on the implementation only
            raise TypeError(f"assemble-ranges needs a faust.Stream, not {type(stream).__name__}")
        # One event at a time with acks off (see processors/app.py: take_events acks early).
        async for event in stream.noack().events():
            msg = event.message
            try:
                dead, ack = pub.on_record(
                    msg.partition, msg.offset, round(msg.timestamp * 1000), msg.value, event
                )
            except SchemaRegistryUnavailable as exc:
                await stop_without_registry(app, exc)
                return
            if dead is not None:
                copies = functools.partial(pub.ranges.dead_letter_sent, msg.partition, msg.offset)
                await send_dead_letter(dead_letters, event, dead, copies)
            elif ack is not None:
                ack.ack()

    def _on_block_sent(block: RangeBlock, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            # Unacked records stay before Kafka's committed offset: a restart republishes.
            log.error("block of partition %d range %d not delivered", block.partition,
                      block.range_id)  # fmt: skip
            return
        metrics.BLOCKS_PUBLISHED.inc()
        for handle in pub.ranges.delivered(block):
            handle.ack()

    async def close_ranges() -> None:
        while not app.should_stop:
            await asyncio.sleep(0.2)
            assignment = app.consumer.assignment() if app.consumer else set()
            mine = [tp.partition for tp in assignment if tp.topic == settings.kafka.occupancy_topic]
            now = time.time() * 1000.0
            pub.ranges.assign(mine, now)
            metrics.OWNED_PARTITIONS.set(len(mine))
            behind = watch.behind(
                app, assignment, settings.kafka.occupancy_topic, pub.next_offsets, now
            )
            for block in pub.ranges.due(now, behind):
                fut = await ranges_topic.send(
                    key=str(block.range_id).encode(),
                    value=encode_block(block, network.n_cameras),
                    partition=block.partition,
                )
                if not isinstance(fut, asyncio.Future):  # typed Awaitable; a FutureMessage
                    raise TypeError(f"faust send() returned {type(fut).__name__}, not a future")
                fut.add_done_callback(functools.partial(_on_block_sent, block))
            metrics.OPEN_FRAMES.set(pub.ranges.open_frames)
            metrics.UNACKED.set(pub.ranges.unacked)

    app.task(close_ranges)  # a call, not @app.task: faust's decorator is untyped
    return app, pub
