"""docs/operations.md's recipe without Docker, command by command as an operator types it.

`camtopo stack up` (on free ports, its own data dir) -> `camtopo simulate` -> `camtopo process`
-> `camtopo serve` -> `camtopo produce`, each the real CLI in a subprocess, with no topic created
by hand: frames must be counted, on an occupancy topic of CAMTOPO_OCCUPANCY_PARTITIONS (8)
partitions. Before processors/topics.py created every topic, the broker auto-created
`occupancy` with one partition and the processor, owning 1 of the 8 it waits for, counted
nothing without a word. And a topic with another count is refused, in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from camtopo.operations.localstack import (
    CONTROLLER_PORT_OFFSET,
    KafkaCluster,
    free_port,
    free_ports,
)
from tests.integration.test_operations import Services, _get, _wait

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
CAMERAS = 6
SEED = 1
PRODUCE_SECONDS = 15


def _camtopo(*argv: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    """Run one CLI command to its end; its exit code and output (stdout then stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "camtopo.cli", *argv],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


@dataclass
class Recipe:
    env: dict[str, str]
    bootstrap: str
    network: Path
    tmp: Path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recipe]:
    """Steps 1 and 2 of the recipe: `camtopo stack up`, `camtopo simulate`; stack down after."""
    tmp = tmp_path_factory.mktemp("recipe")
    # The docs' defaults, not whatever CAMTOPO_* this test run has (CAMTOPO_CACHE: the jars).
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
    if "CAMTOPO_CACHE" in os.environ:
        env["CAMTOPO_CACHE"] = os.environ["CAMTOPO_CACHE"]
    # Free ports instead of 9092 / 6379 / 8080 / 9108; kafka.sh puts the controller listener
    # CONTROLLER_PORT_OFFSET above the broker's port, so that one must be free too.
    kafka_port = free_ports(CONTROLLER_PORT_OFFSET + 1)
    bootstrap = f"127.0.0.1:{kafka_port}"
    env.update(
        CAMTOPO_KAFKA_BOOTSTRAP=bootstrap,
        CAMTOPO_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        CAMTOPO_HTTP_PORT=str(free_port()),
        CAMTOPO_PROCESSOR_METRICS_PORT=str(free_port()),
    )
    stack = ["--data-dir", str(tmp / "stack")]
    up = _camtopo("stack", "up", *stack, env=env, cwd=tmp, timeout=180)
    try:
        if not up.startswith("exit 0"):
            pytest.fail(f"camtopo stack up failed:\n{up}", pytrace=False)
        sim = tmp / "sim"
        out = _camtopo(
            "simulate", "--scenario", "campus", "--cameras", str(CAMERAS), "--duration", "1",
            "--seed", str(SEED), "--out", str(sim), env=env, cwd=tmp,
        )  # fmt: skip
        assert out.startswith("exit 0"), out
        yield Recipe(env, bootstrap, sim / "network.json", tmp)
    finally:
        down = _camtopo("stack", "down", *stack, env=env, cwd=tmp)
        assert down.startswith("exit 0"), down


def _metric(url: str, name: str) -> float:
    """Sum of a Prometheus series' samples on ``url`` (0 if absent)."""
    text = _get(url).decode()
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def _partitions(bootstrap: str) -> dict[str, int]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {name: len(meta.partitions) for name, meta in topics.items()}


def test_the_recipe_counts_frames_on_an_occupancy_topic_of_eight_partitions(
    recipe: Recipe, tmp_path: Path
) -> None:
    env, network = recipe.env, str(recipe.network)
    metrics = f"http://127.0.0.1:{env['CAMTOPO_PROCESSOR_METRICS_PORT']}/metrics"
    health = f"http://127.0.0.1:{env['CAMTOPO_HTTP_PORT']}/health"
    services = Services(tmp_path, env)
    try:
        services.start("processor", "process", "--network", network)
        services.start("query", "serve", "--network", network)
        servers = list(services.procs)  # the producer, below, ends on its own
        _wait("the processor's /metrics", lambda: _get(metrics), 90, servers)
        services.start(
            "producer", "produce", "--simulate", "--scenario", "campus",
            "--cameras", str(CAMERAS), "--seed", str(SEED),
            "--duration", str(PRODUCE_SECONDS), "--no-progress",
        )  # fmt: skip

        # A range is counted Tr + Td = 7 s after its end; with 1 of 8 partitions never.
        counted = _wait(
            "frames counted",
            lambda: _metric(metrics, "camtopo_frames_counted_total"),
            60,
            servers,
        )
        assert _metric(metrics, "camtopo_owned_partitions") == 8
        # The query service sees the checkpointed counts.
        doc = _wait(
            "a checkpoint in the query service's /health",
            lambda: (d := json.loads(_get(health)))["status"] == "ok" and d,
            60,
            servers,
        )
        assert doc["cameras"] == CAMERAS and doc["checkpoint"]["range_id"] is not None, doc

        producer, log = services.procs[-1]
        assert producer.wait(PRODUCE_SECONDS + 60) == 0, log.read_text()[-3000:]
        assert "delivery failures 0" in log.read_text()
    finally:
        services.stop()

    partitions = _partitions(recipe.bootstrap)
    assert partitions["occupancy"] == 8
    # stack up made the partitioned pipeline's topics too, and the small ones.
    assert partitions["occupancy-ranges"] == 8 and partitions["camtopo-count-shards"] == 64
    assert partitions["occupancy-dead-letter"] == partitions["topology-changes"] == 1
    print(f"frames counted {counted:.0f}; topics {partitions}")


@pytest.mark.parametrize(
    "argv",
    [
        ["process"],
        ["process", "--role", "assemble"],
        ["produce", "--simulate", "--cameras", "2", "--duration", "1", "--no-progress"],
    ],
    ids=["process", "assemble", "produce"],
)
def test_a_topic_with_another_partition_count_is_refused_in_one_line(
    recipe: Recipe, argv: list[str]
) -> None:
    # What the broker's auto-creation used to make: `occupancy` with one partition.
    topic = "occupancy-one-partition"
    port = int(recipe.bootstrap.rsplit(":", 1)[1])
    KafkaCluster(port, data_dir=recipe.tmp / "stack" / "kafka", stop_at_exit=False).create_topic(
        topic, partitions=1
    )
    env = {**recipe.env, "CAMTOPO_OCCUPANCY_TOPIC": topic}
    if argv[0] == "process":
        argv = [*argv, "--network", str(recipe.network)]

    out = _camtopo(*argv, env=env, cwd=recipe.tmp, timeout=90)

    assert not out.startswith("exit 0"), out
    assert f"'{topic}' has 1 partition(s), but CAMTOPO_OCCUPANCY_PARTITIONS is 8" in out, out
    assert "recreate the topic with 8 partitions" in out
    assert "CAMTOPO_OCCUPANCY_PARTITIONS=1" in out
    assert "Traceback" not in out, out
    assert _partitions(recipe.bootstrap)[topic] == 1  # refused, not altered
