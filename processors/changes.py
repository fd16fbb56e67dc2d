"""Topology changes as Kafka records: the processors announce what the store's publisher
(:mod:`topology_store.publisher`) found changed, on topic ``topology-changes``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from camtopo.formats import avro
from topology_store import metrics
from topology_store.context import StoreError
from topology_store.graph import keyed_for


def change_records(
    changes: Iterable[Mapping[str, Any]], encoder: avro.Encoder | None = None
) -> list[tuple[bytes, bytes]]:
    """(key, framed Avro value) pairs: every change once per endpoint, keyed by that camera.
    ``encoder``: from :func:`camtopo.formats.avro.encoder` (registry mode: the registered id); None
    frames with file mode's fixed id."""
    encode = encoder.encode if encoder else functools.partial(avro.encode, avro.TOPOLOGY_CHANGE)
    out = []
    for change in changes:
        for camera in (change["a"], change["b"]):
            value = encode(keyed_for(change, camera))
            out.append((camera.encode(), value))
    return out


class Producer(Protocol):
    """What :func:`publish_changes` needs of a confluent-kafka producer."""

    # on_delivery by keyword: confluent-kafka's fourth positional parameter is partition.
    def produce(
        self, topic: str, value: bytes, key: bytes, *, on_delivery: Callable[[Any, Any], None]
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


def publish_changes(
    producer: Producer,
    changes: Sequence[Mapping[str, Any]],
    topic: str = "topology-changes",
    timeout: float = 30.0,
    encoder: avro.Encoder | None = None,
) -> int:
    """Send changes to ``topic`` (confluent-kafka producer), wait for delivery, return count.

    Keyed by camera, so a camera's changes stay in order on its partition. Raises StoreError
    naming the first failure if any record was not delivered. ``encoder``: as for
    :func:`change_records` (a worker makes it at start, so a registry is reached then).
    """
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    records = change_records(changes, encoder)
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise StoreError(f"{left} topology-change records not delivered to {topic} in {timeout}s")
    if errors:
        raise StoreError(f"{len(errors)} topology-change records failed, first: {errors[0]}")
    metrics.CHANGES_PUBLISHED.inc(len(records))
    return len(records)
