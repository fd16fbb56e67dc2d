"""The processor's logic, driven directly: same counts as the offline estimator, bad input out."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors.pipeline import Applied, StreamProcessor
from processors.trace import encode_frames, simulated_records
from topology_store.context import CheckpointReport, Estimator
from topology_store.memory import memory_server
from topology_store.store import TopologyStore

PARTITIONS = 4


def _rows(est: TopologyEstimator) -> list[tuple[bytes, ...]]:
    counts = est.counts
    out = []
    for i in range(est.network.n_windows):
        o, state, p, activity = counts.export_row(i)  # type: ignore[attr-defined]
        out.append((o.tobytes(), state.tobytes(), p.tobytes(), activity))
    return out


def _run(
    sim: Simulation, n_ticks: int, settings: Settings, forged: dict[int, list[Any]] | None = None
) -> tuple[StreamProcessor, list]:
    """Feed a simulated stream; ``forged``: record index -> (partition, Kafka timestamp,
    value, reason) records sent just before it, each dead-lettered with that reason."""
    proc: StreamProcessor[int] = StreamProcessor(sim.network, settings)
    offsets = [0] * PARTITIONS
    records = list(simulated_records(sim, n_ticks, frames_per_record=5, send_delay_ms=300))
    proc.clock.assign(range(PARTITIONS), wall_ms=0)
    for n, rec in enumerate(records):
        part = zlib.crc32(rec.camera.encode()) % PARTITIONS
        wall = rec.send_ms  # replayed at the pace it was sent
        for p, stamp, value, reason in (forged or {}).get(n, []):
            dead = proc.on_record(p, offsets[p], stamp, value, -1, wall_ms=wall)
            assert dead is not None and dead.reason == reason, dead
            offsets[p] += 1
        assert proc.on_record(part, offsets[part], rec.send_ms, rec.value, n, wall_ms=wall) is None
        offsets[part] += 1
        batch = proc.due_batch(wall_ms=wall)
        if batch is not None:
            proc.apply(batch, proc.resume_offsets(batch.frontier))
    # the stream ends: all partitions idle, wall time closes the last ranges
    batch = proc.due_batch(wall_ms=records[-1].send_ms + 60_000)
    assert batch is not None
    proc.apply(batch, {})
    return proc, records


def test_streaming_counts_equal_the_offline_estimator() -> None:
    settings = Settings()
    sim = Simulation.from_name("campus", 12, seed=3)
    proc, records = _run(sim, 600, settings)
    offline = TopologyEstimator(sim.network, settings.estimator_parameters())
    for rec in records:
        cam = sim.network.camera_index(rec.camera)
        for t, occ in rec.frames:
            offline.add_frame(cam, t, list(occ))
    frontier = proc.grid.first_tick(proc.assembler.closed_through + 1)
    offline.advance(frontier)
    assert offline.observations > 1000  # the trace is not trivially empty
    assert _rows(proc.estimator) == _rows(offline)
    mine, theirs = proc.estimator.topology(), offline.topology()
    assert np.array_equal(mine.window_edges.i, theirs.window_edges.i)
    assert np.array_equal(mine.window_edges.j, theirs.window_edges.j)


def _offline_rows(sim: Simulation, settings: Settings, records: list, frontier: int) -> list:
    offline = TopologyEstimator(sim.network, settings.estimator_parameters())
    for rec in records:
        cam = sim.network.camera_index(rec.camera)
        for t, occ in rec.frames:
            offline.add_frame(cam, t, list(occ))
    offline.advance(frontier)
    return _rows(offline)


def test_records_stamped_ahead_of_wall_time_are_dead_letters_and_move_no_clock() -> None:
    # The probe: a record per partition stamped 30 days (or 50 s, valid otherwise) ahead moved
    # the processor clock there; every later frame was dropped as closed.
    settings = Settings()
    sim = Simulation.from_name("campus", 12, seed=3)
    day30 = 30 * 86_400_000
    forged: dict[int, list[Any]] = {}
    for p in range(PARTITIONS):
        forged.setdefault(40, []).append((p, day30, b"garbage", "undecodable"))
        ahead = encode_frames(sim.network, 0, [(50_000, 0, [3])])
        forged.setdefault(80, []).append((p, 50_000, ahead, "ahead_of_clock"))
    proc, records = _run(sim, 600, settings, forged)
    frontier = proc.grid.first_tick(proc.assembler.closed_through + 1)
    assert _rows(proc.estimator) == _offline_rows(sim, settings, records, frontier)


def test_bad_records_are_dead_lettered_with_a_reason() -> None:
    settings = Settings()
    net = Network.uniform(["a", "b"])
    proc: StreamProcessor[int] = StreamProcessor(net, settings)
    good = encode_frames(net, 0, [(10_000, 0, [1, 2])])
    cases = {
        "undecodable": b"\x00\x00\x00\x00\x01garbage",
        "unknown_schema": b"\x00\x00\x00\x00\x63" + good[5:],
        "unknown_camera": encode_frames(Network.uniform(["zz"]), 0, [(10_000, 0, [])]),
        "window_outside_grid": encode_frames(net, 1, [(10_000, 0, [200])]),
        "future_timestamp": encode_frames(net, 1, [(10_000 + 3_600_000, 0, [])]),
        "past_timestamp": encode_frames(net, 1, [(10_000 - 7_200_000, 0, [])]),
    }
    assert proc.on_record(0, 0, 10_050, good, 0, wall_ms=10_100) is None
    for n, (reason, value) in enumerate(cases.items(), start=1):
        dl = proc.on_record(0, n, 10_050, value, n, wall_ms=10_100)
        assert dl is not None and dl.reason == reason, (reason, dl)
    dup = proc.on_record(0, 99, 10_060, good, 99, wall_ms=10_100)
    assert dup is not None and dup.reason == "duplicate"
    # dead letters are acked at once; the good record waits for its range to be counted
    assert proc.ackable() == []
    assert proc.unacked == 1


def test_a_camera_clock_half_a_tick_off_the_grid_sends_no_duplicate() -> None:
    # Frames 100 ms apart at t_ms = 100 k + 50 (a clock skew or a producer start time landing
    # there: `produce --simulate` campus-6 seed 3 starts so in 6 runs in 100). Rounding halves
    # to even put the frames at 2j - 1/2 and 2j + 1/2 ticks both on tick 2j: every record of
    # the camera went to the dead letters as a duplicate.
    settings = Settings()
    net = Network.uniform(["a", "b"])
    proc: StreamProcessor[int] = StreamProcessor(net, settings)
    frames = [(10_050 + 100 * i, i, [1]) for i in range(10)]
    for n in range(2):
        sent = frames[5 * n : 5 * n + 5]
        send_ms = sent[-1][0] + 300
        dead = proc.on_record(0, n, send_ms, encode_frames(net, 0, sent), n, wall_ms=send_ms)
        assert dead is None, dead
    batch = proc.due_batch(wall_ms=frames[-1][0] + 60_000)
    assert batch is not None
    assert sorted(batch.ticks.tolist()) == list(range(101, 111))
    # The offline estimator puts the frames on the same ticks (and takes each once).
    offline = TopologyEstimator(net, settings.estimator_parameters())
    assert [offline.tick_of(t) for t, _, _ in frames] == list(range(101, 111))
    for t, _, occ in frames:
        offline.add_frame(0, t, occ)


class _RecordingStore(TopologyStore):
    """The real store on the memory:// double, recording the checkpoints the processor asks
    for (a retried one once per attempt)."""

    def __init__(self, network: Network, settings: Settings) -> None:
        self.url = f"memory://{uuid.uuid4().hex}"
        super().__init__(self.url, network, settings)
        self.ranges: list[int] = []
        self.slices: list[list[int] | None] = []

    def checkpoint(
        self,
        estimator: Estimator,
        range_id: int,
        resume_offsets: Mapping[int, int],
        shards: Sequence[int] | None = None,
    ) -> CheckpointReport:
        self.ranges.append(range_id)
        self.slices.append(None if shards is None else list(shards))
        return super().checkpoint(estimator, range_id, resume_offsets, shards)


def _batches(
    settings: Settings, fail: int = 0
) -> tuple[StreamProcessor[int], list[Applied], _RecordingStore]:
    """Five minutes of campus-6 through the processor and the store; the store's first
    ``fail`` Redis commands fail as in an outage."""
    sim = Simulation.from_name("campus", 6, seed=4)
    store = _RecordingStore(sim.network, settings)
    memory_server(store.url).fail_next(fail)
    proc: StreamProcessor[int] = StreamProcessor(sim.network, settings, store)
    proc.clock.assign([0], wall_ms=0)
    applied = []
    for n, rec in enumerate(simulated_records(sim, 300, 5, send_delay_ms=300)):
        proc.on_record(0, n, rec.send_ms, rec.value, n, wall_ms=rec.send_ms)
        batch = proc.due_batch(wall_ms=rec.send_ms)
        if batch is not None:
            applied.append(proc.apply(batch, {}))
    return proc, applied, store


def test_spread_checkpoints_ack_what_every_shard_holds() -> None:
    proc, applied, store = _batches(
        Settings(processor={"checkpoint_spread_ranges": 3}, redis={"shards": 6})
    )
    assert len(applied) >= 9
    # Each batch writes a third of the shards; three in a row cover all of them.
    assert store.slices[:3] == [[0, 3], [1, 4], [2, 5]] and store.slices[3] == [0, 3]
    # Nothing is durable (acked) until every shard was written once, then each batch makes
    # the batch two back durable.
    assert [a.counted_until for a in applied[:2]] == [None, None]
    for k in range(2, len(applied)):
        assert applied[k].counted_until == proc.grid.held_from(applied[k - 2].range_id) - (
            proc.grid.tolerance
        )
    assert proc.uncheckpointed == 2
    until, _ = proc.checkpoint({})  # the stream paused: one whole checkpoint makes all durable
    assert until == proc.grid.held_from(applied[-1].range_id) - proc.grid.tolerance
    assert proc.uncheckpointed == 0 and store.slices[-1] is None


def test_a_checkpoint_retries_through_a_redis_outage() -> None:
    proc, applied, store = _batches(Settings(processor={"checkpoint_retry_seconds": 30}), fail=2)
    assert memory_server(store.url).failures == 0
    assert store.ranges == [applied[0].range_id] * 2 + [a.range_id for a in applied]
    # Nothing was lost on the way: once all is checkpointed, the store holds what was counted.
    proc.checkpoint({})
    twin = TopologyEstimator(store.network, store.settings.estimator_parameters())
    assert TopologyStore(store.url, store.network, store.settings).load_into(twin) is not None
    assert _rows(twin) == _rows(proc.estimator)


def test_a_long_redis_outage_stops_the_processor() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        _batches(Settings(processor={"checkpoint_retry_seconds": 0}), fail=10**6)
    except RedisConnectionError:
        return
    raise AssertionError("a checkpoint that cannot reach Redis must not be skipped")


def _one_frame_records(net: Network, n: int) -> list[tuple[int, bytes]]:
    """(send_ms, value) of ``n`` records of camera 0, one frame each, ticks 100, 101, ..."""
    out = []
    for i in range(n):
        t_ms = 10_000 + 100 * i
        out.append((t_ms + 300, encode_frames(net, 0, [(t_ms, i, [1 + i % 3])])))
    return out


def test_records_read_again_after_a_rebalance_are_acked_not_dead_lettered() -> None:
    # After every rebalance Faust seeks each partition back to its committed offset, even for
    # a worker that keeps it and its state: what was read but not committed comes again.
    from prometheus_client import REGISTRY

    def dead_letters() -> float:
        return REGISTRY.get_sample_value("camtopo_dead_letters_total", {"reason": "duplicate"}) or 0

    net = Network.uniform(["a", "b"])
    proc: StreamProcessor[int] = StreamProcessor(net, Settings())
    proc.clock.assign([0], wall_ms=0)
    records = _one_frame_records(net, 10)
    before = dead_letters()
    for offset, (send_ms, value) in enumerate(records):
        assert proc.on_record(0, offset, send_ms, value, offset, wall_ms=send_ms) is None
    assert proc.ackable() == [] and proc.unacked == 10
    # A seek back to the committed offset 5: offsets 5..9 again (new handles 105..109).
    for offset in range(5, 10):
        send_ms, value = records[offset]
        dead = proc.on_record(0, offset, send_ms, value, 100 + offset, wall_ms=send_ms + 50)
        assert dead is None, dead
    assert proc.redelivered == 5 and dead_letters() == before
    assert proc.next_offsets == {0: 10}
    # Their originals' frames are not counted yet: acked with them, not now (acking the copies
    # would let Kafka commit past frames Redis does not hold).
    assert proc.ackable() == [] and proc.unacked == 10
    assert proc.assembler.n_open_frames == 10
    batch = proc.due_batch(wall_ms=records[-1][0] + 60_000)
    assert batch is not None and sorted(batch.ticks.tolist()) == list(range(100, 110))
    applied = proc.apply(batch, proc.resume_offsets(batch.frontier))
    assert applied.frames == 10 and applied.rejected == 0
    acked = proc.ackable(applied.counted_until)
    assert sorted(acked) == [*range(10), *range(105, 110)] and proc.unacked == 0
    # Read again once more after their frames were counted: acked at once, nothing counted.
    for offset in range(5, 10):
        send_ms, value = records[offset]
        assert proc.on_record(0, offset, send_ms, value, 200 + offset, wall_ms=70_000) is None
    assert sorted(proc.ackable()) == list(range(205, 210))
    assert proc.redelivered == 10 and proc.assembler.n_open_frames == 0
    later = proc.due_batch(wall_ms=200_000)  # wall time closes more ranges: all empty
    assert (later is None or len(later) == 0) and dead_letters() == before
    # A new record after them is judged as ever, and a real duplicate is still dead-lettered.
    value = encode_frames(net, 0, [(250_000, 10, [1])])
    send_ms = 250_300
    assert proc.on_record(0, 10, send_ms, value, 10, wall_ms=send_ms) is None
    assert proc.unacked == 1
    dup = proc.on_record(0, 11, send_ms, value, 11, wall_ms=send_ms)
    assert dup is not None and dup.reason == "duplicate"


def test_a_dead_lettered_record_read_again_waits_for_its_dead_letter() -> None:
    net = Network.uniform(["a", "b"])
    proc: StreamProcessor[int] = StreamProcessor(net, Settings())
    garbage = b"\x00\x00\x00\x00\x01garbage"
    dead = proc.on_record(0, 0, 10_050, garbage, 0, wall_ms=10_100)
    assert dead is not None and dead.reason == "undecodable"  # acked once it is on Kafka
    # Read again while the dead letter is still on its way: not judged again, and not acked
    # either (that would let Kafka commit past a record whose dead letter may still fail).
    assert proc.on_record(0, 0, 10_050, garbage, 1, wall_ms=10_200) is None
    assert proc.ackable() == [] and proc.redelivered == 1
    assert proc.dead_letter_sent(0, 0) == [1]
    # Read again after the dead letter was taken: acked at once.
    assert proc.on_record(0, 0, 10_050, garbage, 2, wall_ms=10_300) is None
    assert proc.ackable() == [2]


def test_a_failed_dead_letter_is_sent_again_and_acked_only_once_taken() -> None:
    import asyncio

    from prometheus_client import REGISTRY

    from processors import dead_letters
    from processors.validate import DeadLetter

    class Topic:
        """The first send fails once on its way (as aiokafka's future does after its delivery
        timeout), the second is refused outright (producer not running), the third is taken."""

        def __init__(self) -> None:
            self.sent: list[dict[str, object]] = []

        async def send(self, **kwargs: object) -> asyncio.Future[None]:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.sent.append(kwargs)
            if len(self.sent) == 2:
                raise RuntimeError("producer not started")
            if len(self.sent) == 1:
                fut.set_exception(ConnectionError("broker unreachable"))
            else:
                fut.set_result(None)
            return fut

    class Handle:
        def __init__(self) -> None:
            self.acked = 0

        def ack(self) -> None:
            self.acked += 1

    async def scenario() -> tuple[Topic, Handle, Handle]:
        topic, copy = Topic(), Handle()
        event = Handle()
        event.message = SimpleNamespace(  # type: ignore[attr-defined]
            key=b"cam", value=b"bad", topic="occupancy", partition=3, offset=41
        )
        dead = DeadLetter("undecodable", "not Avro")
        await dead_letters.send_dead_letter(topic, event, dead, lambda: [copy])
        await asyncio.sleep(0.05)
        assert event.acked == 0 and copy.acked == 0 and len(topic.sent) == 1
        await asyncio.sleep(3.2)  # retries after 1 s and 2 s more
        return topic, event, copy

    before = REGISTRY.get_sample_value("camtopo_dead_letter_retries_total") or 0
    topic, event, copy = asyncio.run(scenario())
    assert len(topic.sent) == 3 and event.acked == 1 and copy.acked == 1
    assert dict(topic.sent[-1]["headers"])["source"] == b"occupancy/3/41"  # type: ignore[call-overload]
    assert REGISTRY.get_sample_value("camtopo_dead_letter_retries_total") == before + 2


def test_the_assembler_acks_records_read_again_with_their_original() -> None:
    from processors.assembler import RangePublisher

    net = Network.uniform(["a", "b"])
    pub: RangePublisher[int] = RangePublisher(net, Settings())
    pub.ranges.assign([0], wall_ms=0)
    records = _one_frame_records(net, 10)
    for offset, (send_ms, value) in enumerate(records):
        assert pub.on_record(0, offset, send_ms, value, offset, wall_ms=send_ms) == (None, None)
    for offset in range(5, 10):
        send_ms, value = records[offset]
        dead, ack = pub.on_record(0, offset, send_ms, value, 100 + offset, wall_ms=send_ms)
        assert dead is None and ack is None, dead  # acked with the original, once delivered
    assert pub.redelivered == 5 and pub.next_offsets == {0: 10}
    assert pub.ranges.unacked == 10 and pub.ranges.open_frames == 10
    (block,) = pub.ranges.due(records[-1][0] + 60_000)
    assert sorted(block.ticks.tolist()) == list(range(100, 110))
    assert sorted(pub.ranges.delivered(block)) == [*range(10), *range(105, 110)]
    # Read again after the block was delivered: acked at once.
    send_ms, value = records[7]
    assert pub.on_record(0, 7, send_ms, value, 207, wall_ms=80_000) == (None, 207)
    assert pub.redelivered == 6


def test_the_assembler_acks_a_dead_lettered_records_copies_once_its_dead_letter_is_taken() -> None:
    from processors.assembler import RangePublisher

    net = Network.uniform(["a", "b"])
    pub: RangePublisher[int] = RangePublisher(net, Settings())
    pub.ranges.assign([0, 1], wall_ms=0)
    garbage = b"\x00\x00\x00\x00\x01garbage"
    dead, ack = pub.on_record(0, 4, 10_050, garbage, 4, wall_ms=10_100)
    assert dead is not None and dead.reason == "undecodable" and ack is None
    assert pub.on_record(0, 4, 10_050, garbage, 104, wall_ms=10_200) == (None, None)
    assert pub.ranges.dead_letter_sent(0, 4) == [104]
    assert pub.on_record(0, 4, 10_050, garbage, 204, wall_ms=10_300) == (None, 204)
    # Partition 1 revoked while its dead letter was on the way: nothing of it is left to ack.
    assert pub.on_record(1, 0, 10_050, garbage, 0, wall_ms=10_100)[0] is not None
    pub.ranges.assign([0], wall_ms=10_400)
    assert pub.ranges.dead_letter_sent(1, 0) == []


def test_the_assembler_refuses_a_record_ahead_of_wall_time_and_keeps_its_clock() -> None:
    from processors.assembler import RangePublisher

    net = Network.uniform(["a", "b"])
    pub: RangePublisher[int] = RangePublisher(net, Settings())
    pub.ranges.assign([0], wall_ms=10_000)
    records = _one_frame_records(net, 3)
    send_ms, value = records[0]
    assert pub.on_record(0, 0, send_ms, value, 0, wall_ms=send_ms) == (None, None)
    ahead = encode_frames(net, 1, [(send_ms + 50_000, 0, [1])])
    dead, _ = pub.on_record(0, 1, send_ms + 50_000, ahead, 1, wall_ms=send_ms)
    assert dead is not None and dead.reason == "ahead_of_clock"
    assert pub.ranges.parts[0].clock.now(send_ms + 100) == send_ms


def test_a_dead_letter_too_large_for_kafka_is_sent_truncated_and_the_record_acked() -> None:
    # The probe: a ~1 MB record's dead letter exceeded the producer's limit, the agent crashed,
    # the record was never acked and every restart crashed on it again.
    import asyncio
    import hashlib

    from processors import dead_letters
    from processors.validate import DeadLetter

    class RecordTooLargeError(Exception):
        pass

    class Topic:
        """Refuses (as the producer does, or the broker on its future) any value over
        ``limit`` bytes."""

        def __init__(self, limit: int, on_future: bool) -> None:
            self.limit, self.on_future = limit, on_future
            self.sent: list[dict[str, object]] = []

        async def send(self, **kwargs: object) -> asyncio.Future[None]:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.sent.append(kwargs)
            if len(kwargs["value"]) > self.limit:  # type: ignore[arg-type]
                if not self.on_future:
                    raise RecordTooLargeError("message is too large")
                fut.set_exception(RecordTooLargeError("the broker refused it"))
            else:
                fut.set_result(None)
            return fut

    class Event:
        def __init__(self, value: bytes) -> None:
            self.acked = 0
            self.message = SimpleNamespace(
                key=b"cam", value=value, topic="occupancy", partition=2, offset=7
            )

        def ack(self) -> None:
            self.acked += 1

    async def scenario(size: int, limit: int, on_future: bool) -> tuple[Topic, Event]:
        topic, event = Topic(limit, on_future), Event(bytes(range(256)) * (size // 256))
        dead = DeadLetter("undecodable", "not Avro")
        await dead_letters.send_dead_letter(topic, event, dead, lambda: [])
        await asyncio.sleep(0.1)
        return topic, event

    for size, limit, on_future in ((1 << 20, 1_000_000, False), (500_000, 100_000, True)):
        topic, event = asyncio.run(scenario(size, limit, on_future))
        assert event.acked == 1, (size, limit)
        headers = dict(topic.sent[-1]["headers"])  # type: ignore[call-overload]
        value = event.message.value
        assert topic.sent[-1]["value"] == value[: dead_letters.TRUNCATED_BYTES]
        assert headers["truncated"] == b"true" and headers["reason"] == b"undecodable"
        assert headers["original_size"] == str(len(value)).encode()
        assert headers["original_sha256"] == hashlib.sha256(value).hexdigest().encode()
        assert headers["source"] == b"occupancy/2/7"


def test_a_record_sent_again_after_its_range_was_counted_is_a_duplicate_not_a_loss() -> None:
    # The probe: a replayed old record was counted as late (now: closed, a loss in the late
    # fraction) instead of dead-lettered as a duplicate.
    net = Network.uniform(["a", "b"])
    proc: StreamProcessor[int] = StreamProcessor(net, Settings())
    records = _one_frame_records(net, 10)
    for offset, (send_ms, value) in enumerate(records):
        assert proc.on_record(0, offset, send_ms, value, offset, wall_ms=send_ms) is None
    batch = proc.due_batch(wall_ms=records[-1][0] + 60_000)
    assert batch is not None and len(batch) == 10
    send_ms, value = records[3]
    dead = proc.on_record(0, 10, records[-1][0] + 61_000, value, 10, wall_ms=send_ms + 61_000)
    assert dead is not None and dead.reason == "duplicate"


def test_backlog_stops_intake_only_while_due_frames_exceed_the_buffer() -> None:
    # Records come far faster than this worker closes ranges (it never does, until told).
    settings = Settings(processor={"buffer_frames": 1000})
    sim = Simulation.from_name("campus", 12, seed=3)
    proc: StreamProcessor[int] = StreamProcessor(sim.network, settings)
    proc.clock.assign(range(PARTITIONS), wall_ms=0)
    offsets = [0] * PARTITIONS
    waited_at = None
    for n, rec in enumerate(simulated_records(sim, 600, frames_per_record=5, send_delay_ms=300)):
        part = zlib.crc32(rec.camera.encode()) % PARTITIONS
        proc.on_record(part, offsets[part], rec.send_ms, rec.value, n, wall_ms=rec.send_ms)
        offsets[part] += 1
        if proc.backlogged():
            # never for frames not yet due: only new records could move the clock to them
            clock = proc.clock.peek()
            assert clock is not None and proc.assembler.due_frames(clock) > 1000
            waited_at = n
            break
    assert waited_at is not None, "nothing was ever counted, yet intake never stopped"
    assert proc.assembler.n_open_frames > 1000
    batch = proc.due_batch(wall_ms=rec.send_ms)  # what the close loop does meanwhile
    assert batch is not None and len(batch) > 1000
    proc.apply(batch, proc.resume_offsets(batch.frontier))
    assert not proc.backlogged()


def test_counted_frames_awaiting_a_checkpoint_fill_the_buffer_and_force_a_whole_one() -> None:
    # Spread checkpoints write a tenth of the shards per batch; a worker behind counts big
    # batches, and their records would wait unacked for ten of them.
    settings = Settings(processor={"buffer_frames": 1000, "checkpoint_spread_ranges": 10})
    sim = Simulation.from_name("campus", 12, seed=3)
    store = _RecordingStore(sim.network, settings)
    proc: StreamProcessor[int] = StreamProcessor(sim.network, settings, store)
    proc.clock.assign(range(PARTITIONS), wall_ms=0)
    offsets = [0] * PARTITIONS
    whole_seen = spread_seen = False
    for n, rec in enumerate(simulated_records(sim, 1200, frames_per_record=5, send_delay_ms=300)):
        part = zlib.crc32(rec.camera.encode()) % PARTITIONS
        proc.on_record(part, offsets[part], rec.send_ms, rec.value, n, wall_ms=rec.send_ms)
        offsets[part] += 1
        if n % (10 if n < 1000 else 400):
            continue  # closing often, then rarely: big batches, as when behind
        batch = proc.due_batch(wall_ms=rec.send_ms)
        if batch is None:
            continue
        before = proc.uncheckpointed_frames + len(batch)
        proc.apply(batch, proc.resume_offsets(batch.frontier))
        if before > 500:
            assert store.slices[-1] is None  # every shard written: all of it durable
            assert proc.uncheckpointed_frames == 0
            whole_seen = True
        else:
            assert store.slices[-1] is not None
            spread_seen = True
        assert proc.uncheckpointed_frames <= 500
    assert whole_seen and spread_seen
