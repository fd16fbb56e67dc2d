"""The counting worker's loop without a broker (processors/counting_worker.py): what a rebalance
callback leaves for the next step, the order of count → publish → lease poll, a rebuild on a
lost lease or Redis down, flow control of the ranges partitions. Kafka clients, the row
counter and the publisher are fakes that record calls; tests/integration runs it for real."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError

import processors.counting_worker as cw
from camtopo.core.grid import Network
from camtopo.settings import Settings
from processors.counter import Counted
from topology_store.store import LeaseLost

SHARDS_TOPIC, RANGES_TOPIC, PARTS = "shards-t", "ranges-t", 3


class FakeConsumer:
    """Records calls; ``poll`` runs the next scheduled action (a rebalance callback)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[tuple[Any, ...]] = []
        self.on_poll: list[Callable[[], None]] = []
        self.messages: list[FakeMessage] = []
        self.owned: list[TopicPartition] = []  # assignment()

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def poll(self, timeout: float) -> None:
        self.calls.append(("poll",))
        if self.on_poll:
            self.on_poll.pop(0)()

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        msgs, self.messages = self.messages, []
        return msgs

    def assign(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("assign", [(tp.topic, tp.partition, tp.offset) for tp in parts]))

    def pause(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("pause", sorted(tp.partition for tp in parts)))

    def resume(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("resume", sorted(tp.partition for tp in parts)))

    def assignment(self) -> list[TopicPartition]:
        return self.owned

    def position(self, parts: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 10) for tp in parts]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 10 + tp.partition  # lag: 0 + 1 + 2

    def close(self) -> None:
        self.calls.append(("close",))


class FakeMessage:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return RANGES_TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class FakeCollector:
    def __init__(self) -> None:
        self.blocks: list[Any] = []
        self.gaps: list[tuple[int, int, int]] = []
        self.ahead_of: set[int] = set()

    def add(self, block: Any) -> None:
        self.blocks.append(block)

    def ahead(self, limit: int) -> list[int]:
        return sorted(self.ahead_of)


class FakeCounter:
    """RowCounter's surface: records calls; ``fail[name]`` raises once from that call."""

    def __init__(self, *_: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, Exception] = {}
        self.collector: FakeCollector | None = None
        self.batches: list[int] = []  # range ids next_batch hands out
        self.start: int | None = 7  # what rebuild returns
        self.last_counted_wall = time.monotonic()
        self.closing: list[dict[str, Any]] = []

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if (exc := self.fail.pop(call[0], None)) is not None:
            raise exc

    def checkpoint(self, whole: bool = False) -> int:
        self._call("checkpoint", whole)
        return 0

    def rebuild(self, shards: list[int]) -> int | None:
        self._call("rebuild", list(shards))
        self.collector = FakeCollector() if shards else None
        return self.start if shards else None

    def next_batch(self) -> int | None:
        return self.batches.pop(0) if self.batches else None

    def count(self, batch: int) -> Counted:
        self._call("count", batch)
        return Counted(batch, batch, 1, 0, 0, 0.0, [{"range": batch}] if batch % 2 else [])

    def idle(self) -> list[dict[str, Any]]:
        self._call("idle")
        return [{"idle": True}]

    def close(self) -> list[dict[str, Any]]:
        self._call("close")
        return self.closing


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.flushed: list[float] = []

    def flush(self, timeout: float) -> int:
        self.flushed.append(timeout)
        return 0


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> cw.CountingWorker:
    consumers: list[FakeConsumer] = []

    def consumer(config: dict[str, Any]) -> FakeConsumer:
        consumers.append(FakeConsumer(config))
        return consumers[-1]

    published: list[list[dict[str, Any]]] = []
    sleeps: list[float] = []
    monkeypatch.setattr(cw, "ensure_topics", lambda settings: None)
    monkeypatch.setattr(cw, "Consumer", consumer)
    monkeypatch.setattr(cw, "Producer", FakeProducer)
    monkeypatch.setattr(cw, "RowCounter", FakeCounter)
    monkeypatch.setattr(cw, "decode_block", lambda value, n: value.decode())
    monkeypatch.setattr(
        cw, "publish_changes", lambda p, changes, *a, **k: published.append(changes)
    )
    monkeypatch.setattr(time, "sleep", sleeps.append)
    settings = Settings(
        kafka={"occupancy_partitions": PARTS},
        partitioned={"ranges_topic": RANGES_TOPIC, "counter_shards_topic": SHARDS_TOPIC},
    )
    w = cw.CountingWorker(Network.uniform(["a", "b"]), settings, None)  # type: ignore[arg-type]
    w.published, w.sleeps = published, sleeps  # type: ignore[attr-defined]
    assert [id(c) for c in consumers] == [id(w.lease), id(w.reader)]
    assert consumers[0].config["group.id"] == settings.partitioned.counter_group
    return w


def _owning(worker: cw.CountingWorker, shards: list[int]) -> None:
    """A step after an assignment of ``shards``."""
    lease = worker.lease
    lease.on_poll.append(  # type: ignore[attr-defined]
        lambda: lease.on_assign(lease, [TopicPartition(SHARDS_TOPIC, s) for s in shards])  # type: ignore[attr-defined]
    )
    worker.step()


def test_on_assign_wants_the_assigned_shards_in_order(worker: cw.CountingWorker) -> None:
    parts = [TopicPartition(SHARDS_TOPIC, s) for s in (5, 0, 3)]
    worker.on_assign(worker.lease, parts)
    assert worker.wanted == [0, 3, 5]
    assert worker.counter.calls == []  # type: ignore[attr-defined]  # the next step rebuilds


@pytest.mark.parametrize("fails", [None, LeaseLost("gone"), RedisConnectionError("down")])
def test_on_revoke_checkpoints_every_shard_then_owns_none(
    worker: cw.CountingWorker, fails: Exception | None
) -> None:
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    if fails is not None:  # no final checkpoint: the shards are given up all the same
        counter.fail["checkpoint"] = fails
    worker.on_revoke(worker.lease, [])
    assert counter.calls == [("checkpoint", True), ("rebuild", [])]
    assert worker.wanted == []


def test_a_wanted_assignment_rebuilds_and_replays_every_ranges_partition(
    worker: cw.CountingWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    worker.paused = {1}
    _owning(worker, [2, 0])
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    assert counter.calls == [("rebuild", [0, 2])]
    assert worker.wanted is None and worker.start == 7 and worker.paused == set()
    everything = [(RANGES_TOPIC, p, OFFSET_BEGINNING) for p in range(PARTS)]
    # A new assignment resumes every partition: nothing left paused to resume.
    assert [c for c in worker.reader.calls if c[0] != "poll"] == [("assign", everything)]  # type: ignore[attr-defined]
    assert "camtopo process: counting shards [0, 2] from range 7" in capsys.readouterr().out
    # Blocks of ranges counted before the restart are skipped by key, undecoded.
    worker.reader.messages = [FakeMessage(b"6", b"six"), FakeMessage(b"7", b"seven")]  # type: ignore[attr-defined]
    worker.step()
    assert counter.collector is not None and counter.collector.blocks == ["seven"]


def test_redis_down_at_the_rebuild_keeps_the_shards_wanted(worker: cw.CountingWorker) -> None:
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    counter.fail["rebuild"] = RedisConnectionError("down")
    _owning(worker, [1])
    assert worker.wanted == [1] and worker.sleeps == [1.0]  # type: ignore[attr-defined]
    assert not any(c[0] == "assign" for c in worker.reader.calls)  # type: ignore[attr-defined]
    worker.step()  # Redis is back
    assert counter.calls == [("rebuild", [1]), ("rebuild", [1])] and worker.wanted is None


def test_each_batch_is_published_before_the_lease_poll_that_may_end_the_counting(
    worker: cw.CountingWorker,
) -> None:
    _owning(worker, [0])
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    counter.calls.clear()
    counter.batches = [2, 3, 4]  # range 2 changes nothing
    lease = worker.lease
    # step's first poll, after range 2, after range 3: revoked there.
    lease.on_poll += [lambda: None, lambda: None, lambda: lease.on_revoke(lease, [])]  # type: ignore[attr-defined]
    worker.step()
    assert counter.calls == [("count", 2), ("count", 3), ("checkpoint", True), ("rebuild", [])]
    assert worker.published == [[{"range": 3}]]  # type: ignore[attr-defined]
    assert counter.batches == [4] and worker.wanted == []


@pytest.mark.parametrize("fails", [LeaseLost("taken"), RedisConnectionError("down")])
def test_a_lost_lease_while_counting_rebuilds_from_the_current_assignment(
    worker: cw.CountingWorker, fails: Exception
) -> None:
    _owning(worker, [0, 1])
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    counter.batches, counter.fail["count"] = [1, 2], fails
    worker.lease.owned = [TopicPartition(SHARDS_TOPIC, s) for s in (3, 1)]  # type: ignore[attr-defined]
    worker.step()
    assert worker.wanted == [1, 3] and worker.sleeps == [0.5]  # type: ignore[attr-defined]
    assert counter.batches == [2]  # counting stops at the failure; the rebuild replays it


def test_a_paused_stream_checkpoints_every_shard_and_publishes_the_idle_topology(
    worker: cw.CountingWorker,
) -> None:
    _owning(worker, [0])
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    counter.calls.clear()
    worker.step()  # counted just now: no pause yet
    assert counter.calls == []
    counter.batches = [1]
    counter.last_counted_wall = time.monotonic() - 2.1 * worker.settings.processor.range_seconds
    worker.step()
    assert counter.calls == [("count", 1), ("checkpoint", True), ("idle",)]
    assert worker.published == [[{"range": 1}], [{"idle": True}]]  # type: ignore[attr-defined]


def test_partitions_ahead_are_paused_and_resumed_once_they_are_not(
    worker: cw.CountingWorker,
) -> None:
    _owning(worker, [0])
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    reader: FakeConsumer = worker.reader  # type: ignore[assignment]
    assert counter.collector is not None
    steps: list[list[tuple[Any, ...]]] = []
    for ahead in ({0, 2}, {2, 1}, {1, 2}, set()):
        counter.collector.ahead_of = ahead
        reader.calls.clear()
        worker.step()
        steps.append([c for c in reader.calls if c[0] in ("pause", "resume")])
    assert steps == [
        [("pause", [0, 2])],
        [("pause", [1]), ("resume", [0])],
        [],
        [("resume", [1, 2])],
    ]


def test_the_lag_gauge_counts_unread_blocks_of_every_partition(worker: cw.CountingWorker) -> None:
    assert worker._lag() == 0 + 1 + 2


def test_close_publishes_the_last_join_and_closes_the_clients_even_when_it_fails(
    worker: cw.CountingWorker,
) -> None:
    counter: FakeCounter = worker.counter  # type: ignore[assignment]
    counter.closing = [{"last": True}]
    worker.close()
    assert worker.published == [[{"last": True}]]  # type: ignore[attr-defined]
    counter.fail["close"] = LeaseLost("gone")
    worker.close()
    assert worker.lease.calls[-1] == worker.reader.calls[-1] == ("close",)  # type: ignore[attr-defined]
    assert worker.producer.flushed == [10, 10]  # type: ignore[attr-defined]
