"""File mode's schema ids (no registry): distinct per schema, so ids never collide within
camtopo (issue 18: occupancy, range_block and topology_change all carried id 1)."""

from __future__ import annotations

import pytest

from camtopo.core.grid import Network
from camtopo.formats import avro
from camtopo.settings import Settings
from processors.validate import DeadLetter, Limits, validate

NET = Network.uniform(["cam0"])
OCCUPANCY = {
    "camera": "cam0",
    "grid": {"cols": 12, "rows": 9, "width": 320, "height": 240},
    "frames": [{"t_ms": 1000, "seq": 0, "status": "OK", "occupied": [3], "detail": None}],
    "producer": "unit",
}
CHANGE = {"change": "EDGE_ADDED", "a": "c1", "b": "c2", "kind": "overlap", "weight": 0.9,
          "support": 2, "c_ab": 0.9, "c_ba": 0.97, "o_ab": 30, "o_ba": 60, "transit_s": None,
          "range_end_ms": 1000, "emitted_ms": 1001}  # fmt: skip


def framed_id(data: bytes) -> int:
    return int.from_bytes(data[1:5], "big")


def with_id(data: bytes, schema_id: int) -> bytes:
    return data[:1] + schema_id.to_bytes(4, "big") + data[5:]


def test_each_schema_is_framed_with_its_own_documented_id() -> None:
    assert framed_id(avro.encode(avro.OCCUPANCY, OCCUPANCY)) == 1
    assert framed_id(avro.encode(avro.TOPOLOGY_CHANGE, CHANGE)) == 101
    assert avro.file_id(avro.RANGE_BLOCK) == 201
    assert avro.file_id(avro.OCCUPANCY, 2) == 2  # version N: base + N - 1
    # The mode-aware encoder and decoder of a settings object without a registry agree.
    settings = Settings()
    encoder = avro.encoder(settings, avro.TOPOLOGY_CHANGE, "topology-changes")
    assert encoder.schema_id == 101
    assert avro.decoder(settings).decode(avro.TOPOLOGY_CHANGE, encoder.encode(CHANGE)) == CHANGE


def test_an_id_of_another_schema_is_refused_naming_both() -> None:
    change = avro.encode(avro.TOPOLOGY_CHANGE, CHANGE)
    with pytest.raises(avro.UnknownSchemaVersion, match="schema id 101 is topology_change"):
        avro.decode(avro.OCCUPANCY, change)
    with pytest.raises(avro.UnknownSchemaVersion, match="schema id 777 is no camtopo schema"):
        avro.decode(avro.OCCUPANCY, with_id(change, 777))
    with pytest.raises(avro.UnknownSchemaVersion, match="no schema occupancy version 5"):
        avro.decode(avro.OCCUPANCY, with_id(avro.encode(avro.OCCUPANCY, OCCUPANCY), 5))


def test_records_written_before_ids_were_distinct_still_read() -> None:
    # They carry id 1 whatever the schema; the reader knows its topic's schema.
    legacy = with_id(avro.encode(avro.TOPOLOGY_CHANGE, CHANGE), 1)
    assert avro.decode(avro.TOPOLOGY_CHANGE, legacy) == CHANGE


def test_the_processor_dead_letters_an_unknown_id_with_the_id_in_the_reason() -> None:
    limits = Limits.from_settings(Settings())
    record = avro.encode(avro.OCCUPANCY, OCCUPANCY)
    for schema_id, says in ((101, "schema id 101 is topology_change"), (9999, "schema id 9999")):
        dead = validate(with_id(record, schema_id), 1000, 1000, NET, limits)
        assert isinstance(dead, DeadLetter) and dead.reason == "unknown_schema"
        assert says in dead.detail
