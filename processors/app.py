"""The Faust worker: consumes ``occupancy``, counts closed ranges, checkpoints to Redis.

One agent takes records in batches without auto-acking them; a task closes ranges by the
processor clock and counts them in a one-thread executor (the numba kernels release the GIL),
so heartbeats and rebalances are never starved. A record is acked only once every frame it
carried is counted *and* checkpointed, so Kafka's committed offset never passes a frame that
Redis does not hold: after a crash the worker replays from there and the range logic skips
what was already counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from camtopo.connections import SchemaRegistryUnavailable, faust_broker
from camtopo.core.grid import Network
from camtopo.core.ranges import ClosedBatch
from camtopo.formats import avro
from camtopo.settings import Settings
from processors import metrics
from processors.consumer_watch import ConsumerWatch
from processors.dead_letters import send_dead_letter
from processors.pipeline import CountStore, StreamProcessor

log = logging.getLogger(__name__)


def occupancy_app(group: str, settings: Settings) -> tuple[faust.App, Any, Any]:
    """A Faust app in consumer group ``group`` on the occupancy topic, with the dead-letter
    topic: what the single worker and the assemblers share."""
    app = faust.App(
        group,
        **faust_broker(settings),
        store="memory://",
        # Tables live in memory; Faust still makes a folder, by default "<group>-data" in the
        # working directory: keep that out of it.
        datadir=str(Path(tempfile.gettempdir()) / "camtopo-faust-{conf.name}"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # Unacked records are the frames of open ranges, by design: do not wait for them.
        stream_wait_empty=False,
        topic_partitions=settings.kafka.occupancy_partitions,
        broker_commit_interval=1.0,
        # A restart after kill -9 waits for the dead member's session to expire before the
        # group rebalances (Faust's default is 60 s); heartbeats at a third of it.
        broker_session_timeout=settings.processor.session_timeout_seconds,
        broker_heartbeat_interval=settings.processor.session_timeout_seconds / 3.0,
        producer_acks=-1,
        # aiokafka learns a new partition leader only from a metadata refresh, and a fetch
        # that fails on a dead broker does not ask for one (CAMTOPO_KAFKA_METADATA_MAX_AGE_SECONDS).
        consumer_metadata_max_age_ms=int(settings.kafka.metadata_max_age_seconds * 1000),
        producer_metadata_max_age_ms=int(settings.kafka.metadata_max_age_seconds * 1000),
    )
    occupancy = app.topic(
        settings.kafka.occupancy_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka.occupancy_partitions,
    )
    dead_letters = app.topic(
        settings.kafka.dead_letter_topic, key_serializer="raw", value_serializer="raw"
    )
    return app, occupancy, dead_letters


def create_app(
    network: Network,
    settings: Settings,
    store: CountStore | None,
    *,
    engine: str = "fast",
) -> tuple[faust.App, StreamProcessor[Any]]:
    app, occupancy, dead_letters = occupancy_app(settings.processor.group, settings)
    proc: StreamProcessor[Any] = StreamProcessor(network, settings, store, engine)
    changes_topic = app.topic(
        settings.kafka.topology_changes_topic, key_serializer="raw", value_serializer="raw"
    )
    # At start: in registry mode this registers the topology_change schema, and a registry
    # that stays unreachable stops the worker here rather than at its first change.
    changes_encoder = avro.encoder(
        settings, avro.TOPOLOGY_CHANGE, settings.kafka.topology_changes_topic
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exclusion")
    watch = ConsumerWatch.from_settings(settings)

    @app.agent(occupancy, name="count-occupancy")
    async def count(stream: faust.StreamT[bytes]) -> None:
        if not isinstance(stream, faust.Stream):  # noack() is on the implementation only
            raise TypeError(f"count-occupancy needs a faust.Stream, not {type(stream).__name__}")
        # One event at a time, not take_events(): that acks every event of a batch as soon as
        # the batch is handed over, noack() or not (faust-streaming issue #189), so Kafka
        # committed offsets past frames Redis did not hold yet and kill -9 lost them.
        async for event in stream.noack().events():
            msg = event.message
            try:
                dead = proc.on_record(
                    msg.partition, msg.offset, round(msg.timestamp * 1000), msg.value, event
                )
            except SchemaRegistryUnavailable as exc:
                await stop_without_registry(app, exc)
                return
            if dead is not None:
                copies = functools.partial(proc.dead_letter_sent, msg.partition, msg.offset)
                await send_dead_letter(dead_letters, event, dead, copies)
            for handle in proc.ackable():
                handle.ack()
            # Backpressure: a worker that cannot count as fast as records come would otherwise
            # hold them all in memory. Waiting leaves them on Kafka; the close loop drains the
            # due frames (it counts only when this worker owns every partition).
            while (
                proc.backlogged()
                and not app.should_stop
                and _owns_every_partition(my_partitions(), settings.kafka.occupancy_partitions)
            ):
                metrics.BACKPRESSURE_SECONDS.inc(0.05)
                await asyncio.sleep(0.05)

    def my_partitions() -> list[int]:
        assignment = app.consumer.assignment() if app.consumer else set()
        return [tp.partition for tp in assignment if tp.topic == settings.kafka.occupancy_topic]

    async def close_ranges() -> None:
        loop = asyncio.get_running_loop()
        warned = time.monotonic()  # the first assignment may take a rebalance: no warning yet
        while not app.should_stop:
            await asyncio.sleep(0.2)
            assignment = app.consumer.assignment() if app.consumer else set()
            mine = my_partitions()
            proc.clock.assign(mine, time.time() * 1000.0)
            behind = watch.behind(
                app,
                assignment,
                settings.kafka.occupancy_topic,
                proc.next_offsets,
                time.time() * 1000.0,
            )
            if not _owns_every_partition(mine, settings.kafka.occupancy_partitions):
                # Counting needs every camera's frames of a tick; with part of the partitions
                # (a second worker in the group, or a dead member not yet expired) the clock
                # would close ranges on a subset and drop the rest as closed. Wait instead.
                metrics.OWNED_PARTITIONS.set(len(mine))
                if time.monotonic() - warned > 60.0:
                    warned = time.monotonic()
                    log.warning(
                        "waiting: this worker holds %d of the %d %s partitions (another "
                        "--role single worker in group %s, or a dead one not yet expired); "
                        "nothing is counted meanwhile",
                        len(mine), settings.kafka.occupancy_partitions,
                        settings.kafka.occupancy_topic, settings.processor.group,
                    )  # fmt: skip
                continue
            metrics.OWNED_PARTITIONS.set(len(mine))
            batch = proc.due_batch(behind=behind)
            if batch is None:
                # Ranges counted but not yet durable (spread checkpoints write a slice of the
                # shards per range): once the stream pauses, write them all at once.
                stale = (
                    time.monotonic() - proc.last_checkpoint_wall
                    > 2 * settings.processor.range_seconds
                )
                if not (proc.uncheckpointed and stale):
                    continue
                resume = proc.resume_offsets(proc.acked_until_pending())
                step: Callable[[], tuple[int | None, list[dict[str, Any]]]]
                step = functools.partial(proc.checkpoint, resume)
                what = "pending checkpoint"
            else:
                resume = proc.resume_offsets(
                    proc.grid.held_from(batch.range_id) - proc.grid.tolerance
                )
                step = functools.partial(_apply, proc, batch, resume)
                what = f"range {batch.range_id}"
            try:
                counted_until, changes = await loop.run_in_executor(executor, step)
            except Exception:
                # Redis stayed unreachable past checkpoint_retry_seconds (or counting failed):
                # nothing counted since the last checkpoint is acked, so a restart replays it;
                # stop rather than count on without checkpoints.
                log.exception("%s could not be counted or checkpointed", what)
                await app.crash(RuntimeError(f"{what}: checkpoint failed"))
                return
            if counted_until is not None:
                for handle in proc.ackable(counted_until):
                    handle.ack()
            if changes:
                await _publish(changes_topic, changes, changes_encoder)

    app.task(close_ranges)  # a call, not @app.task: faust's decorator is untyped
    return app, proc


def _apply(
    proc: StreamProcessor[Any], batch: ClosedBatch, resume: Mapping[int, int]
) -> tuple[int | None, list[dict[str, Any]]]:
    """Count ``batch`` (executor thread): what became durable, and the topology changes, in the
    shape :meth:`StreamProcessor.checkpoint` returns them."""
    applied = proc.apply(batch, resume)
    return applied.counted_until, applied.changes


async def stop_without_registry(app: faust.App, exc: SchemaRegistryUnavailable) -> None:
    """A record with a schema id not seen before, and the registry gone: stop the worker with
    the record unacked, so a restart reads it again. (Faust's supervisor would restart the agent
    past it, and its unacked offset would hold every commit back.)"""
    log.error("%s", exc)
    await app.crash(exc)


async def _publish(topic: Any, changes: list[dict[str, Any]], encoder: avro.Encoder) -> None:
    from processors.changes import change_records

    futures = [await topic.send(key=k, value=v) for k, v in change_records(changes, encoder)]
    for fut in futures:
        await fut
    metrics.TOPOLOGY_CHANGES.inc(len(futures))


def _owns_every_partition(mine: list[int], n_partitions: int) -> bool:
    return bool(mine) and set(mine) >= set(range(n_partitions))
