"""Which partitions may count as idle: records waiting, or a broker that stopped answering."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import REGISTRY

from processors.consumer_watch import ConsumerWatch, PartitionView


def _views(polled: float, high: int = 100, position: int = 100, committed: int = 60) -> list:
    return [PartitionView(p, high, polled, position, committed) for p in (0, 1)]


def test_a_partition_the_broker_stopped_answering_is_behind_until_the_hold_runs_out() -> None:
    watch = ConsumerWatch(stale_ms=3_000, hold_ms=60_000)
    assert watch.judge(_views(polled=10_000), wall_ms=11_000) == ([], 80)  # answered: idle
    # The broker is down from 11 s: no fetch answer since 10 s.
    assert watch.judge(_views(polled=10_000), wall_ms=14_000)[0] == [0, 1]
    assert REGISTRY.get_sample_value("camtopo_unconfirmed_partitions") == 2
    assert watch.judge(_views(polled=10_000), wall_ms=70_000)[0] == [0, 1]
    # Past the hold the producers have dropped what they buffered: wall time may close again.
    assert watch.judge(_views(polled=10_000), wall_ms=75_000)[0] == []
    # It answers again: the next outage gets its own hold.
    assert watch.judge(_views(polled=80_000), wall_ms=80_500)[0] == []
    assert watch.judge(_views(polled=80_000), wall_ms=84_000)[0] == [0, 1]


def test_records_waiting_or_no_fetch_yet_hold_the_partition_and_lag_is_the_committed_one() -> None:
    watch = ConsumerWatch(stale_ms=3_000, hold_ms=60_000)
    views = [
        PartitionView(0, None, None, None, None),  # just assigned: no fetch answer yet
        PartitionView(1, 500, 1_000, 400, 300),  # 100 records fetched, not taken
        PartitionView(2, 500, 1_000, 500, 120),  # all taken; committed far behind (a stuck
        # record keeps the commit there): the lag an operator sees is the committed one
    ]
    behind, lag = watch.judge(views, wall_ms=1_500)
    assert behind == [0, 1] and lag == 200 + 380
    assert REGISTRY.get_sample_value("camtopo_consumer_lag_records") == 580


def test_one_partition_the_broker_stopped_answering_holds_every_partition_for_the_outage() -> None:
    # A lost broker replicates every partition: the ones whose leader survives still answer,
    # with nothing (their high watermark waits for the dead replica), and must not look idle.
    watch = ConsumerWatch(stale_ms=3_000, hold_ms=60_000)

    def views(wall_ms: float) -> list[PartitionView]:
        return [
            PartitionView(0, 100, 10_000, 100, 100),  # its leader died at 10 s
            PartitionView(1, 100, wall_ms - 500, 100, 100),  # answered, all taken
        ]

    assert watch.judge(views(11_000), wall_ms=11_000)[0] == []
    assert watch.judge(views(14_000), wall_ms=14_000)[0] == [0, 1]
    # Past the hold neither is held: the producers have given up their records.
    assert watch.judge(views(75_000), wall_ms=75_000)[0] == []


def test_only_the_input_topics_partitions_are_judged() -> None:
    # Faust also assigns its own one-replica __assignor-__leader partition 0; with its broker
    # lost it never answers, and must not hold the input's partition 0 (same number).
    class TP(NamedTuple):
        topic: str
        partition: int

    class NotStarted:  # a Faust app whose consumer thread is not up: nothing is known
        class consumer:
            _thread = None

    watch = ConsumerWatch(stale_ms=3_000, hold_ms=60_000)
    assignment = [TP("occupancy", 1), TP("proc-__assignor-__leader", 0)]
    assert watch.behind(NotStarted(), assignment, "occupancy", {}, wall_ms=1_000) == [1]
