"""Shared fixtures: the REAL Kafka broker, Redis server and schema registry, started once per
session on free ports.

Fixtures are lazy, so a run that selects no service test starts nothing. A machine where
``make setup`` (infra/setup.sh) has not run fails those tests with that instruction instead of
skipping them: a silently skipped integration suite would look green.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from camtopo.operations.localstack import (
    KafkaCluster,
    RedisServer,
    SchemaRegistry,
    SetupMissing,
    StackError,
)


def _start_or_fail(service: KafkaCluster | RedisServer | SchemaRegistry, what: str) -> None:
    try:
        service.start()
    except SetupMissing as exc:
        problem = f"{what} is not set up: {exc}"
    except StackError as exc:
        problem = f"{what} did not start: {exc}"
    else:
        return
    # Outside the except block, so the report is the message alone, not a chained traceback.
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A single-node KRaft Kafka on a free loopback port; ``.bootstrap`` for clients."""
    cluster = KafkaCluster(data_dir=tmp_path_factory.mktemp("kafka"))
    _start_or_fail(cluster, "the Kafka broker")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """redis-server (append-only file on) on a free port: ``.url``, ``.restart()``, ``.kill()``."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    _start_or_fail(server, "redis-server")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistry]:
    """Apicurio Registry (in memory) on a free port; ``.url`` is its Confluent-compatible API,
    for ``CAMTOPO_SCHEMA_REGISTRY_URL`` and confluent-kafka's ``SchemaRegistryClient``."""
    registry = SchemaRegistry(data_dir=tmp_path_factory.mktemp("registry"))
    _start_or_fail(registry, "the schema registry")
    yield registry
    registry.stop()


TopicFactory = Callable[..., str]


@pytest.fixture
def kafka_topic(kafka: KafkaCluster, request: pytest.FixtureRequest) -> TopicFactory:
    """Factory: ``kafka_topic(partitions=3, replication=1, prefix=...)`` creates a fresh topic.

    Each call makes a uniquely named topic (tests never see each other's messages) and returns
    its name once the broker's metadata shows every partition with a leader.
    """

    def create(partitions: int = 3, replication: int = 1, prefix: str | None = None) -> str:
        base = prefix or request.node.name
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in base)[:180]
        return kafka.create_topic(f"{safe}-{uuid.uuid4().hex[:8]}", partitions, replication)

    return create
