"""The RLE codec for count rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from camtopo.core import rle


@given(arrays(np.uint8, st.integers(0, 3000), elements=st.sampled_from([0, 0, 0, 0, 1, 7, 255])))
def test_round_trip(row):
    assert np.array_equal(rle.decode(rle.encode(row)), row)


@given(arrays(np.int8, st.integers(0, 500), elements=st.integers(-4, 0)))
def test_round_trip_of_signed_states(row):
    assert np.array_equal(rle.decode(rle.encode(row), np.int8), row)


def test_sparse_rows_compress():
    row = np.zeros(108_000, dtype=np.uint8)
    row[[5, 6, 7, 50_000, 107_999]] = [3, 200, 1, 9, 255]
    assert len(rle.encode(row)) < 30


@pytest.mark.parametrize("blob", [b"", b"\x05\x00\x09\x01", b"\x80", b"\x03\x01\x05abcde"])
def test_corrupt_blobs_raise(blob):
    with pytest.raises(rle.RLEError):
        rle.decode(blob)
