"""The streaming tests' stack: the session's real Kafka and Redis, fresh topics and a Redis
database per test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from camtopo.operations.localstack import KafkaCluster, RedisServer, free_port
from camtopo.settings import Settings

# A Redis database per test (test_operations.py keeps 7 for itself), emptied before use.
_db_counter = iter([db for db in range(1, 16) if db != 7])


@dataclass
class Stack:
    kafka: KafkaCluster
    redis: RedisServer
    topic: str
    dead_letters: str
    redis_url: str
    settings: Settings
    network_path: Path


@pytest.fixture
def stack(kafka: KafkaCluster, redis_server: RedisServer, kafka_topic, tmp_path: Path) -> Stack:
    topic = kafka_topic(partitions=4)
    dead = kafka_topic(partitions=1, prefix="dead")
    changes = kafka_topic(partitions=2, prefix="changes")
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_db_counter)}"
    redis.Redis.from_url(url).flushdb()
    settings = Settings(
        kafka={
            "bootstrap": kafka.bootstrap,
            "occupancy_topic": topic,
            "dead_letter_topic": dead,
            "topology_changes_topic": changes,
            "occupancy_partitions": 4,
        },
        redis={"url": url, "shards": 8},
        processor={
            "group": f"proc-{uuid.uuid4().hex[:8]}",
            "idle_partition_seconds": 2.0,
            "metrics_port": free_port(),
        },
    )
    return Stack(kafka, redis_server, topic, dead, url, settings, tmp_path / "network.json")
