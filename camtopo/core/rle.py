"""Run-length codec for count rows, which are mostly zeros (paper section 5.1, strategy 2).

Format: varint(length), then repeated groups ``varint(zero run) varint(literal count)
literal bytes`` until the row is complete. Rows of uint8 (counts) and int8 (segment states)
both go through it as raw bytes.
"""

from __future__ import annotations

import numpy as np

# A blob's declared length is allocated before its runs are read, and zeros cost nothing in
# the blob: without a bound, ten bytes declaring 2^60 zeros raised MemoryError. Far above any
# row (a 1,000-camera P row of uint16 counts is 216,000 bytes).
MAX_SIZE = 1 << 26


class RLEError(ValueError):
    """A blob is not a valid RLE row."""


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise RLEError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise RLEError("varint too long")


def encode(row: np.ndarray) -> bytes:
    """Encode a 1-D array of bytes (uint8 or int8)."""
    raw = np.ascontiguousarray(row).view(np.uint8).ravel()
    out = bytearray()
    _varint(raw.size, out)
    nz = raw != 0
    if raw.size:
        # Boundaries of runs of non-zero bytes.
        edges = np.flatnonzero(np.diff(np.concatenate(([0], nz.view(np.int8), [0]))))
        starts, ends = edges[0::2], edges[1::2]
        pos = 0
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            _varint(s - pos, out)
            _varint(e - s, out)
            out += raw[s:e].tobytes()
            pos = e
    return bytes(out)


def decode(blob: bytes, dtype: type = np.uint8, max_size: int = MAX_SIZE) -> np.ndarray:
    """Decode a blob written by :func:`encode` into a new array of ``dtype`` (1 byte); a blob
    declaring more than ``max_size`` bytes is refused before anything is allocated."""
    n, pos = _read_varint(blob, 0)
    if n > max_size:
        raise RLEError(f"declared length {n} is more than {max_size} bytes")
    row = np.zeros(n, dtype=np.uint8)
    at = 0
    while pos < len(blob):
        zeros, pos = _read_varint(blob, pos)
        count, pos = _read_varint(blob, pos)
        at += zeros
        if at + count > n or pos + count > len(blob):
            raise RLEError(f"run overflows the row ({at + count} > {n}) or the blob")
        row[at : at + count] = np.frombuffer(blob, dtype=np.uint8, count=count, offset=pos)
        at += count
        pos += count
    return row.view(dtype)
