"""The local real-services stack: a real Kafka broker and a real Redis, as the pipeline uses them.

Proves the Kafka release chosen in infra/kafka/pom.xml works with both clients the project
uses (confluent-kafka for producers, aiokafka under faust for processors), and that Redis
keeps acknowledged writes across a crash thanks to the append-only file.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, Message, Producer

from camtopo.operations.localstack import KafkaCluster, RedisServer
from tests.kafka_reading import consume_all

TopicFactory = Any


def _produce(
    bootstrap: str, topic: str, records: list[tuple[str, dict[str, Any]]], **conf: Any
) -> list[tuple[int, int, str]]:
    """Produce keyed JSON records idempotently; return (partition, offset, key) per delivery."""
    delivered: list[tuple[int, int, str]] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.key().decode()))

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **conf}
    )
    for key, value in records:
        producer.produce(topic, key=key, value=json.dumps(value), on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0, f"{left} messages still queued after 30 s"
    assert errors == [], f"delivery errors: {errors[:5]}"
    return delivered


def _records(n: int, cameras: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"cam-{i % cameras}", {"camera": i % cameras, "seq": i}) for i in range(n)]


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_confluent_idempotent_producer_round_trip_over_three_partitions(
    kafka: KafkaCluster, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic(partitions=3)
    records = _records(600, cameras=12)

    delivered = _produce(kafka.bootstrap, topic, records)

    assert len(delivered) == len(records)
    partition_of_key: dict[str, set[int]] = defaultdict(set)
    offsets: dict[int, list[int]] = defaultdict(list)
    for partition, offset, key in delivered:
        partition_of_key[key].add(partition)
        offsets[partition].append(offset)
    # Keyed records land on one partition per key, and 12 keys spread over all three.
    assert all(len(parts) == 1 for parts in partition_of_key.values())
    assert set(offsets) == {0, 1, 2}
    # Idempotence: no duplicate or skipped offset in any partition.
    for partition, offs in offsets.items():
        assert sorted(offs) == list(range(len(offs))), f"gap or duplicate in partition {partition}"

    received = consume_all(kafka.bootstrap, topic, expected=len(records))

    values = [json.loads(m.value()) for m in received]
    assert sorted(v["seq"] for v in values) == list(range(len(records)))
    assert {(m.partition(), m.offset(), m.key().decode()) for m in received} == set(delivered)
    # Order is kept per key (each key lives in one partition).
    seen_per_key: dict[str, list[int]] = defaultdict(list)
    for m, v in zip(received, values, strict=True):
        seen_per_key[m.key().decode()].append(v["seq"])
    assert all(seqs == sorted(seqs) for seqs in seen_per_key.values())


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_aiokafka_producer_and_consumer_round_trip(
    kafka: KafkaCluster, kafka_topic: TopicFactory
) -> None:
    """faust's client (aiokafka) against this broker release: produce, consume, commit."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = kafka_topic(partitions=3)
    sent = [(f"cam-{i % 7}".encode(), f"occupancy-{i}".encode()) for i in range(90)]

    async def round_trip() -> tuple[list[tuple[bytes, bytes]], dict[int, int], dict[int, int]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for key, value in sent:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=f"test-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            deadline = time.monotonic() + 60
            while len(got) < len(sent) and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    got += [(m.key, m.value) for m in messages]
            await consumer.commit()
            parts = [TopicPartition(topic, p) for p in range(3)]
            ends = await consumer.end_offsets(parts)
            committed = {tp.partition: await consumer.committed(tp) for tp in parts}
        finally:
            await consumer.stop()
        return got, committed, {tp.partition: off for tp, off in ends.items()}

    got, committed, ends = asyncio.run(round_trip())

    assert sorted(got) == sorted(sent)
    assert sum(ends.values()) == len(sent)  # idempotent producer: nothing written twice
    assert committed == ends


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_aiokafka_reads_what_confluent_produced(
    kafka: KafkaCluster, kafka_topic: TopicFactory
) -> None:
    """Producers (confluent-kafka) and processors (aiokafka) agree on keys, values, partitions.

    gzip, because aiokafka reads lz4/snappy/zstd only with the optional ``cramjam`` package.
    """
    from aiokafka import AIOKafkaConsumer

    topic = kafka_topic(partitions=3)
    records = _records(120, cameras=5)
    delivered = _produce(kafka.bootstrap, topic, records, **{"compression.type": "gzip"})

    async def read_all() -> list[tuple[int, int, str, dict[str, Any]]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=f"test-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        out: list[tuple[int, int, str, dict[str, Any]]] = []
        try:
            deadline = time.monotonic() + 60
            while len(out) < len(records) and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    out += [
                        (m.partition, m.offset, m.key.decode(), json.loads(m.value))
                        for m in messages
                    ]
        finally:
            await consumer.stop()
        return out

    read = asyncio.run(read_all())

    assert {(p, o, k) for p, o, k, _ in read} == set(delivered)
    assert sorted(v["seq"] for *_, v in read) == [v["seq"] for _, v in records]


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_redis_keeps_acknowledged_writes_across_sigkill(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("rdbcompression") == {"rdbcompression": "no"}
    rewrite = "auto-aof-rewrite-percentage"
    assert client.config_get(rewrite) == {rewrite: "400"}  # rarer rewrites (docs/infra.md)
    prefix = f"test:{uuid.uuid4().hex}"
    counts = {f"w{i}": i * 3 + 1 for i in range(50)}
    client.hset(f"{prefix}:counts", mapping=counts)
    for _ in range(25):
        client.incrby(f"{prefix}:opportunities", 4)
    client.rpush(f"{prefix}:ranges", *[str(r) for r in range(10)])
    client.close()
    old_pid = redis_server.pid()

    redis_server.kill()

    assert not redis_server.is_running()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_server.url, socket_connect_timeout=1).ping()

    redis_server.start()

    assert redis_server.pid() not in (None, old_pid)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert {k: int(v) for k, v in client.hgetall(f"{prefix}:counts").items()} == counts
    assert int(client.get(f"{prefix}:opportunities")) == 25 * 4
    assert client.lrange(f"{prefix}:ranges", 0, -1) == [str(r) for r in range(10)]

    # A clean restart (SIGTERM, final AOF fsync) keeps it too, and the server takes writes after.
    client.incrby(f"{prefix}:opportunities", 1)
    client.close()
    redis_server.restart()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert int(client.get(f"{prefix}:opportunities")) == 25 * 4 + 1
    client.close()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kafka_keeps_acknowledged_messages_across_sigkill(
    kafka: KafkaCluster, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic(partitions=3)
    records = _records(200, cameras=6)
    delivered = _produce(kafka.bootstrap, topic, records, acks="all")

    kafka.kill()
    assert not kafka.is_running()
    kafka.start()

    received = consume_all(kafka.bootstrap, topic, expected=len(records))
    assert {(m.partition(), m.offset(), m.key().decode()) for m in received} == set(delivered)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_broker_cluster_keeps_serving_with_one_broker_down(tmp_path: Any) -> None:
    from confluent_kafka.admin import AdminClient

    cluster = KafkaCluster(brokers=3, data_dir=tmp_path / "kafka3")
    cluster.start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        # Under load a broker can be briefly fenced after start-up (short session timeout):
        # ask the metadata again until all three are live, within a bound.
        deadline = time.monotonic() + 60
        while sorted(admin.list_topics(timeout=10).brokers) != [1, 2, 3]:
            assert time.monotonic() < deadline, "three brokers never all live in the metadata"
            time.sleep(1)
        topic = cluster.create_topic(f"replicated-{uuid.uuid4().hex[:8]}", 3, replication=3)
        before = _produce(cluster.bootstrap, topic, _records(60, cameras=6), acks="all")
        # A first group read creates __consumer_offsets (replicated 3x) while all are up.
        assert len(consume_all(cluster.bootstrap, topic, expected=60)) == 60

        cluster.kill(node=2)
        assert not cluster.is_running(node=2) and cluster.is_running(node=1)
        # min.insync.replicas=2: acks=all writes still succeed with two of three replicas,
        # and a new group still finds a coordinator and reads everything.
        after = _produce(cluster.bootstrap, topic, _records(60, cameras=6), acks="all")
        received = consume_all(cluster.bootstrap, topic, expected=120)

        assert {(m.partition(), m.offset()) for m in received} == {
            (p, o) for p, o, _ in before + after
        }
        cluster.start(node=2)
        assert cluster.is_running()
    finally:
        cluster.stop()
