"""Simulated occupancy as the producers send it: framed Avro records, one per camera per batch.

Used by the equivalence and recovery tests and by ``benchmarks/streaming.py`` to feed Kafka
with what a network of cameras would send, with a known send time for every record (which
becomes its Kafka timestamp), so lateness is decided by the trace, not by the machine's speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from camtopo.core.grid import Network
from camtopo.formats.avro import OCCUPANCY, encode
from camtopo.simulation.engine import Simulation, Tick


@dataclass(frozen=True)
class Record:
    camera: str
    value: bytes
    send_ms: int  # Kafka timestamp: when the camera sends it (after its last frame)
    frames: tuple[tuple[int, tuple[int, ...]], ...]  # (t_ms, occupied) of frames with data


def encode_frames(
    network: Network, camera: int, frames: list[tuple[int, int, list[int]]], producer: str = "sim"
) -> bytes:
    """One record of ``frames`` = [(t_ms, seq, occupied)], all status OK."""
    grid = network.grids[camera]
    return encode(
        OCCUPANCY,
        {
            "camera": network.cameras[camera],
            "grid": grid.to_json(),
            "frames": [
                {"t_ms": t, "seq": seq, "status": "OK", "occupied": occ, "detail": None}
                for t, seq, occ in frames
            ],
            "producer": producer,
        },
    )


def tick_frames(tick: Tick) -> dict[int, list[int]]:
    """camera -> occupied local windows, for every available camera of a simulated tick."""
    out: dict[int, list[int]] = {int(c): [] for c in np.flatnonzero(tick.available)}
    for c, w in zip(tick.cam.tolist(), tick.window.tolist(), strict=True):
        if c in out:
            out[c].append(w)
    return out


def simulated_records(
    sim: Simulation,
    n_ticks: int,
    frames_per_record: int = 5,
    send_delay_ms: int = 50,
    time_offset_ms: int = 0,
) -> Iterator[Record]:
    """Records in send order: each camera sends its last ``frames_per_record`` frames together.

    Capture times are the simulation's (camera clocks, skew included) + ``time_offset_ms``,
    with the skew clamped under half a tick so that a camera never sends two frames that round
    to the same tick (that would be a duplicate); ``time_offset_ms`` is rounded to whole ticks.
    A record is sent ``send_delay_ms`` after the batch's last tick.
    """
    network = sim.network
    held: dict[int, list[tuple[int, int, list[int]]]] = {}
    tick_ms = 1000.0 / sim.fps
    time_offset_ms = int(round(time_offset_ms / tick_ms) * tick_ms)
    half = int(tick_ms * 0.45)
    for tick in sim.ticks(n_ticks):
        nominal = sim.start_ms + tick.index * tick_ms
        t_ms = np.rint(nominal + np.clip(tick.t_ms - nominal, -half, half)).astype(np.int64)
        t_ms += time_offset_ms
        for cam, occ in tick_frames(tick).items():
            held.setdefault(cam, []).append((int(t_ms[cam]), tick.index, sorted(occ)))
        if (tick.index + 1) % frames_per_record == 0 or tick.index == n_ticks - 1:
            send = int(sim.start_ms + time_offset_ms + tick.index * tick_ms + send_delay_ms)
            for cam in sorted(held):
                frames = held[cam]
                yield Record(
                    network.cameras[cam],
                    encode_frames(network, cam, frames),
                    send,
                    tuple((t, tuple(o)) for t, _, o in frames),
                )
            held.clear()
