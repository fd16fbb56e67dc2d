"""Consumer-group lag: committed offsets against high watermarks, as Prometheus metrics.

``camtopo lag-exporter`` serves, on ``lag_exporter_port`` (9308, kafka-exporter's port), the
series of the common kafka-exporter convention, read from Kafka at every scrape (so a value is
never older than the scrape itself):

* ``kafka_consumergroup_lag{consumergroup,topic,partition}`` = high watermark - committed offset
* ``kafka_consumergroup_lag_sum{consumergroup,topic}``
* ``kafka_consumergroup_current_offset{consumergroup,topic,partition}`` (the committed offset)
* ``kafka_topic_partition_current_offset{topic,partition}`` (the high watermark)
* ``camtopo_lag_exporter_kafka_up`` 1/0 and ``camtopo_lag_exporter_scrape_seconds``

A partition the group never committed has no lag series (as kafka-exporter): its consumer has
not started, and "lag" would depend on its ``auto.offset.reset``. The exporter is its own
process, not part of the query service, so it needs no Redis and its Kafka timeouts never
delay a topology query.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from camtopo.connections import kafka_config
from camtopo.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    high: int

    @property
    def lag(self) -> int:
        # A committed offset past the watermark (topic deleted and re-created) is not negative lag.
        return max(0, self.high - self.committed)


class LagReader:
    """Reads committed offsets and high watermarks with confluent-kafka's AdminClient."""

    def __init__(
        self, settings: Settings, groups: Iterable[str] = (), timeout_s: float = 3.0
    ) -> None:
        from confluent_kafka.admin import AdminClient

        self.groups = [g for g in groups if g]
        self.timeout_s = timeout_s
        self.admin = AdminClient(kafka_config(settings, "lag-exporter", log_level=0))

    def _group_ids(self) -> list[str]:
        if self.groups:
            return self.groups
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        if listing.errors:
            # Kafka unreachable comes back as an empty listing plus errors, not an exception;
            # treating it as "no groups" would report a healthy, lag-free cluster.
            from confluent_kafka import KafkaException

            raise KafkaException(listing.errors[0])
        return sorted(g.group_id for g in listing.valid)

    def read(self) -> list[PartitionLag]:
        """Lag of every committed (group, topic, partition); raises KafkaException on failure."""
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka.admin import OffsetSpec

        committed: dict[tuple[str, str, int], int] = {}
        for group in self._group_ids():
            # One request per group: librdkafka accepts a single group per offsets request.
            futures = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
            )
            result = futures[group].result()
            for tp in result.topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    committed[(group, tp.topic, tp.partition)] = tp.offset
        if not committed:
            return []
        from confluent_kafka import TopicPartition

        wanted = {(t, p) for _, t, p in committed}
        # OffsetSpec.latest() is unannotated in confluent-kafka; its return is typed here.
        latest: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        ends = self.admin.list_offsets(
            {TopicPartition(t, p): latest for t, p in wanted}, request_timeout=self.timeout_s
        )
        high = {(tp.topic, tp.partition): f.result().offset for tp, f in ends.items()}
        return [
            PartitionLag(g, t, p, off, high[(t, p)]) for (g, t, p), off in sorted(committed.items())
        ]


class LagCollector(Collector):
    """Prometheus collector: asks Kafka on every scrape; Kafka down = ``kafka_up 0``, no crash."""

    def __init__(self, reader: LagReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        labels = ["consumergroup", "topic", "partition"]
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "Current approximate lag", labels=labels)
        lag_sum = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Current approximate lag of a group on a topic",
            labels=["consumergroup", "topic"],
        )
        current = GaugeMetricFamily(
            "kafka_consumergroup_current_offset", "Committed offset", labels=labels
        )
        high = GaugeMetricFamily(
            "kafka_topic_partition_current_offset",
            "High watermark of a partition",
            labels=["topic", "partition"],
        )
        up = 1.0
        try:
            rows = self.reader.read()
        except Exception as exc:  # any Kafka failure: report it as a series, keep serving
            print(f"camtopo lag-exporter: reading offsets failed: {exc}", flush=True)
            rows, up = [], 0.0
        sums: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, int]] = set()
        for row in rows:
            key = [row.group, row.topic, str(row.partition)]
            lag.add_metric(key, row.lag)
            current.add_metric(key, row.committed)
            sums[(row.group, row.topic)] = sums.get((row.group, row.topic), 0) + row.lag
            if (row.topic, row.partition) not in seen:
                seen.add((row.topic, row.partition))
                high.add_metric([row.topic, str(row.partition)], row.high)
        for (group, topic), total in sorted(sums.items()):
            lag_sum.add_metric([group, topic], total)
        yield from (lag, lag_sum, current, high)
        yield GaugeMetricFamily(
            "camtopo_lag_exporter_kafka_up", "1 if the last offsets read from Kafka worked", up
        )
        yield GaugeMetricFamily(
            "camtopo_lag_exporter_scrape_seconds",
            "Time to read offsets from Kafka",
            time.perf_counter() - started,
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lag-exporter",
        help="Prometheus exporter of Kafka consumer-group lag (kafka_consumergroup_lag)",
        description=(
            "Serve kafka_consumergroup_lag{consumergroup,topic,partition} and "
            "kafka_consumergroup_lag_sum on /metrics, read from Kafka at every scrape."
        ),
    )
    p.add_argument("--port", type=int, default=None, help="default CAMTOPO_LAG_EXPORTER_PORT")
    p.add_argument("--host", default=None, help="default CAMTOPO_HTTP_HOST")
    p.add_argument("--bootstrap", default=None, help="default CAMTOPO_KAFKA_BOOTSTRAP")
    p.add_argument(
        "--group",
        action="append",
        default=None,
        help="consumer group to report (repeatable; default CAMTOPO_LAG_EXPORTER_GROUPS, "
        "empty = every group)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import threading

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.process_collector import ProcessCollector

    from camtopo.settings import get_settings

    s = get_settings()
    if args.bootstrap:
        s = s.replace(kafka={"bootstrap": args.bootstrap})
    groups: list[Any] = args.group or [g.strip() for g in s.lag_exporter.groups.split(",")]
    reader = LagReader(s, groups, s.lag_exporter.timeout_s)
    registry = CollectorRegistry()
    registry.register(LagCollector(reader))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes like every component
    host = args.host or s.service.host
    port = s.lag_exporter.port if args.port is None else args.port
    server, _thread = start_http_server(port, addr=host, registry=registry)
    print(
        f"camtopo lag-exporter: http://{host}:{server.server_port}/metrics, Kafka "
        f"{s.kafka.bootstrap}, groups {', '.join(reader.groups) or 'all'}",
        flush=True,
    )
    try:
        threading.Event().wait()  # until SIGINT/SIGTERM
    finally:
        server.shutdown()
    return 0
