"""Reading a topic back in tests: every message from the start, in a fresh consumer group."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Message]:
    """Messages of ``topic`` until ``expected`` arrived (or the timeout), then 2 s more, so that
    a duplicate beyond the expected count is caught rather than left unread."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, f"consumer error on {topic}: {msg.error()}"
            received.append(msg)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                received.append(msg)
    finally:
        consumer.close()
    return received
