"""Row blobs: the engine's rows survive the blob codec; the fast encoder writes the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.blobs import BlobError, decode_row, encode_row, encode_rows


@pytest.fixture(scope="module")
def counted() -> synthetic.TopologyEstimator:
    net = synthetic.make_network(8, seed=3)
    return synthetic.run(net, Settings(), 800, engine="fast")


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
