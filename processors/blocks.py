"""RangeBlock records on the ``occupancy-ranges`` topic: Avro with packed numpy arrays.

A block of 1,000 cameras' range carries ~20,000 frames; one Avro record per frame would cost
more to decode than to count, so the arrays travel as little-endian bytes fields.
"""

from __future__ import annotations

import numpy as np

from camtopo.core.partitioned import RangeBlock
from camtopo.formats.avro import RANGE_BLOCK, UndecodableRecord, decode, encode


def encode_block(block: RangeBlock, n_cameras: int) -> bytes:
    counts = np.fromiter((w.size for w in block.windows), dtype="<u2", count=len(block.windows))
    flat = np.concatenate(block.windows) if block.windows else np.zeros(0)
    return encode(
        RANGE_BLOCK,
        {
            "partition": block.partition,
            "first_range": block.first_range,
            "range_id": block.range_id,
            "n_cameras": n_cameras,
            "cameras": block.cameras.astype("<i4").tobytes(),
            "ticks": block.ticks.astype("<i8").tobytes(),
            "counts": counts.tobytes(),
            "windows": flat.astype("<u2").tobytes(),
        },
    )


def decode_block(data: bytes | None, n_cameras: int) -> RangeBlock:
    """Raises :class:`UndecodableRecord` saying what is wrong."""
    rec = decode(RANGE_BLOCK, data)
    if rec["n_cameras"] != n_cameras:
        raise UndecodableRecord(
            f"block written for {rec['n_cameras']} cameras, this worker has {n_cameras}"
        )
    try:
        cameras = np.frombuffer(rec["cameras"], dtype="<i4").astype(np.int64)
        ticks = np.frombuffer(rec["ticks"], dtype="<i8").astype(np.int64)
        counts = np.frombuffer(rec["counts"], dtype="<u2").astype(np.int64)
        flat = np.frombuffer(rec["windows"], dtype="<u2").astype(np.int64)
    except ValueError as exc:
        raise UndecodableRecord(f"packed arrays of a wrong size: {exc}") from exc
    if not (cameras.size == ticks.size == counts.size) or counts.sum() != flat.size:
        raise UndecodableRecord("packed arrays disagree in length")
    if cameras.size and (cameras.min() < 0 or cameras.max() >= n_cameras):
        raise UndecodableRecord("camera index outside the network")
    windows = np.split(flat, np.cumsum(counts)[:-1]) if counts.size else []
    try:
        return RangeBlock(
            rec["partition"], rec["first_range"], rec["range_id"], cameras, ticks, windows
        )
    except ValueError as exc:
        raise UndecodableRecord(str(exc)) from exc
