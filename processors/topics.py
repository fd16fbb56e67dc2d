"""Topics the partitioned pipeline creates for itself (the occupancy topic is the producers')."""

from __future__ import annotations

import logging
import time

from camtopo.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the ranges topic (one partition per occupancy partition, time-bounded) and the
    counting workers' shard topic (one partition per Redis shard) if they are missing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    retention_ms = int(settings.ranges_retention_hours * 3_600_000)
    wanted = [
        NewTopic(
            settings.ranges_topic,
            settings.occupancy_partitions,
            1,
            config={"retention.ms": str(retention_ms)},
        ),
        NewTopic(settings.counter_shards_topic, settings.redis_shards, 1),
    ]
    have = admin.list_topics(timeout=timeout).topics
    missing = [t for t in wanted if t.topic not in have]
    futures = admin.create_topics(missing, operation_timeout=timeout) if missing else {}
    for fut in futures.values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # another worker was first
                raise
    # A new topic's partitions need a leader before anyone can read or write them.
    deadline = time.monotonic() + timeout
    while True:
        have = admin.list_topics(timeout=timeout).topics
        problems = []
        for topic, parts in (
            (settings.ranges_topic, settings.occupancy_partitions),
            (settings.counter_shards_topic, settings.redis_shards),
        ):
            meta = have.get(topic)
            got = len(meta.partitions) if meta is not None else 0
            if meta is not None and got != parts:
                raise RuntimeError(f"topic {topic} has {got} partitions, the settings say {parts}")
            if meta is None or any(p.leader < 0 for p in meta.partitions.values()):
                problems.append(topic)
        if not problems:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {problems} have no leader after {timeout} s")
        time.sleep(0.2)
    log.info("topics %s and %s ready", settings.ranges_topic, settings.counter_shards_topic)


def read_published(settings: Settings, timeout: float = 10.0) -> dict[int, int]:
    """partition -> range id of the last block on the ranges topic (where assemblers resume)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.assembler_group}-resume",
            "enable.auto.commit": False,
        }
    )
    out: dict[int, int] = {}
    try:
        for p in range(settings.occupancy_partitions):
            tp = TopicPartition(settings.ranges_topic, p)
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
            consumer.assign([TopicPartition(settings.ranges_topic, p, high - 1)])
            msg = consumer.poll(timeout)
            if msg is not None and not msg.error() and msg.key() is not None:
                out[p] = int(msg.key())
    finally:
        consumer.close()
    return out
