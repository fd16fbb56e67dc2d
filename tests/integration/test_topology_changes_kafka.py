"""Topology-change events on a REAL Kafka topic: framed Avro, once per endpoint, keyed by camera."""

from __future__ import annotations

from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer

from camtopo.formats import avro
from processors.changes import publish_changes
from topology_store.graph import diff_graphs

pytestmark = pytest.mark.kafka


def rec(a: str, b: str, w: float) -> dict[str, object]:
    return {"a": a, "b": b, "kind": "overlap", "weight": w, "support": 2, "co_occurrences": 9,
            "transit_s": None, "c_ab": w, "c_ba": 0.97, "o_ab": 30, "o_ba": 60}  # fmt: skip


def test_published_changes_decode_back_per_camera_in_order(kafka, kafka_topic) -> None:
    topic = kafka_topic(partitions=3)
    g1 = {"c1|c2": rec("c1", "c2", 0.85), "c2|c3": rec("c2", "c3", 0.9)}
    first = diff_graphs({}, g1, 0.05, 1000, 1001).changes
    stored = {k: {**v, "published_weight": v["weight"]} for k, v in g1.items()}
    second = diff_graphs(stored, {"c1|c2": rec("c1", "c2", 0.99)}, 0.05, 3000, 3001).changes
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    sent = publish_changes(producer, first, topic) + publish_changes(producer, second, topic)
    assert sent == 2 * (len(first) + len(second)) == 8

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    got: dict[str, list[dict[str, object]]] = defaultdict(list)
    partition_of: dict[str, set[int]] = defaultdict(set)
    n = 0
    for _ in range(300):
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            if n == sent:
                break
            continue
        key = msg.key().decode()
        event = avro.decode(avro.TOPOLOGY_CHANGE, msg.value())
        assert event["a"] == key, "each copy is oriented from its key camera"
        got[key].append(event)
        partition_of[key].add(msg.partition())
        n += 1
    consumer.close()
    assert n == sent
    assert all(len(p) == 1 for p in partition_of.values())  # one camera, one partition
    # c1's history in order: added, then re-weighted; c2 sees both its edges and the re-weight.
    assert [(e["change"], e["b"]) for e in got["c1"]] == [("EDGE_ADDED", "c2"),
                                                          ("EDGE_REWEIGHTED", "c2")]  # fmt: skip
    assert got["c2"][0]["b"] == "c1" and got["c2"][0]["c_ab"] == 0.97  # swapped evidence
    assert [e["change"] for e in got["c3"]] == ["EDGE_ADDED", "EDGE_REMOVED"]
    assert got["c3"][1]["weight"] == 0.0 and got["c3"][1]["range_end_ms"] == 3000
