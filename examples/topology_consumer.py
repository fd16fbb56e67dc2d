"""Print camtopo's topology changes, with nothing but Confluent's Kafka client and its
schema-registry deserializer (no camtopo import: this is what a consumer in another team writes).

    pip install 'confluent-kafka[avro,schemaregistry]'
    python examples/topology_consumer.py --bootstrap 127.0.0.1:9092 \\
        --registry http://127.0.0.1:8081/apis/ccompat/v7 [--from-beginning] [--max N]

One JSON line per change on stdout. The records must have been framed in registry mode
(camtopo with CAMTOPO_SCHEMA_REGISTRY_URL set to the same registry): the 4-byte id after the
magic byte is then the registry's, and the deserializer fetches that schema once. Events,
keys, ordering, duplicates and replay: docs/events.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--registry", required=True, help="schema registry API root URL")
    parser.add_argument("--topic", default="topology-changes")
    parser.add_argument("--group", default=None, help="consumer group (default: a new one)")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a new group starts at the oldest retained change, not the next one",
    )
    parser.add_argument("--max", type=int, default=0, help="stop after N changes (0: never)")
    parser.add_argument("--idle-exit", type=float, default=0, help="stop after S s with none")
    args = parser.parse_args(argv)

    # No reader schema: each record is read with the schema it was written with (its id).
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group or f"topology-printer-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            # Offsets are committed after the change is printed (at-least-once): after a
            # crash a change may print twice, never be skipped. Changes are idempotent.
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
        }
    )
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumer.subscribe([args.topic])
    printed = 0
    last = time.monotonic()
    try:
        while not stop and not (args.max and printed >= args.max):
            msg = consumer.poll(0.5)
            if msg is None:
                if args.idle_exit and time.monotonic() - last > args.idle_exit:
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            context = SerializationContext(msg.topic(), MessageField.VALUE)
            change = deserialize(msg.value(), context)
            key = msg.key().decode() if msg.key() else None
            print(json.dumps({"camera": key, **change}, sort_keys=True), flush=True)
            consumer.store_offsets(msg)
            printed += 1
            last = time.monotonic()
    finally:
        consumer.close()  # commits the stored offsets
    print(f"{printed} change(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
