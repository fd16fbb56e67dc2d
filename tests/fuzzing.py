"""Fuzz targets of every decoder and parser that takes outside input, shared by the suite
(tests/unit/test_fuzz_*.py, tests/integration/test_fuzz_http.py) and benchmarks/fuzz.py.

A target is a hypothesis strategy of inputs and a check. The oracle of every check: the input
parses to a valid value or is refused with the project's documented error (or, in the
processor, a dead letter with one of its reasons); any other exception -- KeyError,
IndexError, struct.error, UnicodeDecodeError, OverflowError, RecursionError, MemoryError -- is a
crash and fails the check. Where there is an encoder, the round trip must give the value back.

Strategies mix structure-aware near-valid inputs (a valid value with one field mutated: wrong
type, huge, negative, NaN/inf, unicode, deeply nested; or its bytes truncated, bit-flipped,
spliced) with raw bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from camtopo.core import rle
from camtopo.core.grid import Grid, Network, NetworkError
from camtopo.estimate import estimate_trace
from camtopo.evaluation.score import ScoreInputError, load_topology, load_truth, score_topology
from camtopo.formats import avro
from camtopo.formats.traces import FrameLine, TraceError, read_avro, read_jsonl
from processors.blocks import decode_block
from processors.dead_letters import letter
from processors.validate import REASONS, DeadLetter, Limits, ValidRecord, validate
from topology_store.blobs import BlobError, decode_row, encode_row

# In the suite every target gets a few seconds (all of them together ~1 minute); the
# benchmark overrides max_examples per target.
SUITE_EXAMPLES = 300
settings.register_profile(
    "fuzz",
    max_examples=SUITE_EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz")

# --- generic values ---------------------------------------------------------------------------
HUGE = [2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400]
ODD_FLOATS = [math.nan, math.inf, -math.inf, 1e300, -0.0, 1.5, 1e-300]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def deep(depth: int, opener: str = "[") -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    body = '{"a":' * depth + "1" + "}" * depth if opener == "{" else opener * depth + closer * depth
    return body.encode()


deep_json = st.builds(deep, st.sampled_from([1_000, 100_000]), st.sampled_from(["[", "{"]))


def json_text(value: Any) -> bytes:
    """JSON as any writer might emit it: NaN/Infinity tokens, big integers (json allows both)."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few byte-level mutations: bit flips, truncation, insertion, deletion,
    overwritten bytes."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        at = draw(st.integers(0, max(len(data), 1) - 1)) if data else 0
        if data and draw(st.booleans()):  # near the end: past a container's long header
            at = max(0, len(data) - 1 - draw(st.integers(0, 63)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif data:
            chunk = draw(st.binary(min_size=1, max_size=9))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


def near(base: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings, mutated ones and raw bytes."""
    return st.one_of(base, base.flatmap(mutated_bytes), st.binary(max_size=300))


def mutate_field(obj: dict[str, Any], draw: st.DrawFn, values: st.SearchStrategy[Any]) -> None:
    """Replace, delete or add one field of a (possibly nested) JSON object in place."""
    target: Any = obj
    while True:
        children = (
            [k for k, v in target.items() if isinstance(v, dict)]
            if isinstance(target, dict)
            else []
        )
        lists = (
            [k for k, v in target.items() if isinstance(v, list) and v]
            if isinstance(target, dict)
            else []
        )
        step = draw(
            st.sampled_from(["here", *(["dict"] if children else []), *(["list"] if lists else [])])
        )
        if step == "dict":
            target = target[draw(st.sampled_from(children))]
        elif step == "list":
            items = target[draw(st.sampled_from(lists))]
            i = draw(st.integers(0, len(items) - 1))
            if isinstance(items[i], dict):
                target = items[i]
            else:
                items[i] = draw(values)
                return
        else:
            break
    keys = list(target)
    action = draw(st.sampled_from(["replace", "delete", "add"] if keys else ["add"]))
    if action == "add":
        target[draw(st.text(max_size=8))] = draw(values)
    elif action == "delete":
        del target[draw(st.sampled_from(keys))]
    else:
        target[draw(st.sampled_from(keys))] = draw(values)


def mutated_object(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def one(draw: st.DrawFn) -> dict[str, Any]:
        obj = draw(base)
        for _ in range(draw(st.integers(1, 2))):
            mutate_field(obj, draw, json_values)
        return obj

    return one()


def json_inputs(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A JSON document's bytes: valid, one field mutated, bytes mutated, deep, raw."""
    texts = st.one_of(valid, mutated_object(valid), json_values).map(json_text)
    return st.one_of(texts, texts.flatmap(mutated_bytes), deep_json, st.binary(max_size=200))


# --- Avro: values of a schema -----------------------------------------------------------------
_AVRO_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32),
    "double": st.floats(),
    "bytes": st.binary(max_size=64),
    "string": st.text(max_size=24),
}


def avro_values(schema: Any) -> st.SearchStrategy[Any]:
    """Any value of an Avro schema in JSON form (the subset camtopo's schemas use)."""
    if isinstance(schema, str):
        return _AVRO_PRIMITIVES[schema]
    if isinstance(schema, list):
        return st.one_of([avro_values(s) for s in schema])
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: avro_values(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(avro_values(schema["items"]), max_size=6)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), avro_values(schema["values"]), max_size=4)
    return avro_values(kind)


def avro_schema_json(name: str) -> Any:
    return json.loads(avro.schema_text(name))


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (a double field may carry one)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


# --- the network the targets share ------------------------------------------------------------
NETWORK = Network(("cam0", "cam1", "cam2"), (Grid(4, 3), Grid(4, 3), Grid(2, 2)), fps=10)
# The same cameras at 10, 25 and 5 fps: frames mapped onto the ticks by capture time
MIXED_RATES = Network(NETWORK.cameras, NETWORK.grids, fps=10, camera_fps=(10, 25, 5))
WALL_MS = 1_700_000_000_000
LIMITS = Limits(tick_ms=100.0, max_future_ms=60_000.0, max_age_ms=3_600_000.0, max_lead_ms=60_000.0)


@st.composite
def occupancy_records(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A record of one of NETWORK's cameras (sometimes another), with its Kafka timestamp;
    frames around that time, occupied windows mostly valid, sometimes not."""
    camera = draw(st.sampled_from([*NETWORK.cameras, "cam9", ""]) | st.text(max_size=6))
    grid = NETWORK.grids[NETWORK.cameras.index(camera)] if camera in NETWORK.cameras else Grid()
    cols, rows = grid.cols, grid.rows
    if draw(st.integers(0, 9)) == 0:
        cols, rows = draw(_AVRO_PRIMITIVES["int"]), draw(_AVRO_PRIMITIVES["int"])
    record_ms = WALL_MS + draw(st.integers(-4_000_000, 100_000) | _AVRO_PRIMITIVES["long"])
    n = cols * rows
    frames = []
    for seq in range(draw(st.integers(0, 5))):
        offset = draw(st.integers(-4_000_000, 100_000) | _AVRO_PRIMITIVES["long"])
        t_ms = max(-(2**63), min(2**63 - 1, record_ms + offset))
        valid = st.lists(st.integers(0, max(n - 1, 0)), unique=True, max_size=5).map(sorted)
        occupied = draw(valid | st.lists(_AVRO_PRIMITIVES["int"], max_size=5))
        frames.append(
            {
                "t_ms": t_ms,
                "seq": seq,
                "status": draw(st.sampled_from(["OK", "OK", "OK", "MISSING", "ERROR", "END"])),
                "occupied": occupied,
                "detail": draw(st.none() | st.text(max_size=10)),
            }
        )
    grid_json = {"cols": cols, "rows": rows, "width": 320, "height": 240}
    return {"camera": camera, "grid": grid_json, "frames": frames, "producer": "p"}, record_ms


# --- the targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    needs: str = ""  # "redis": runs against the real app and Redis (the HTTP target)


def check_avro_decode(case: tuple[str, bytes]) -> None:
    name, data = case
    try:
        record = avro.decode(name, data)
    except avro.UndecodableRecord as exc:
        assert str(exc)
        return
    assert isinstance(record, dict)
    assert set(record) == {f["name"] for f in avro_schema_json(name)["fields"]}


def _avro_cases() -> st.SearchStrategy[tuple[str, bytes]]:
    def of(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
        valid = avro_values(avro_schema_json(name)).map(lambda r: avro.encode(name, r))
        other_id = st.builds(framed, st.integers(0, 2**32 - 1), st.binary(max_size=40))
        return st.tuples(st.just(name), near(valid) | other_id)

    return st.one_of(of(avro.OCCUPANCY), of(avro.TOPOLOGY_CHANGE), of(avro.RANGE_BLOCK))


def check_avro_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    name, record = case
    assert same(avro.decode(name, avro.encode(name, record)), record)


def _avro_records() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    names = [avro.OCCUPANCY, avro.TOPOLOGY_CHANGE, avro.RANGE_BLOCK]
    return st.one_of([st.tuples(st.just(n), avro_values(avro_schema_json(n))) for n in names])


def check_processor_record(case: tuple[bytes, int]) -> None:
    """The processor's path for one occupancy record: valid frames, or a dead letter with one of
    the reasons that can always be sent (its headers built)."""
    data, record_ms = case
    out = validate(data, record_ms, WALL_MS, NETWORK, LIMITS)
    if isinstance(out, DeadLetter):
        assert out.reason in REASONS and out.detail
        sent = letter(out, b"key", data, "occupancy/0/1", 1_000_000)
        assert dict(sent.headers)["reason"] == out.reason.encode()
        return
    assert isinstance(out, ValidRecord)
    size = NETWORK.grids[out.camera].n_windows
    assert out.ticks.dtype == np.int64 and len(out.windows) == out.ticks.size == out.t_ms.size
    for w in out.windows:
        assert w.size == 0 or (w.min() >= 0 and w.max() < size and np.all(np.diff(w) > 0))


def _processor_cases() -> st.SearchStrategy[tuple[bytes, int]]:
    valid = occupancy_records().map(lambda r: (avro.encode(avro.OCCUPANCY, r[0]), r[1]))
    timestamps = st.integers(WALL_MS - 4_000_000, WALL_MS + 100_000) | st.integers(
        -(2**63), 2**63 - 1
    )
    return st.one_of(
        valid,
        valid.flatmap(lambda v: st.tuples(mutated_bytes(v[0]), st.just(v[1]))),
        st.tuples(st.binary(max_size=200), timestamps),
    )


def check_range_block(data: bytes) -> None:
    try:
        block = decode_block(data, NETWORK.n_cameras)
    except avro.UndecodableRecord as exc:
        assert str(exc)
        return
    assert block.cameras.size == block.ticks.size == len(block.windows)


def _range_blocks() -> st.SearchStrategy[bytes]:
    @st.composite
    def plausible(draw: st.DrawFn) -> bytes:
        n = draw(st.integers(0, 4))
        counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
        rec = {
            "partition": draw(st.integers(0, 3)),
            "first_range": draw(st.integers(-3, 10)),
            "range_id": draw(st.integers(-3, 10)),
            "n_cameras": draw(st.sampled_from([NETWORK.n_cameras, 0, 7])),
            "cameras": np.array(
                draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n)), "<i4"
            ).tobytes(),
            "ticks": np.array(
                draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), "<i8"
            ).tobytes(),
            "counts": np.array(counts, "<u2").tobytes(),
            "windows": np.array(
                draw(st.lists(st.integers(0, 20), min_size=sum(counts), max_size=sum(counts))),
                "<u2",
            ).tobytes(),
        }
        return avro.encode(avro.RANGE_BLOCK, rec)

    return near(plausible())


# JSON Lines traces and the offline estimator ---------------------------------------------------


def _frame_objects() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "camera": st.sampled_from([*NETWORK.cameras, "nope"]),
            "t_ms": st.integers(0, 20_000),
            "occupied": st.lists(st.integers(0, 15), unique=True, max_size=4),
        }
    )


def _trace_lines() -> st.SearchStrategy[bytes]:
    line = st.one_of(
        _frame_objects().map(json_text),
        mutated_object(_frame_objects()).map(json_text),
        json_values.map(json_text),
        deep_json,
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    )
    return st.lists(line, max_size=8).map(lambda lines: b"\n".join(lines) + b"\n")


def _with_file(data: bytes, suffix: str, use: Callable[[Path], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        use(path)


def check_jsonl_trace(data: bytes) -> None:
    """The reader yields frames or TraceErrors; the estimator over the whole file either
    estimates or stops on a TraceError (strict), and skipping bad lines (``--skip-bad``) only
    ever ends in one for a trace with no frame at all."""

    def use(path: Path) -> None:
        for item in read_jsonl(path):
            assert isinstance(item, FrameLine | TraceError)
            if isinstance(item, FrameLine):
                assert isinstance(item.t_ms, int) and all(isinstance(w, int) for w in item.occupied)
        for network, skip_bad in ((NETWORK, False), (NETWORK, True), (MIXED_RATES, True)):
            try:  # "exact": the fast engine without its memory budget's up-front pool
                estimate_trace(path, network, engine="exact", skip_bad=skip_bad, progress=False)
            except TraceError as exc:
                assert exc.reason and str(exc)
                if skip_bad:
                    assert exc.reason == "empty", exc

    _with_file(data, ".jsonl", use)


def check_avro_trace(data: bytes) -> None:
    def use(path: Path) -> None:
        try:
            for item in read_avro(path):
                assert isinstance(item, FrameLine)
        except TraceError as exc:
            assert str(exc)

    _with_file(data, ".avro", use)


def _avro_containers() -> st.SearchStrategy[bytes]:
    def container(name: str, values: list[dict[str, Any]]) -> bytes:
        out = io.BytesIO()
        fastavro.writer(out, avro.schema(name), values, codec="null")
        return out.getvalue()

    occupancy = st.lists(occupancy_records().map(lambda r: r[0]), min_size=1, max_size=3)
    other = st.lists(avro_values(avro_schema_json(avro.TOPOLOGY_CHANGE)), min_size=1, max_size=2)
    valid = st.one_of(
        st.builds(container, st.just(avro.OCCUPANCY), occupancy),
        st.builds(container, st.just(avro.TOPOLOGY_CHANGE), other),
    )
    return near(valid)


# network.json, truth.json, topology.json -------------------------------------------------------


def _grid_json() -> st.SearchStrategy[dict[str, Any]]:
    dim = st.integers(1, 20)
    return st.fixed_dictionaries(
        {"cols": dim, "rows": dim, "width": st.integers(1, 640), "height": st.integers(1, 480)}
    )


def _network_json() -> st.SearchStrategy[dict[str, Any]]:
    cameras = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True)

    @st.composite
    def one(draw: st.DrawFn) -> dict[str, Any]:
        cams = draw(cameras)
        doc: dict[str, Any] = {
            "grid": draw(_grid_json()),
            "fps": draw(st.integers(1, 30)),
            "cameras": cams,
        }
        if draw(st.booleans()):
            doc["camera_grids"] = {cams[0]: draw(_grid_json())}
        if draw(st.booleans()):
            doc["camera_fps"] = {cams[-1]: draw(st.sampled_from([doc["fps"], doc["fps"] + 1]))}
        return doc

    return one()


def check_network(data: bytes) -> None:
    def use(path: Path) -> None:
        try:
            network = Network.load(path)
        except NetworkError as exc:
            assert str(exc).startswith(str(path))
            return
        assert network.n_cameras >= 1 and network.fps >= 1

    _with_file(data, ".json", use)


_labels = st.builds(
    lambda c, i: f"{c}:{i}", st.sampled_from(["cam0", "cam1", "x"]), st.integers(0, 20)
)
_kinds = st.sampled_from(["overlap", "transit"])


def _truth_json() -> st.SearchStrategy[dict[str, Any]]:
    link = st.fixed_dictionaries(
        {
            "a": st.sampled_from(NETWORK.cameras),
            "b": st.sampled_from(NETWORK.cameras),
            "kind": _kinds,
        }
    )
    return st.fixed_dictionaries(
        {
            "window_overlaps": st.lists(st.lists(_labels, min_size=2, max_size=2), max_size=3),
            "camera_links": st.lists(link, max_size=3),
        }
    )


def _topology_json() -> st.SearchStrategy[dict[str, Any]]:
    from camtopo.evaluation.score import TOPOLOGY_FORMAT

    edge = st.fixed_dictionaries({"a": _labels, "b": _labels})
    link = st.fixed_dictionaries(
        {
            "a": st.sampled_from(NETWORK.cameras),
            "b": st.sampled_from(NETWORK.cameras),
            "kind": _kinds,
        }
    )
    snap = st.fixed_dictionaries(
        {
            "t_s": st.floats(0, 100) | st.integers(0, 100),
            "window_pairs": st.lists(st.lists(_labels, min_size=2, max_size=2), max_size=2),
            "camera_links": st.lists(
                st.lists(st.sampled_from(NETWORK.cameras), min_size=2, max_size=2), max_size=2
            ),
        }
    )
    return st.fixed_dictionaries(
        {
            "format": st.just(TOPOLOGY_FORMAT),
            "observed_s": st.floats(0, 100),
            "window_edges": st.lists(edge, max_size=3),
            "camera_edges": st.lists(link, max_size=3),
            "history": st.lists(snap, max_size=2),
        }
    )


def check_score_inputs(case: tuple[bytes, bytes]) -> None:
    """truth.json and topology.json load or are refused naming the file; what loads scores."""
    topology_data, truth_data = case
    with tempfile.TemporaryDirectory() as tmp:
        topo_path, truth_path = Path(tmp) / "topology.json", Path(tmp) / "truth.json"
        topo_path.write_bytes(topology_data)
        truth_path.write_bytes(truth_data)
        loaded = []
        for load, path in ((load_topology, topo_path), (load_truth, truth_path)):
            try:
                loaded.append(load(path))
            except ScoreInputError as exc:
                assert str(path) in str(exc)
        if len(loaded) == 2:
            score_topology(*loaded)


# RLE blobs read back from Redis ----------------------------------------------------------------


def check_rle(blob: bytes) -> None:
    try:
        row = rle.decode(blob)
    except rle.RLEError as exc:
        assert str(exc)
        return
    assert row.dtype == np.uint8 and np.array_equal(rle.decode(rle.encode(row)), row)


def _rle_blobs() -> st.SearchStrategy[bytes]:
    rows = st.lists(st.sampled_from([0, 0, 0, 1, 255]), max_size=200).map(
        lambda v: rle.encode(np.array(v, np.uint8))
    )
    return near(rows)


def check_rle_round_trip(values: list[int]) -> None:
    row = np.array(values, np.uint8)
    assert np.array_equal(rle.decode(rle.encode(row)), row)
    signed = row.view(np.int8)
    assert np.array_equal(rle.decode(rle.encode(signed), np.int8), signed)


ROW_SHAPE = (NETWORK.n_cameras, NETWORK.n_windows)


def _rows() -> st.SearchStrategy[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    n_c, n_w = ROW_SHAPE

    @st.composite
    def one(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        dt = draw(st.sampled_from([np.uint8, np.uint16]))
        top = int(np.iinfo(dt).max)
        counts = st.sampled_from([0, 0, 0, 1, 2, top])
        o = np.array(draw(st.lists(counts, min_size=n_c, max_size=n_c)), dt)
        state = np.array(draw(st.lists(st.integers(-4, 0), min_size=n_c, max_size=n_c)), np.int8)
        p = np.array(draw(st.lists(counts, min_size=n_w, max_size=n_w)), dt)
        return o, state, p, draw(st.integers(-(2**63), 2**63 - 1))

    return one()


def check_row_blob(blob: bytes) -> None:
    try:
        row = decode_row(blob, *ROW_SHAPE, "k[1]")
    except BlobError as exc:
        assert str(exc).startswith("k[1]")
        return
    assert row.o.size == row.state.size == ROW_SHAPE[0] and row.p.size == ROW_SHAPE[1]


def check_row_round_trip(parts: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> None:
    o, state, p, activity = parts
    row = decode_row(encode_row(o, state, p, activity), *ROW_SHAPE)
    assert row.o.dtype == o.dtype and np.array_equal(row.o, o) and np.array_equal(row.p, p)
    assert np.array_equal(row.state, state) and row.activity == activity


# HTTP query parameters, parsed without Redis ---------------------------------------------------


def _param_strings() -> st.SearchStrategy[str]:
    digits = st.integers(0, 10**25).map(str)
    return st.one_of(
        digits,
        st.builds(lambda a, b: f"{a}-{b}", digits, digits),
        st.builds(
            lambda c, i: f"{c}:{i}",
            st.sampled_from([*NETWORK.cameras, "", "x:y"]),
            digits | st.text(max_size=4),
        ),
        st.text(max_size=30),
        st.text(alphabet="0123456789-:²١１", max_size=30),
        st.sampled_from(["9" * 5000, "1" * 21, f"{2**64}-0", "0-" + "9" * 20]),
    )


def check_http_params(raw: str) -> None:
    from aiohttp.test_utils import make_mocked_request
    from yarl import URL

    from topology_store.service import (
        BadParameter,
        parse_digits,
        parse_stream_id,
        query_int,
        resolve_window,
        window_param,
    )

    def either(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except BadParameter as exc:
            assert exc.name in str(exc)
            return None

    either(lambda: parse_digits("n", raw))
    either(lambda: parse_stream_id("after", raw))
    request = make_mocked_request(
        "GET", str(URL("/api/evidence").with_query({"a": raw, "limit": raw}))
    )
    either(lambda: query_int(request, "limit", 100, 1, 1000))
    ref = either(lambda: window_param(request, "a"))
    if ref is not None:
        try:
            resolve_window(NETWORK, "a", ref)
        except (BadParameter, NetworkError) as exc:  # NetworkError: the unknown camera's 404
            assert str(exc)


TARGETS = [
    Target("avro_decode", _avro_cases(), check_avro_decode),
    Target("avro_round_trip", _avro_records(), check_avro_round_trip),
    Target("processor_record", _processor_cases(), check_processor_record),
    Target("range_block", _range_blocks(), check_range_block),
    Target("jsonl_trace", _trace_lines(), check_jsonl_trace),
    Target("avro_trace", _avro_containers(), check_avro_trace),
    Target("network_json", json_inputs(_network_json()), check_network),
    Target(
        "score_inputs",
        st.tuples(json_inputs(_topology_json()), json_inputs(_truth_json())),
        check_score_inputs,
    ),
    Target("rle_decode", _rle_blobs(), check_rle),
    Target(
        "rle_round_trip",
        st.lists(st.sampled_from([0, 0, 1, 128, 255]), max_size=300),
        check_rle_round_trip,
    ),
    Target("row_blob", near(_rows().map(lambda r: encode_row(*r))), check_row_blob),
    Target("row_round_trip", _rows(), check_row_round_trip),
    Target("http_params", _param_strings(), check_http_params),
]
BY_NAME = {t.name: t for t in TARGETS}


# HTTP: the real app on loopback ----------------------------------------------------------------
ROUTES = [
    "/", "/healthz", "/health", "/metrics", "/openapi.json", "/api/cameras",
    "/api/cameras/{x}/neighbours", "/api/overlaps/{x}/{y}", "/api/evidence", "/api/graph",
    "/api/graph.graphml", "/api/partitions", "/api/changes", "/api/stream", "/api/stream-token",
    "/static/{x}", "/{x}", "/api/{x}",
]  # fmt: skip
QUERY_KEYS = ["a", "b", "after", "limit", "stream_token", "access_token", "x"]


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # percent-encoded: the request line stays valid HTTP, the app sees anything
    headers: dict[str, str]


@st.composite
def http_requests(draw: st.DrawFn, cameras: tuple[str, ...]) -> HttpRequest:
    from urllib.parse import quote, urlencode

    segment = (
        st.sampled_from(list(cameras))
        | _param_strings()
        | st.sampled_from(["..", "%", "viewer.js"])
    )
    path = draw(st.sampled_from(ROUTES))
    while "{" in path:
        path = path.replace("{x}", quote(draw(segment), safe=""), 1).replace("{y}", "{x}", 1)
    window = st.builds(lambda c, i: f"{c}:{i}", st.sampled_from(list(cameras)), st.integers(0, 200))
    query = draw(
        st.dictionaries(st.sampled_from(QUERY_KEYS), window | _param_strings(), max_size=3)
    )
    if query:
        path += "?" + urlencode(query)
    headers = {}
    if draw(st.booleans()):
        value = draw(_param_strings()).encode("utf-8", "surrogateescape").decode("latin-1")
        headers["Last-Event-ID" if draw(st.booleans()) else "Authorization"] = value.replace(
            "\r", ""
        ).replace("\n", "")
    method = draw(st.sampled_from(["GET", "GET", "GET", "POST", "HEAD", "OPTIONS", "DELETE"]))
    return HttpRequest(method, path, headers)


def opens_a_stream(request: HttpRequest) -> bool:
    """A GET of /api/stream that the app would answer with an endless event stream."""
    from urllib.parse import parse_qs, urlsplit

    from topology_store.service import BadParameter, parse_stream_id

    url = urlsplit(request.path)
    if request.method != "GET" or url.path != "/api/stream":
        return False
    raw = request.headers.get("Last-Event-ID") or parse_qs(url.query).get("after", ["0-0"])[0]
    try:
        parse_stream_id("after", raw)
    except BadParameter:
        return False
    return True


def http_check(host: str, port: int) -> Callable[[HttpRequest], None]:
    """The oracle over HTTP: never a 5xx (the store is healthy), and every error is JSON with
    an "error" field."""
    import http.client

    def check(request: HttpRequest) -> None:
        if opens_a_stream(request):
            return
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(request.method, request.path, headers=request.headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status < 500, (response.status, body[:200])
        if any((c < " " and c != "\t") or c == "\x7f" for v in request.headers.values() for c in v):
            # Not HTTP (RFC 9110 field values): aiohttp's parser answers 400, before the app.
            assert response.status == 400, (response.status, body[:200])
            return
        if len(request.path) > 8190 - len(request.method) - 11:
            # A request line over aiohttp's 8190 bytes: its plain-text 400 (docs/security.md).
            assert response.status == 400, (response.status, body[:200])
            return
        if response.status >= 400 and request.method != "HEAD":
            assert response.getheader("Content-Type", "").startswith("application/json"), body[:200]
            assert "error" in json.loads(body)

    return check


@contextmanager
def serving(redis_url: str) -> Iterator[Target]:
    """The HTTP target: a store on ``redis_url`` filled from a small estimator run, and the
    query app serving it on a loopback port from a thread of this process."""
    from aiohttp import web

    from camtopo.settings import Settings
    from topology_store import synthetic
    from topology_store.service import create_app
    from topology_store.store import TopologyStore

    net = synthetic.make_network(12, seed=2)
    app_settings = Settings()
    prefix = f"fuzz{uuid.uuid4().hex[:6]}"
    store = TopologyStore(redis_url, net.network, app_settings, prefix=prefix)
    store.checkpoint(synthetic.run(net, app_settings, 3000), 0, {0: 1})
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(app_settings, redis_url=redis_url, prefix=prefix))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port = runner.addresses[0][1]
        check = http_check("127.0.0.1", port)
        yield Target("http", http_requests(net.network.cameras), check, needs="redis")
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.redis.close()
