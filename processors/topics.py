"""Every Kafka topic the pipeline uses, created with its configured partition count before any
client reads or writes it; plus where the partitioned pipeline's assemblers resume.

A topic a broker creates on its own (auto-creation on a client's first metadata request) gets
the broker's default partition count, 1 on the local stack: the single worker then owns 1 of
the ``CAMTOPO_OCCUPANCY_PARTITIONS`` it waits for and counts nothing, without a word. So
``camtopo stack up``, every ``camtopo process`` role and ``camtopo produce`` call
:func:`ensure_topics` first; it creates what is missing and refuses a topic whose partition
count is not the configured one (:class:`TopicMismatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from camtopo.connections import kafka_config
from camtopo.settings import Settings

log = logging.getLogger(__name__)

# "occupancy": what a producer writes; "single": what `camtopo process` (one worker) reads and
# writes; "all": also the partitioned pipeline's topics (stack up, --role assemble / count).
Scope = Literal["occupancy", "single", "all"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    # The CAMTOPO_* variable the count must equal; None: any count works (low-volume topics
    # keyed by camera), so an existing topic is kept whatever its count.
    setting: str | None = None
    config: Mapping[str, str] = field(default_factory=dict)


class TopicMismatch(ValueError):
    """An existing topic has another partition count than the settings say.

    A ValueError, so the command line reports it in one line (camtopo.cli.main)."""

    def __init__(self, spec: TopicSpec, found: int) -> None:
        self.topic = spec.name
        self.found = found
        self.wanted = spec.partitions
        self.setting = spec.setting
        super().__init__(
            f"Kafka topic {spec.name!r} has {found} partition(s), but {spec.setting} is "
            f"{spec.partitions}, which the pipeline relies on (a worker would wait for "
            f"partitions that do not exist, or leave some unread). Either recreate the topic "
            f"with {spec.partitions} partitions (delete it, losing its records; `camtopo stack "
            f"up` or the next `camtopo process` creates it again) or set "
            f"{spec.setting}={found} for every camtopo command (docs/operations.md, "
            f"'Without Docker')"
        )


class TopicsUnavailable(ConnectionError):
    """Kafka did not answer, or a topic could not be created or got no leader in time.

    A ConnectionError (an OSError), so the command line reports it in one line."""


def pipeline_topics(settings: Settings, scope: Scope = "all") -> list[TopicSpec]:
    """The topics ``scope`` uses, with the partition counts the settings give them."""
    occupancy = TopicSpec(
        settings.kafka.occupancy_topic,
        settings.kafka.occupancy_partitions,
        "CAMTOPO_OCCUPANCY_PARTITIONS",
    )
    if scope == "occupancy":
        return [occupancy]
    single = [
        occupancy,
        TopicSpec(settings.kafka.dead_letter_topic, 1),
        TopicSpec(settings.kafka.topology_changes_topic, 1),
    ]
    if scope == "single":
        return single
    retention_ms = int(settings.partitioned.ranges_retention_hours * 3_600_000)
    return [
        *single,
        # One partition per occupancy partition: an assembler publishes partition p's blocks
        # to partition p (processors/assembler.py).
        TopicSpec(
            settings.partitioned.ranges_topic,
            settings.kafka.occupancy_partitions,
            "CAMTOPO_OCCUPANCY_PARTITIONS",
            {"retention.ms": str(retention_ms)},
        ),
        # One (empty) partition per Redis shard: its assignment says who counts which rows.
        TopicSpec(
            settings.partitioned.counter_shards_topic, settings.redis.shards, "CAMTOPO_REDIS_SHARDS"
        ),
    ]


def check_partitions(specs: Sequence[TopicSpec], found: Mapping[str, int]) -> None:
    """Raise TopicMismatch for the first topic of ``specs`` that exists (``found``: topic ->
    partition count) with a count other than its setting's."""
    for spec in specs:
        have = found.get(spec.name)
        if spec.setting is not None and have is not None and have != spec.partitions:
            raise TopicMismatch(spec, have)


def _ready_counts(topics: Mapping[str, Any]) -> dict[str, int]:
    """topic -> partitions, of the topics the metadata describes without error (a topic still
    being created can show no partitions yet, which is not a count to compare)."""
    return {
        name: len(meta.partitions)
        for name, meta in topics.items()
        if meta.error is None and meta.partitions
    }


def ensure_topics(
    settings: Settings, scope: Scope = "all", timeout: float = 30.0
) -> dict[str, int]:
    """Create the topics of ``scope`` that are missing, with the configured partition counts
    (replication: the broker's default); once every partition has a leader, return topic ->
    partition count.

    Raises TopicMismatch, before creating anything, if one exists with another count, and
    TopicsUnavailable if Kafka does not answer or the topics get no leader within ``timeout``.
    Safe to call from many workers at once: a topic another one created first is checked.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    specs = pipeline_topics(settings, scope)
    bootstrap = settings.kafka.bootstrap
    # Failures are raised below in one line; librdkafka's connection logs would only repeat them.
    admin = AdminClient(kafka_config(settings, "admin", log_level=0))
    deadline = time.monotonic() + timeout

    def metadata() -> dict[str, Any]:
        try:
            # Every topic, not a named one: a request naming a missing topic may make a broker
            # with auto-creation on create it, with its default count.
            return admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
        except KafkaException as exc:
            err = exc.args[0]
            detail = err.str() if isinstance(err, KafkaError) else str(exc)
            raise TopicsUnavailable(
                f"Kafka at {bootstrap} did not answer within {timeout:.0f} s ({detail}); "
                "is it running (`camtopo stack up`)?"
            ) from None

    counts = _ready_counts(metadata())
    check_partitions(specs, counts)
    missing = [s for s in specs if s.name not in counts]
    while missing:
        new = [
            NewTopic(s.name, s.partitions, replication_factor=-1, config=dict(s.config))
            for s in missing
        ]
        futures = admin.create_topics(new, operation_timeout=timeout)
        retry = []
        for spec in missing:
            try:
                futures[spec.name].result(timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another worker was first; its count is checked below
                # librdkafka swaps its bootstrap connection for the learned broker after the
                # first metadata reply, failing a request in flight: try again.
                transient = (KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT)
                if not (err.retriable() or err.code() in transient):
                    raise TopicsUnavailable(
                        f"cannot create topic {spec.name!r} on {bootstrap}: {err.str()}"
                    ) from None
                if time.monotonic() > deadline:
                    raise TopicsUnavailable(
                        f"creating topic {spec.name!r} on {bootstrap}: still failing after "
                        f"{timeout:.0f} s: {err.str()}"
                    ) from None
                retry.append(spec)
        missing = retry
        if missing:
            time.sleep(0.2)
    # A new topic's partitions need a leader before anyone can read or write them.
    while True:
        topics = metadata()
        counts = _ready_counts(topics)
        check_partitions(specs, counts)  # one another worker created meanwhile, differently
        waiting = [
            s.name
            for s in specs
            if s.name not in counts or any(p.leader < 0 for p in topics[s.name].partitions.values())
        ]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise TopicsUnavailable(
                f"topics {waiting} on {bootstrap} have no leader after {timeout:.0f} s"
            )
        time.sleep(0.2)
    ready = {s.name: counts[s.name] for s in specs}
    log.info("topics ready: %s", ", ".join(f"{name} ({n})" for name, n in ready.items()))
    return ready


def read_published(settings: Settings, timeout: float = 10.0) -> dict[int, int]:
    """partition -> range id of the last block on the ranges topic (where assemblers resume)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        kafka_config(
            settings,
            "reader",
            **{
                "group.id": f"{settings.partitioned.assembler_group}-resume",
                "enable.auto.commit": False,
            },
        )
    )
    out: dict[int, int] = {}
    try:
        for p in range(settings.kafka.occupancy_partitions):
            tp = TopicPartition(settings.partitioned.ranges_topic, p)
            for attempt in range(20):  # a just-created topic may still be electing leaders
                try:
                    low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                    break
                except KafkaException:
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
            if high <= low:
                continue
            consumer.assign([TopicPartition(settings.partitioned.ranges_topic, p, high - 1)])
            msg = consumer.poll(timeout)
            if msg is not None and not msg.error() and (key := msg.key()) is not None:
                out[p] = int(key)
    finally:
        consumer.close()
    return out
