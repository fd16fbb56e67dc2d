"""Registry mode against the REAL Kafka broker and the REAL schema registry (Apicurio).

Issue 18: records looked like Confluent Avro but every schema was framed with id 1 and no
registry stood behind them. Here writers register under ``<topic>-value`` and frame with the
registry's id, the processor's decoder resolves ids through the registry once, a consumer with
only confluent-kafka and its AvroDeserializer (examples/topology_consumer.py) reads the
topology changes, and schema evolution follows the subject's BACKWARD rule.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from camtopo.connections import (
    SchemaIncompatible,
    SchemaRegistryClient,
    SchemaRegistryUnavailable,
)
from camtopo.core.grid import Network
from camtopo.formats import avro
from camtopo.operations.localstack import free_port
from camtopo.settings import Settings
from processors.changes import publish_changes
from processors.validate import DeadLetter, Limits, ValidRecord, validate
from producers.producer import OccupancyPublisher
from topology_store.graph import diff_graphs

pytestmark = [pytest.mark.kafka, pytest.mark.registry]
REPO = Path(__file__).resolve().parents[2]
NET = Network.uniform(["cam0", "cam1"])


class CountingRegistry(SchemaRegistryClient):
    """The real client, counting its schema look-ups (to see the decoder's cache work)."""

    fetched: list[int]

    def schema(self, schema_id: int) -> str:
        self.fetched.append(schema_id)
        return super().schema(schema_id)


def counting(url: str) -> CountingRegistry:
    client = CountingRegistry(url, wait_seconds=5)
    client.fetched = []
    return client


def settings_for(registry_url: str, **more: Any) -> Settings:
    return Settings(schema_registry={"url": registry_url, **more})


def framed_id(value: bytes) -> int:
    assert value[0] == 0, "Confluent framing: magic byte 0"
    return int.from_bytes(value[1:5], "big")


def consume(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(msg)
    consumer.close()
    return got


def occupancy_record(camera: str, t_ms: int, seq: int = 0) -> dict[str, Any]:
    grid = NET.grids[NET.camera_index(camera)]
    return {
        "camera": camera,
        "grid": {"cols": grid.cols, "rows": grid.rows, "width": grid.width, "height": grid.height},
        "frames": [{"t_ms": t_ms, "seq": seq, "status": "OK", "occupied": [1, 2], "detail": None}],
        "producer": "test",
    }


def edge(a: str, b: str, w: float) -> dict[str, object]:
    return {"a": a, "b": b, "kind": "overlap", "weight": w, "support": 2, "co_occurrences": 9,
            "transit_s": None, "c_ab": w, "c_ba": 0.97, "o_ab": 30, "o_ba": 60}  # fmt: skip


def test_publisher_frames_with_registry_ids_and_the_confluent_example_prints_the_changes(
    kafka, kafka_topic, schema_registry
) -> None:
    topic = kafka_topic(partitions=3)
    settings = settings_for(schema_registry.url)
    encoder = avro.encoder(settings, avro.TOPOLOGY_CHANGE, topic)
    graph = {"c1|c2": edge("c1", "c2", 0.85), "c2|c3": edge("c2", "c3", 0.9)}
    changes = diff_graphs({}, graph, 0.05, 1000, 1001).changes
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    sent = publish_changes(producer, changes, topic, encoder=encoder)
    assert sent == 4

    # Framed with the id the registry gave the subject <topic>-value, and compatibility set.
    client = SchemaRegistryClient(schema_registry.url)
    assert client.compatibility(f"{topic}-value") == "BACKWARD"
    ids = {framed_id(m.value()) for m in consume(kafka.bootstrap, topic, sent)}
    assert ids == {encoder.schema_id}
    assert json.loads(client.schema(encoder.schema_id))["name"] == "TopologyChange"

    # A consumer written with confluent-kafka alone (no camtopo import) prints them.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "topology_consumer.py"),
         "--bootstrap", kafka.bootstrap, "--registry", schema_registry.url, "--topic", topic,
         "--from-beginning", "--max", str(sent), "--idle-exit", "20"],
        capture_output=True, text=True, timeout=90, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(printed) == sent, done.stderr
    by_camera = {(e["camera"], e["b"]) for e in printed}
    assert by_camera == {("c1", "c2"), ("c2", "c1"), ("c2", "c3"), ("c3", "c2")}
    assert all(e["a"] == e["camera"] and e["change"] == "EDGE_ADDED" for e in printed)
    c2_from_c1 = next(e for e in printed if (e["camera"], e["b"]) == ("c2", "c1"))
    assert c2_from_c1["c_ab"] == 0.97  # the copy keyed by c2 has the evidence swapped
    print(f"example consumer: {time.monotonic() - started:.1f}s")


def test_producer_registers_and_the_processor_decoder_fetches_each_id_once(
    kafka, kafka_topic, schema_registry
) -> None:
    topic = kafka_topic(partitions=2)
    settings = settings_for(schema_registry.url)
    publisher = OccupancyPublisher(kafka.bootstrap, topic, settings, producer_id="registry")
    now = int(time.time() * 1000)
    for i in range(5):
        publisher.publish(occupancy_record(f"cam{i % 2}", now + 100 * i, seq=i // 2))
    assert publisher.flush(30) == 0
    msgs = consume(kafka.bootstrap, topic, 5)
    assert len(msgs) == 5
    occupancy_id = avro.encoder(settings, avro.OCCUPANCY, topic).schema_id
    assert {framed_id(m.value()) for m in msgs} == {occupancy_id}
    changes_id = avro.encoder(settings, avro.TOPOLOGY_CHANGE, f"{topic}-changes").schema_id
    assert changes_id != occupancy_id, "two schemas, two ids"

    client = counting(schema_registry.url)
    decoder = avro.Decoder(client)
    limits = Limits.from_settings(settings)
    for m in msgs:
        result = validate(m.value(), m.timestamp()[1], now + 1000, NET, limits, decoder)
        assert isinstance(result, ValidRecord), result
    assert client.fetched == [occupancy_id], "an id seen once is never fetched again"


def test_an_unknown_schema_id_is_a_dead_letter_naming_the_id(schema_registry) -> None:
    client = counting(schema_registry.url)
    decoder = avro.Decoder(client)
    limits = Limits.from_settings(Settings())
    body = avro.encode(avro.OCCUPANCY, occupancy_record("cam0", 10_000))[5:]
    unknown = b"\x00" + (987_654).to_bytes(4, "big") + body
    for _ in range(3):
        dead = validate(unknown, 10_000, 10_000, NET, limits, decoder)
        assert isinstance(dead, DeadLetter) and dead.reason == "unknown_schema"
        assert "987654" in dead.detail and schema_registry.url in dead.detail
    assert client.fetched == [987_654], "an unknown id is asked once, not per record"

    # The id of another schema (a topology change on the occupancy topic) is refused too.
    changes_id = avro.encoder(
        settings_for(schema_registry.url), avro.TOPOLOGY_CHANGE, "elsewhere"
    ).schema_id
    wrong = b"\x00" + changes_id.to_bytes(4, "big") + body
    dead = validate(wrong, 10_000, 10_000, NET, limits, decoder)
    assert isinstance(dead, DeadLetter) and dead.reason == "unknown_schema"
    assert f"schema id {changes_id}" in dead.detail and "TopologyChange" in dead.detail


def test_a_registry_down_at_start_stops_the_producer_in_one_line_and_nothing_is_sent(
    kafka, kafka_topic, tmp_path
) -> None:
    topic = kafka_topic(partitions=8, prefix="occupancy-down")
    dead_url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    started = time.monotonic()
    with pytest.raises(SchemaRegistryUnavailable, match="unreachable for 2s"):
        OccupancyPublisher(kafka.bootstrap, topic, settings_for(dead_url, wait_seconds=2))
    assert 1.5 < time.monotonic() - started < 10, "retried with backoff, and bounded"

    # The CLI: exit 2 with one line on stderr, and the topic stays empty.
    env = {"PATH": "/usr/bin:/bin", "CAMTOPO_SCHEMA_REGISTRY_URL": dead_url,
           "CAMTOPO_SCHEMA_REGISTRY_WAIT_SECONDS": "2", "CAMTOPO_KAFKA_BOOTSTRAP": kafka.bootstrap,
           "CAMTOPO_OCCUPANCY_TOPIC": topic, "HOME": str(tmp_path)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "produce", "--simulate", "--cameras", "2",
         "--fast", "--duration", "2", "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "schema registry" in errors[0] and dead_url in errors[0]
    assert "Traceback" not in done.stderr
    assert consume(kafka.bootstrap, topic, 1, timeout=3) == []


# --- schema evolution -----------------------------------------------------------------------


def occupancy_v2() -> dict[str, Any]:
    """v2: a new optional field with a default (same record name: Avro resolves by name)."""
    v2 = copy.deepcopy(json.loads(avro.schema_text(avro.OCCUPANCY)))
    v2["fields"].append({"name": "site", "type": ["null", "string"], "default": None})
    return v2


def test_schema_evolution_backward_compatible_both_ways_and_a_breaking_change_refused(
    schema_registry, kafka_topic
) -> None:
    topic = kafka_topic(partitions=1, prefix="evolution")
    subject = avro.subject(topic)
    client = SchemaRegistryClient(schema_registry.url)
    v1_id = avro.encoder(settings_for(schema_registry.url), avro.OCCUPANCY, topic).schema_id
    v2 = occupancy_v2()
    v2_id = client.register(subject, json.dumps(v2))
    assert v2_id != v1_id
    assert client.compatibility(subject) == "BACKWARD"

    # A v2 producer's record: the processor's decoder (reader v1) reads it, `site` dropped.
    record = {**occupancy_record("cam1", 20_000), "site": "north gate"}
    out = io.BytesIO()
    out.write(b"\x00" + v2_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(v2), record)
    decoded = avro.Decoder(client).decode(avro.OCCUPANCY, out.getvalue())
    assert "site" not in decoded and decoded["frames"][0]["occupied"] == [1, 2]
    result = validate(out.getvalue(), 20_000, 20_000, NET, Limits.from_settings(Settings()),
                      avro.Decoder(client))  # fmt: skip
    assert isinstance(result, ValidRecord)

    # A v1 record read by a v2 reader (writer schema from the registry): `site` is its default.
    v1_bytes = avro.encoder(settings_for(schema_registry.url), avro.OCCUPANCY, topic).encode(
        occupancy_record("cam0", 30_000)
    )
    writer = fastavro.parse_schema(json.loads(client.schema(framed_id(v1_bytes))))
    back = fastavro.schemaless_reader(io.BytesIO(v1_bytes[5:]), writer, fastavro.parse_schema(v2))
    assert back["site"] is None and back["camera"] == "cam0"

    # A new required field without a default would leave v1 records unreadable: 409.
    breaking = copy.deepcopy(v2)
    breaking["fields"].append({"name": "zone", "type": "string"})
    with pytest.raises(SchemaIncompatible, match="HTTP 409") as refused:
        client.register(subject, json.dumps(breaking))
    assert "zone" in str(refused.value) or "incompatible" in str(refused.value).lower()
