"""Avro wire format of the project's Kafka records and container files.

Kafka values use the Confluent framing: one magic byte 0, a 4-byte big-endian schema id, then
the Avro binary body. The schema id is the version number of a file
``camtopo/schemas/NAME.vN.avsc``; there is no registry server, that folder is the registry.
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

# Package data (pyproject's package-data), read through importlib.resources: an installed wheel
# has them as well as a checkout, wherever it is installed.
SCHEMA_DIR = files("camtopo") / "schemas"
MAGIC = 0
OCCUPANCY = "occupancy"
TOPOLOGY_CHANGE = "topology_change"
RANGE_BLOCK = "range_block"
CURRENT = {OCCUPANCY: 1, TOPOLOGY_CHANGE: 1, RANGE_BLOCK: 1}
_HEADER = struct.Struct(">bI")


class UndecodableRecord(ValueError):
    """Bytes that are not a framed Avro record of a known schema."""


class UnknownSchemaVersion(UndecodableRecord):
    """A framed record whose schema id this build does not know."""


@cache
def schema(name: str, version: int | None = None) -> Any:
    version = version or CURRENT[name]
    path = SCHEMA_DIR / f"{name}.v{version}.avsc"
    if not path.is_file():
        raise UnknownSchemaVersion(f"no schema {name} version {version} ({path.name})")
    return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))


def encode(name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC, CURRENT[name]))
    fastavro.schemaless_writer(out, schema(name), record)
    return out.getvalue()


def decode(name: str, data: bytes | None) -> dict[str, Any]:
    """Decode a framed record; raises :class:`UndecodableRecord` saying why."""
    if not data or len(data) < _HEADER.size:
        raise UndecodableRecord(f"{len(data or b'')} bytes is too short for a framed record")
    magic, version = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise UndecodableRecord(f"magic byte {magic} is not {MAGIC}")
    body = io.BytesIO(data[_HEADER.size :])
    try:
        writer = schema(name, version)
        record = fastavro.schemaless_reader(body, writer, schema(name))
    except UnknownSchemaVersion:
        raise
    except Exception as exc:  # fastavro raises many types for corrupt bodies
        raise UndecodableRecord(f"corrupt Avro body: {exc!r}") from exc
    if body.tell() != len(data) - _HEADER.size:
        raise UndecodableRecord("trailing bytes after the Avro body")
    return record  # type: ignore[no-any-return]
