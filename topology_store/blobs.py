"""One count row as a Redis value: the engine's row (O, segment states, P, activity) as RLE.

Layout (little-endian): ``version u8 | count bytes u8 | activity i64 | len(O blob) u32 |
len(state blob) u32`` then the three :mod:`camtopo.core.rle` blobs back to back (O, state, P).
Counts are stored in the engine's dtype (``count_limit`` ≤ 256 → uint8, else uint16): O and P
are RLE-coded over their little-endian bytes laid out in planes (every low byte, then every high
byte), so one byte codec serves both widths and mostly-small 16-bit counts cost ~8-bit size.
Rows are mostly zeros (paper section 5.1, strategy 2), so a row of a 1,000-camera network (108,000 P
counts) is a few hundred bytes. Version 1 blobs (no width byte, uint8 counts) are still read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from camtopo.core import rle

VERSION = 2
_HEADER = struct.Struct("<BBqII")
_HEADER_V1 = struct.Struct("<BqII")
_WIDTHS: dict[int, np.dtype[Any]] = {1: np.dtype("<u1"), 2: np.dtype("<u2")}


class BlobError(ValueError):
    """A stored row blob is corrupt or was written for a different network."""


@dataclass(frozen=True)
class Row:
    """Row i of the fast engine: O (C,) and P (W,) in the stored count dtype (uint8 or
    uint16), state int8 (C,), activity."""

    o: np.ndarray
    state: np.ndarray
    p: np.ndarray
    activity: int


def _count_dtype(o: np.ndarray, p: np.ndarray) -> np.dtype:
    """The stored width: the engine's (uint8/uint16); anything else is refused, not truncated."""
    kind = np.result_type(o.dtype, p.dtype)
    for dt in _WIDTHS.values():
        if kind == dt.newbyteorder("="):
            return dt
    raise BlobError(f"row counts must be uint8 or uint16, got O {o.dtype} and P {p.dtype}")


def _count_bytes(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Counts as bytes, one plane per byte (all low bytes, then all high bytes): the high
    plane of mostly small counts is one long zero run, so RLE stays as compact as 8-bit."""
    raw = np.ascontiguousarray(a, dtype=dt).view(np.uint8)
    if dt.itemsize == 1:
        return raw
    return np.ascontiguousarray(raw.reshape(-1, dt.itemsize).T).reshape(-1)


def encode_row(o: np.ndarray, state: np.ndarray, p: np.ndarray, activity: int) -> bytes:
    """Encode an exported row (:meth:`FastExclusion.export_row`) as one blob, in its dtype."""
    o, p = np.asarray(o), np.asarray(p)
    dt = _count_dtype(o, p)
    o_blob = rle.encode(_count_bytes(o, dt))
    s_blob = rle.encode(np.asarray(state, dtype=np.int8))
    p_blob = rle.encode(_count_bytes(p, dt))
    header = _HEADER.pack(VERSION, dt.itemsize, int(activity), len(o_blob), len(s_blob))
    return header + o_blob + s_blob + p_blob


def decode_row(blob: bytes, n_cameras: int, n_windows: int, where: str = "row") -> Row:
    """Decode and check a blob against the network's shape; ``where`` names it in errors."""
    if len(blob) < _HEADER_V1.size:
        raise BlobError(f"{where}: {len(blob)} bytes is too short for a row blob")
    version = blob[0]
    if version == 1:
        _, activity, n_o, n_s = _HEADER_V1.unpack_from(blob)
        width, a = 1, _HEADER_V1.size
    elif version == VERSION:
        if len(blob) < _HEADER.size:
            raise BlobError(f"{where}: {len(blob)} bytes is too short for a row blob")
        _, width, activity, n_o, n_s = _HEADER.unpack_from(blob)
        a = _HEADER.size
    else:
        raise BlobError(f"{where}: row blob version {version}, this build reads 1 and {VERSION}")
    dt = _WIDTHS.get(width)
    if dt is None:
        raise BlobError(f"{where}: counts of {width} bytes; only 1 (uint8) and 2 (uint16) exist")
    b, c = a + n_o, a + n_o + n_s
    if c > len(blob):
        raise BlobError(f"{where}: section lengths {n_o}+{n_s} overrun the {len(blob)}-byte blob")
    raw = np.frombuffer(blob, dtype=np.uint8)
    network = f"the network ({n_cameras} cameras, {n_windows} windows)"
    o = _counts(_decode(raw[a:b], n_cameras * width, where, "O", network), dt, where, "O")
    state = _decode(raw[b:c], n_cameras, where, "state", network).view(np.int8)
    p = _counts(_decode(raw[c:], n_windows * width, where, "P", network), dt, where, "P")
    return Row(o, state, p, int(activity))


# --- fast path: many rows straight from the engine's arrays -------------------------------------
# A checkpoint at 1,000 cameras writes thousands of rows, each with ~10^5 P bytes; the generic
# path (export_row + rle.encode's Python loop over runs) took ~15 ms a row. These compiled
# versions write the same bytes (tests compare them with encode_row) about 50x faster.


@nb.njit(cache=True, nogil=True)
def _varint_into(n: int, out: np.ndarray, pos: int) -> int:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out[pos] = byte | 0x80
            pos += 1
        else:
            out[pos] = byte
            return pos + 1


@nb.njit(cache=True, nogil=True)
def _rle_into(raw: np.ndarray, out: np.ndarray, pos: int) -> int:
    """camtopo.core.rle's format, written into ``out`` from ``pos``; returns the end."""
    n = raw.size
    pos = _varint_into(n, out, pos)
    i = 0
    last = 0
    while i < n:
        if raw[i] == 0:
            i += 1
            continue
        s = i
        while i < n and raw[i] != 0:
            i += 1
        pos = _varint_into(s - last, out, pos)
        pos = _varint_into(i - s, out, pos)
        out[pos : pos + i - s] = raw[s:i]
        pos += i - s
        last = i
    return pos


def _counts(raw: np.ndarray, dt: np.dtype, where: str, what: str) -> np.ndarray:
    if raw.size % dt.itemsize:
        raise BlobError(f"{where}: {what} section: {raw.size} bytes is not a whole {dt} array")
    planes = raw.reshape(dt.itemsize, -1)  # see _count_bytes
    return np.ascontiguousarray(planes.T).view(dt).reshape(-1).astype(dt.newbyteorder("="))


def _rle_capacity(n: int) -> int:
    # Worst case: alternating bytes, each run costing 2 one-byte varints + 1 byte.
    return 3 * n + 16


@nb.njit(cache=True, nogil=True)
def _rle_sparse_into(
    slot_row: np.ndarray,
    pool: np.ndarray,
    offsets: np.ndarray,
    seg_len: np.ndarray,
    n_w: int,
    size: int,
    tmp: np.ndarray,
    out: np.ndarray,
    pos: int,
) -> int:
    """The bytes ``_rle_into(_count_bytes(P row))`` writes, read from the row's live segments
    only (a 1,000-camera P row is 10^5 counts, mostly in no segment at all)."""
    top = pool.shape[1] - 1  # the engine keeps each segment's largest P there
    pos = _varint_into(n_w * size, out, pos)
    last = 0  # end of the previous run written
    run_start = 0
    run_len = 0
    for b in range(size):  # byte planes: every low byte, then every high byte
        shift = 8 * b
        for c in range(slot_row.size):
            s = slot_row[c]
            if s < 0 or (np.int64(pool[s, top]) >> shift) == 0:
                continue  # no segment, or this byte plane of it is all zero (most high bytes)
            base = b * n_w + offsets[c]
            for k in range(seg_len[c]):
                v = (np.int64(pool[s, k]) >> shift) & 0xFF
                if v == 0:
                    continue
                at = base + k
                if run_len and at == run_start + run_len:
                    tmp[run_len] = v
                    run_len += 1
                    continue
                if run_len:
                    pos = _varint_into(run_start - last, out, pos)
                    pos = _varint_into(run_len, out, pos)
                    out[pos : pos + run_len] = tmp[:run_len]
                    pos += run_len
                    last = run_start + run_len
                run_start = at
                tmp[0] = v
                run_len = 1
    if run_len:
        pos = _varint_into(run_start - last, out, pos)
        pos = _varint_into(run_len, out, pos)
        out[pos : pos + run_len] = tmp[:run_len]
        pos += run_len
    return pos


def encode_rows(counts: Any, rows: np.ndarray) -> list[bytes]:
    """Blobs of ``rows`` of a FastExclusion; identical to ``encode_row(*export_row(i))``."""
    network = counts.network
    n_c, n_w = network.n_cameras, network.n_windows
    dt = _count_dtype(counts.O, counts.pool)
    size = dt.itemsize
    buf = np.empty(
        _HEADER.size + _rle_capacity(n_c * size) + _rle_capacity(n_c) + _rle_capacity(n_w * size),
        dtype=np.uint8,
    )
    header = buf.data  # the array's memory, as a buffer struct packs into
    tmp = np.empty(n_w * size, dtype=np.uint8)
    offsets = np.ascontiguousarray(network.offsets[:-1], dtype=np.int64)
    seg_len = np.ascontiguousarray(counts.seg_len, dtype=np.int64)
    out: list[bytes] = []
    for i in np.asarray(rows, dtype=np.int64).tolist():
        slot = counts.slot[i]
        state = np.clip(slot, -4, 0).astype(np.int8)  # live segments read as 0, as export_row
        pos = _rle_into(_count_bytes(counts.O[i], dt), buf, _HEADER.size)
        n_o = pos - _HEADER.size
        pos2 = _rle_into(state.view(np.uint8), buf, pos)
        end = _rle_sparse_into(slot, counts.pool, offsets, seg_len, n_w, size, tmp, buf, pos2)
        _HEADER.pack_into(header, 0, VERSION, size, int(counts.activity[i]), n_o, pos2 - pos)
        out.append(buf[:end].tobytes())
    return out


@nb.njit(cache=True, nogil=True)
def _rle_decode(raw: np.ndarray, expected: int) -> tuple[np.ndarray, int]:
    """camtopo.core.rle.decode compiled (a dense 10^5-byte row took ~0.5 s in Python).
    Returns (row, status): 0 ok, 1 truncated varint, 2 run overflows row or blob, 3 the
    declared length is not ``expected`` (checked before allocating: a corrupt length of
    2^60 raised MemoryError, a negative one ValueError)."""
    n = 0
    shift = 0
    pos = 0
    while True:
        if pos >= raw.size or shift > 63:
            return np.zeros(0, np.uint8), 1
        byte = raw[pos]
        pos += 1
        n |= (int(byte) & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    if n != expected:
        return np.zeros(0, np.uint8), 3
    row = np.zeros(n, np.uint8)
    at = 0
    while pos < raw.size:
        vals = np.zeros(2, np.int64)
        for k in range(2):
            shift = 0
            while True:
                if pos >= raw.size or shift > 63:
                    return row, 1
                byte = raw[pos]
                pos += 1
                vals[k] |= (np.int64(byte) & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
        at += vals[0]
        count = vals[1]
        if at + count > n or pos + count > raw.size:
            return row, 2
        row[at : at + count] = raw[pos : pos + count]
        at += count
        pos += count
    return row, 0


def _decode(raw: np.ndarray, expected: int, where: str, what: str, network: str) -> np.ndarray:
    row, status = _rle_decode(np.ascontiguousarray(raw), expected)
    if status == 3:
        raise BlobError(f"{where}: {what} section does not hold the {expected} bytes of {network}")
    if status == 1:
        raise BlobError(f"{where}: {what} section: truncated varint")
    if status == 2:
        raise BlobError(f"{where}: {what} section: a run overflows the row or the blob")
    return row
