"""Wire format of the project's Kafka records and container files.

Kafka values use the Confluent framing: one magic byte 0, a 4-byte big-endian schema id, then
the Avro binary body (fastavro, schemaless). Where the id comes from depends on the mode:

* **registry mode** (``CAMTOPO_SCHEMA_REGISTRY_URL`` set): the registry's global id. Writers
  register their schema under the subject ``<topic>-value`` (compatibility BACKWARD) when they
  start (:func:`encoder`); readers look ids up there once and keep them (:func:`decoder`). Any
  consumer with a Confluent deserializer and the same registry can read the records.
* **file mode** (no URL; the default, and what the tests and offline tools use): the folder
  ``camtopo/schemas/NAME.vN.avsc`` is the registry, and each (schema, version) has a fixed id,
  distinct across schemas so no two camtopo schemas share one: occupancy v1 = 1,
  topology_change v1 = 101, range_block v1 = 201 (version N = base + N - 1, :data:`FILE_IDS`).

Events are docs/events.md.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

from camtopo.connections import SchemaRegistryClient, UnknownSchemaId, schema_registry
from camtopo.settings import Settings

# Package data (pyproject's package-data), read through importlib.resources: an installed wheel
# has them as well as a checkout, wherever it is installed.
SCHEMA_DIR = files("camtopo") / "schemas"
MAGIC = 0
OCCUPANCY = "occupancy"
TOPOLOGY_CHANGE = "topology_change"
RANGE_BLOCK = "range_block"
CURRENT = {OCCUPANCY: 1, TOPOLOGY_CHANGE: 1, RANGE_BLOCK: 1}
# File mode's id of version 1; version N is FILE_IDS[name] + N - 1 (room for 100 versions).
FILE_IDS = {OCCUPANCY: 1, TOPOLOGY_CHANGE: 101, RANGE_BLOCK: 201}
_VERSIONS_PER_SCHEMA = 100
# Before ids were distinct every schema was framed with id 1; a reader that knows which schema
# it expects (its topic says so) still reads those records as that schema's version 1.
_LEGACY_ID = 1
_HEADER = struct.Struct(">bI")


class UndecodableRecord(ValueError):
    """Bytes that are not a framed Avro record of a known schema."""


class UnknownSchemaVersion(UndecodableRecord):
    """A framed record whose schema id this build (or the registry) does not know."""


@cache
def schema_text(name: str, version: int | None = None) -> str:
    version = version or CURRENT[name]
    path = SCHEMA_DIR / f"{name}.v{version}.avsc"
    if not path.is_file():
        raise UnknownSchemaVersion(f"no schema {name} version {version} ({path.name})")
    return path.read_text(encoding="utf-8")


@cache
def schema(name: str, version: int | None = None) -> Any:
    return fastavro.parse_schema(json.loads(schema_text(name, version)))


def file_id(name: str, version: int | None = None) -> int:
    """File mode's fixed schema id of ``name`` version ``version`` (default: current)."""
    return FILE_IDS[name] + (version or CURRENT[name]) - 1


def _file_schema_of(schema_id: int, name: str) -> tuple[str, int]:
    """(name, version) that file-mode id ``schema_id`` stands for."""
    for other, base in FILE_IDS.items():
        if base <= schema_id < base + _VERSIONS_PER_SCHEMA:
            if other != name and schema_id == _LEGACY_ID:
                return name, 1
            return other, schema_id - base + 1
    raise UnknownSchemaVersion(f"schema id {schema_id} is no camtopo schema (file mode)")


def subject(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def _frame(schema_id: int, name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(out, schema(name), record)
    return out.getvalue()


def _read(name: str, data: bytes | None, writer_of: Any) -> dict[str, Any]:
    if not data or len(data) < _HEADER.size:
        raise UndecodableRecord(f"{len(data or b'')} bytes is too short for a framed record")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise UndecodableRecord(f"magic byte {magic} is not {MAGIC}")
    writer = writer_of(schema_id, name)
    body = io.BytesIO(data[_HEADER.size :])
    try:
        record = fastavro.schemaless_reader(body, writer, schema(name))
    except Exception as exc:  # fastavro raises many types for corrupt bodies
        raise UndecodableRecord(f"corrupt Avro body: {exc!r}") from exc
    if body.tell() != len(data) - _HEADER.size:
        raise UndecodableRecord("trailing bytes after the Avro body")
    if not isinstance(record, dict):  # a writer schema that is not a record
        raise UndecodableRecord(
            f"the writer schema decodes to {type(record).__name__}, not a record"
        )
    return record


def _file_writer(schema_id: int, name: str) -> Any:
    owner, version = _file_schema_of(schema_id, name)
    if owner != name:
        raise UnknownSchemaVersion(
            f"schema id {schema_id} is {owner} version {version}, not {name} (file mode)"
        )
    return schema(name, version)


def encode(name: str, record: dict[str, Any]) -> bytes:
    """File mode: frame ``record`` with the fixed id of ``name``'s current version."""
    return _frame(file_id(name), name, record)


def decode(name: str, data: bytes | None) -> dict[str, Any]:
    """File mode: decode a framed record; raises :class:`UndecodableRecord` saying why."""
    return _read(name, data, _file_writer)


# --- the mode-aware writer and reader -----------------------------------------------------------


class Encoder:
    """Frames records of one schema for one topic with one id (file mode's or the registry's)."""

    def __init__(self, name: str, schema_id: int) -> None:
        self.name = name
        self.schema_id = schema_id

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, id={self.schema_id})"

    def encode(self, record: dict[str, Any]) -> bytes:
        return _frame(self.schema_id, self.name, record)


class Decoder:
    """Reads framed records; in registry mode it resolves writer schemas by id through the
    registry, each id once (a hit is kept for good, and so is an unknown id: a garbage record
    repeated must not call the registry each time)."""

    def __init__(self, registry: SchemaRegistryClient | None = None) -> None:
        self.registry = registry
        self._writers: dict[int, Any] = {}
        self._unknown: dict[int, str] = {}
        self._lock = threading.Lock()  # the processor decodes on the loop; tests in threads

    def decode(self, name: str, data: bytes | None) -> dict[str, Any]:
        if self.registry is None:
            return decode(name, data)
        return _read(name, data, self._registry_writer)

    def _registry_writer(self, schema_id: int, name: str) -> Any:
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._fetch(schema_id)
        # Avro resolution needs the same record name: a writer of another schema (some other
        # team's id, or a topology change on the occupancy topic) is not ours to read.
        expected = schema(name)["name"]
        if writer["name"] != expected:
            raise UnknownSchemaVersion(
                f"schema id {schema_id} in the registry is {writer['name']}, not {expected}"
            )
        return writer

    def _fetch(self, schema_id: int) -> Any:
        assert self.registry is not None
        if schema_id in self._unknown:
            raise UnknownSchemaVersion(self._unknown[schema_id])
        try:
            text = self.registry.schema(schema_id)
        except UnknownSchemaId:
            reason = f"schema id {schema_id} is not in the registry {self.registry.url}"
            with self._lock:
                if len(self._unknown) > 10_000:  # bounded against a flood of random ids
                    self._unknown.clear()
                self._unknown[schema_id] = reason
            raise UnknownSchemaVersion(reason) from None
        try:
            writer = fastavro.parse_schema(json.loads(text))
        except Exception as exc:
            raise UnknownSchemaVersion(f"schema id {schema_id} is no Avro schema: {exc}") from exc
        if not isinstance(writer, dict) or "name" not in writer:
            raise UnknownSchemaVersion(f"schema id {schema_id} is not an Avro record schema")
        with self._lock:
            self._writers[schema_id] = writer
        return writer


_FILE_DECODER = Decoder()
_shared_lock = threading.Lock()
_encoders: dict[tuple[str, str, str], Encoder] = {}
_decoders: dict[str, Decoder] = {}


def encoder(settings: Settings, name: str, topic: str) -> Encoder:
    """The encoder of ``name``'s current schema on ``topic``. In registry mode this registers
    the schema under ``<topic>-value`` (BACKWARD) the first time a process asks, which is why
    writers call it when they start: an unreachable registry is retried for
    ``schema_registry_wait_seconds``, then :class:`~camtopo.connections.SchemaRegistryUnavailable`,
    and nothing is produced unframed. File mode needs no I/O."""
    registry = schema_registry(settings)
    if registry is None:
        return Encoder(name, file_id(name))
    key = (registry.url, name, topic)
    with _shared_lock:
        found = _encoders.get(key)
    if found is not None:
        return found
    made = Encoder(name, registry.register(subject(topic), schema_text(name)))
    with _shared_lock:
        return _encoders.setdefault(key, made)


def decoder(settings: Settings) -> Decoder:
    """The decoder of ``settings``' mode, one per registry and process (its cache shared)."""
    registry = schema_registry(settings)
    if registry is None:
        return _FILE_DECODER
    with _shared_lock:
        return _decoders.setdefault(registry.url, Decoder(registry))
