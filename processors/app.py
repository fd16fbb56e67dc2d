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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from camtopo.core.grid import Network
from camtopo.settings import Settings
from processors import metrics
from processors.pipeline import CountStore, StreamProcessor
from processors.validate import DeadLetter

log = logging.getLogger(__name__)


def broker_url(bootstrap: str) -> str:
    """Faust's broker URL for a ``bootstrap.servers`` list."""
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def occupancy_app(group: str, settings: Settings) -> tuple[faust.App, Any, Any]:
    """A Faust app in consumer group ``group`` on the occupancy topic, with the dead-letter
    topic: what the single worker and the assemblers share."""
    app = faust.App(
        group,
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://",
        # Tables live in memory; Faust still makes a folder, by default "<group>-data" in the
        # working directory: keep that out of it.
        datadir=str(Path(tempfile.gettempdir()) / "camtopo-faust-{conf.name}"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # Unacked records are the frames of open ranges, by design: do not wait for them.
        stream_wait_empty=False,
        topic_partitions=settings.occupancy_partitions,
        broker_commit_interval=1.0,
        # A restart after kill -9 waits for the dead member's session to expire before the
        # group rebalances (Faust's default is 60 s); heartbeats at a third of it.
        broker_session_timeout=settings.processor_session_timeout_seconds,
        broker_heartbeat_interval=settings.processor_session_timeout_seconds / 3.0,
        producer_acks=-1,
    )
    occupancy = app.topic(
        settings.occupancy_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.occupancy_partitions,
    )
    dead_letters = app.topic(
        settings.dead_letter_topic, key_serializer="raw", value_serializer="raw"
    )
    return app, occupancy, dead_letters


def create_app(
    network: Network,
    settings: Settings,
    store: CountStore | None,
    *,
    engine: str = "fast",
) -> tuple[faust.App, StreamProcessor[Any]]:
    app, occupancy, dead_letters = occupancy_app(settings.processor_group, settings)
    proc: StreamProcessor[Any] = StreamProcessor(network, settings, store, engine)
    changes_topic = app.topic(
        settings.topology_changes_topic, key_serializer="raw", value_serializer="raw"
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exclusion")

    @app.agent(occupancy, name="count-occupancy")
    async def count(stream: faust.StreamT) -> None:
        # One event at a time, not take_events(): that acks every event of a batch as soon as
        # the batch is handed over, noack() or not (faust-streaming issue #189), so Kafka
        # committed offsets past frames Redis did not hold yet and kill -9 lost them.
        async for event in stream.noack().events():
            msg = event.message
            dead = proc.on_record(
                msg.partition, msg.offset, round(msg.timestamp * 1000), msg.value, event
            )
            if dead is not None:
                copies = functools.partial(proc.dead_letter_sent, msg.partition, msg.offset)
                await send_dead_letter(dead_letters, event, dead, copies)
            for handle in proc.ackable():
                handle.ack()

    @app.task
    async def close_ranges() -> None:
        loop = asyncio.get_running_loop()
        while not app.should_stop:
            await asyncio.sleep(0.2)
            assignment = app.consumer.assignment() if app.consumer else set()
            mine = [tp.partition for tp in assignment if tp.topic == settings.occupancy_topic]
            proc.clock.assign(mine, time.time() * 1000.0)
            behind = _behind(app, assignment, proc.next_offsets)
            if not _owns_every_partition(mine, settings.occupancy_partitions):
                # Counting needs every camera's frames of a tick; with part of the partitions
                # (a second worker in the group, or a dead member not yet expired) the clock
                # would close ranges on a subset and drop the rest as closed. Wait instead.
                metrics.OWNED_PARTITIONS.set(len(mine))
                continue
            metrics.OWNED_PARTITIONS.set(len(mine))
            batch = proc.due_batch(behind=behind)
            if batch is None:
                # Ranges counted but not yet durable (spread checkpoints write a slice of the
                # shards per range): once the stream pauses, write them all at once.
                stale = time.monotonic() - proc.last_checkpoint_wall > 2 * settings.range_seconds
                if not (proc.uncheckpointed and stale):
                    continue
                resume = proc.resume_offsets(proc.acked_until_pending())
                step = functools.partial(proc.checkpoint, resume)
                what = "pending checkpoint"
            else:
                resume = proc.resume_offsets(
                    proc.grid.held_from(batch.range_id) - proc.grid.tolerance
                )
                step = functools.partial(proc.apply, batch, resume)
                what = f"range {batch.range_id}"
            try:
                result = await loop.run_in_executor(executor, step)
            except Exception:
                # Redis stayed unreachable past checkpoint_retry_seconds (or counting failed):
                # nothing counted since the last checkpoint is acked, so a restart replays it;
                # stop rather than count on without checkpoints.
                log.exception("%s could not be counted or checkpointed", what)
                await app.crash(RuntimeError(f"{what}: checkpoint failed"))
                return
            counted_until, changes = (
                (result.counted_until, result.changes) if batch is not None else result
            )
            if counted_until is not None:
                for handle in proc.ackable(counted_until):
                    handle.ack()
            if changes:
                await _publish(changes_topic, changes)

    return app, proc


async def send_dead_letter(
    topic: Any, event: Any, dead: DeadLetter, copies: Callable[[], list[Any]], attempt: int = 0
) -> None:
    """The record's original key and bytes, with the reason, to the dead-letter topic. The
    record, and its copies read again meanwhile (``copies()``), are acked only once the dead
    letter is on Kafka; a failed send is retried with backoff (up to
    ``DEAD_LETTER_MAX_BACKOFF_S`` apart), so no record is committed without its dead letter."""
    msg = event.message
    fut = await topic.send(
        key=msg.key,
        value=msg.value,
        headers=[
            ("reason", dead.reason.encode()),
            ("detail", dead.detail.encode()[:1000]),
            ("source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
        ],
    )
    fut.add_done_callback(functools.partial(_when_sent, topic, event, dead, copies, attempt))


DEAD_LETTER_MAX_BACKOFF_S = 30.0


def _when_sent(
    topic: Any, event: Any, dead: DeadLetter, copies: Callable[[], list[Any]], attempt: int,
    fut: Any,
) -> None:  # fmt: skip
    if not fut.cancelled() and fut.exception() is None:
        event.ack()
        for handle in copies():
            handle.ack()
    elif not fut.cancelled():  # cancelled: the app is stopping; unacked, a restart redoes it
        _send_later(topic, event, dead, copies, attempt, fut.exception())


def _send_later(
    topic: Any, event: Any, dead: DeadLetter, copies: Callable[[], list[Any]], attempt: int,
    error: BaseException | None,
) -> None:  # fmt: skip
    delay = min(DEAD_LETTER_MAX_BACKOFF_S, 2.0**attempt)
    log.error(
        "dead letter for offset %s not delivered (%s); retrying in %.0f s",
        event.message.offset, error, delay,
    )  # fmt: skip
    metrics.DEAD_LETTER_RETRIES.inc()

    async def again() -> None:
        try:
            await send_dead_letter(topic, event, dead, copies, attempt + 1)
        except Exception as exc:  # the producer refused it outright: later, as for a failure
            _send_later(topic, event, dead, copies, attempt + 1, exc)

    asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(again()))


async def _publish(topic: Any, changes: list[dict[str, Any]]) -> None:
    from topology_store.store import change_records

    futures = [await topic.send(key=k, value=v) for k, v in change_records(changes)]
    for fut in futures:
        await fut
    metrics.TOPOLOGY_CHANGES.inc(len(futures))


def _owns_every_partition(mine: list[int], n_partitions: int) -> bool:
    return bool(mine) and set(mine) >= set(range(n_partitions))


def _behind(app: faust.App, assignment: Any, seen: dict[int, int]) -> list[int]:
    """Partitions with records on the broker not yet read (sets the consumer-lag gauge)."""
    consumer = app.consumer
    lag = 0
    behind = []
    try:
        for tp in assignment:
            high = consumer.highwater(tp)
            if high is None:
                # No fetch answered for it yet (just assigned, a restart): it may well hold
                # a backlog, so it must not count as idle and let the others close ranges.
                behind.append(tp.partition)
                continue
            # The position is what the *processor* has taken (records Faust fetched but still
            # holds in the stream buffer are not seen yet: counting that partition idle then
            # would close ranges before its frames arrive). Nothing taken since the start means
            # the committed offset (faust has no public getter); none either: the earliest.
            position = seen.get(tp.partition)
            if position is None:
                position = consumer._committed_offset.get(tp)
            if position is None:
                position = 0
            waiting = max(0, high - position)
            lag += waiting
            if waiting:
                behind.append(tp.partition)
    except Exception:  # an internal API: without it, idleness falls back to silence alone
        return behind
    metrics.CONSUMER_LAG.set(lag)
    return behind
