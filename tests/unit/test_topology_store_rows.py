"""Row blobs: the engine's rows survive the blob codec; the fast encoder writes the same bytes."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.blobs import BlobError, decode_row, encode_row, encode_rows


@pytest.fixture(scope="module")
def counted() -> synthetic.TopologyEstimator:
    net = synthetic.make_network(8, seed=3)
    # No activity gate: every occupied window gets a row, so many rows are exercised.
    return synthetic.run(net, Settings(algorithm={"activity_gate": 0}), 800, engine="fast")


def test_every_row_round_trips_through_its_blob(counted) -> None:
    counts, net = counted.counts, counted.network
    rows = np.flatnonzero(counts.O.any(axis=1))
    assert rows.size > 20
    for i in rows.tolist():
        o, state, p, activity = counts.export_row(i)
        row = decode_row(encode_row(o, state, p, activity), net.n_cameras, net.n_windows)
        assert np.array_equal(row.o, o) and np.array_equal(row.state, state)
        assert np.array_equal(row.p, p) and row.activity == activity


def test_fast_encoder_writes_the_same_bytes_as_the_generic_one(counted) -> None:
    counts = counted.counts
    rows = np.arange(counted.network.n_windows)  # includes empty and pruned rows
    fast = encode_rows(counts, rows)
    assert fast == [encode_row(*counts.export_row(i)) for i in rows.tolist()]


@functools.cache
def busy_run(count_limit: int) -> synthetic.TopologyEstimator:
    """Dense enough that 16-bit counts pass 255 (and 8-bit ones reach the paper's halving)."""
    net = synthetic.make_network(8, seed=3)
    return synthetic.run(
        net, Settings(algorithm={"count_limit": count_limit}), 3000, rate=0.1, engine="fast"
    )


@pytest.fixture(scope="module", params=[4096, 256], ids=["uint16", "uint8-paper"])
def busy(request: pytest.FixtureRequest) -> synthetic.TopologyEstimator:
    return busy_run(request.param)


def test_counts_keep_the_engines_width_through_blobs(busy) -> None:
    counts, net = busy.counts, busy.network
    wide = counts.limit > 256
    assert counts.O.dtype == (np.uint16 if wide else np.uint8)
    # The 16-bit run must hold counts a byte cannot (what came back wrong from Redis before).
    assert (counts.O.max() > 255) if wide else (counts.O.max() >= 128)
    if wide:  # ... and P too: the encoder skips a segment's high bytes only when all zero
        assert counts.pool[:, :-1].max() > 255
    rows = np.arange(net.n_windows)
    fast = encode_rows(counts, rows)
    assert fast == [encode_row(*counts.export_row(i)) for i in rows.tolist()]
    for i, blob in zip(rows.tolist(), fast, strict=True):
        o, state, p, activity = counts.export_row(i)
        row = decode_row(blob, net.n_cameras, net.n_windows)
        assert row.o.dtype == o.dtype and row.p.dtype == p.dtype
        assert np.array_equal(row.o, o) and np.array_equal(row.p, p)
        assert np.array_equal(row.state, state) and row.activity == activity


def test_version_1_blobs_read_as_uint8() -> None:
    import struct

    from camtopo.core import rle

    o, p = np.array([0, 7, 255, 0], np.uint8), np.arange(40, dtype=np.uint8)
    parts = [rle.encode(o), rle.encode(np.zeros(4, np.int8)), rle.encode(p)]
    blob = struct.pack("<BqII", 1, 9, len(parts[0]), len(parts[1])) + b"".join(parts)
    row = decode_row(blob, 4, 40)
    assert row.o.dtype == np.uint8 and np.array_equal(row.o, o) and np.array_equal(row.p, p)
    assert row.activity == 9


def test_counts_wider_than_a_blob_can_hold_are_refused() -> None:
    with pytest.raises(BlobError, match="uint8 or uint16"):
        encode_row(np.zeros(4, np.uint32), np.zeros(4, np.int8), np.zeros(40, np.uint32), 0)


def test_blob_of_another_network_shape_is_refused_with_where() -> None:
    blob = encode_row(np.zeros(4, np.uint8), np.full(4, -1, np.int8), np.zeros(40, np.uint8), 0)
    with pytest.raises(BlobError, match=r"k\[7\].*5 cameras"):
        decode_row(blob, 5, 40, "k[7]")


@pytest.mark.parametrize("cut", [3, 15])
def test_truncated_blob_is_refused(cut: int) -> None:
    p = np.arange(50, dtype=np.uint8)
    blob = encode_row(np.ones(4, np.uint8), np.zeros(4, np.int8), p, 3)
    with pytest.raises(BlobError):
        decode_row(blob[:cut], 4, 50)


def test_a_store_of_wider_counts_is_refused_not_wrapped() -> None:
    from topology_store.rows import import_row as _import_row

    busy = busy_run(4096)
    net = busy.network
    i = int(np.argmax(busy.counts.O.max(axis=1)))
    row = decode_row(encode_rows(busy.counts, np.array([i]))[0], net.n_cameras, net.n_windows)
    assert row.o.max() > 255
    narrow = synthetic.run(
        synthetic.make_network(8, seed=3),
        Settings(algorithm={"count_limit": 256}),
        10,
        engine="fast",
    )
    with pytest.raises(BlobError, match=r"rows\[7\].*uint16.*count_limit 256"):
        _import_row(narrow.counts, i, row, "rows[7]")
    wide = synthetic.run(synthetic.make_network(8, seed=3), Settings(), 10, engine="fast")
    _import_row(wide.counts, i, row, "rows[7]")
    assert np.array_equal(wide.counts.export_row(i)[0], row.o)
