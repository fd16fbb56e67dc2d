"""Property-based fuzzing of every decoder and parser that takes outside input (tests/fuzzing.py
has the targets and the oracle: a valid value or the documented error, never a crash).

A few seconds per target here (the "fuzz" hypothesis profile); ``python -m benchmarks.fuzz``
runs the same targets for tens of thousands of inputs. Each ``@example`` is an input that
crashed before its fix.
"""

from __future__ import annotations

import io
import struct

import fastavro
from hypothesis import example, given, settings

from camtopo.formats import avro
from tests import fuzzing as f


# The header of a version-2 row blob whose O section declares `length` bytes of counts.
def _row_declaring(varint: bytes) -> bytes:
    return struct.pack("<BBqII", 2, 1, 0, len(varint), 1) + varint + b"\x03" + b"\x00"


def _container(name: str, values: list[dict]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, avro.schema(name), values, codec="null")
    return out.getvalue()


_OCCUPANCY = {
    "camera": "cam0",
    "grid": {"cols": 4, "rows": 3, "width": 320, "height": 240},
    "frames": [{"t_ms": 1, "seq": 0, "status": "OK", "occupied": [1, 2], "detail": None}],
    "producer": "",
}
_CHANGE = {
    "change": "EDGE_ADDED", "a": "a", "b": "b", "kind": "overlap", "weight": 1.0, "support": 1,
    "c_ab": 1.0, "c_ba": 1.0, "o_ab": 1, "o_ba": 1, "transit_s": None, "range_end_ms": 1,
    "emitted_ms": 1,
}  # fmt: skip


@settings(f.FUZZ)
@given(f.BY_NAME["avro_decode"].strategy)
def test_fuzz_avro_framing_and_bodies(case):
    f.check_avro_decode(case)


@settings(f.FUZZ)
@given(f.BY_NAME["avro_round_trip"].strategy)
def test_fuzz_avro_round_trip(case):
    f.check_avro_round_trip(case)


@settings(f.FUZZ)
@given(f.BY_NAME["processor_record"].strategy)
def test_fuzz_processor_record_is_counted_or_dead_lettered(case):
    f.check_processor_record(case)


@settings(f.FUZZ)
@given(f.BY_NAME["range_block"].strategy)
def test_fuzz_range_block(data):
    f.check_range_block(data)


@settings(f.FUZZ)
# A frame 317 years before the rest was taken (nothing counted yet) and finish() then counted
# every tick from it: the run hung.
@example(
    b'{"camera":"cam0","t_ms":1000,"occupied":[1]}\n'
    b'{"camera":"cam1","t_ms":-10000000000000,"occupied":[1]}\n'
)
@given(f.BY_NAME["jsonl_trace"].strategy)
def test_fuzz_jsonl_trace_and_estimate(data):
    f.check_jsonl_trace(data)


@settings(f.FUZZ)
@example(_container(avro.TOPOLOGY_CHANGE, [_CHANGE]))  # KeyError 'grid'
@example(_container(avro.OCCUPANCY, [_OCCUPANCY] * 3)[:-30])  # EOFError in a block
@given(f.BY_NAME["avro_trace"].strategy)
def test_fuzz_avro_container_trace(data):
    f.check_avro_trace(data)


@settings(f.FUZZ)
@example(f.deep(100_000))  # RecursionError
@example(b'{"fps": 1' + b"0" * 5000 + b"}")  # ValueError: more than 4,300 digits
@example(b'{"grid": {}, "fps": 1, "cameras": [null, []]}')  # TypeError: a null camera
@given(f.BY_NAME["network_json"].strategy)
def test_fuzz_network_json(data):
    f.check_network(data)


@settings(f.FUZZ)
@example((f.deep(100_000, "{"), b"{}"))  # RecursionError
@example((b"{}", b'{"window_overlaps": ' + b"9" * 5000 + b"}"))  # ValueError: digits
@given(f.BY_NAME["score_inputs"].strategy)
def test_fuzz_topology_and_truth_json(case):
    f.check_score_inputs(case)


@settings(f.FUZZ)
@example(b"\xff" * 9 + b"\x01")  # 2^64 - 1 zeros: ValueError (maximum dimension)
@example(b"\xff\xff\xff\xff\xff\x0f")  # 2^39 zeros: MemoryError
@given(f.BY_NAME["rle_decode"].strategy)
def test_fuzz_rle_blob(blob):
    f.check_rle(blob)


@settings(f.FUZZ)
@given(f.BY_NAME["rle_round_trip"].strategy)
def test_fuzz_rle_round_trip(values):
    f.check_rle_round_trip(values)


@settings(f.FUZZ)
@example(_row_declaring(b"\xff" * 9 + b"\x01"))  # negative length: ValueError
@example(_row_declaring(b"\xff\xff\xff\xff\xff\x0f"))  # MemoryError
@given(f.BY_NAME["row_blob"].strategy)
def test_fuzz_row_blob_from_redis(blob):
    f.check_row_blob(blob)


@settings(f.FUZZ)
@given(f.BY_NAME["row_round_trip"].strategy)
def test_fuzz_row_round_trip(parts):
    f.check_row_round_trip(parts)


@settings(f.FUZZ)
@given(f.BY_NAME["http_params"].strategy)
def test_fuzz_http_parameter_parsers(raw):
    f.check_http_params(raw)
