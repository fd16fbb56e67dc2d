"""Checks on one ``occupancy`` record before any of its frames is counted (pure, no I/O).

A record is accepted whole or refused whole: a refused record goes to the dead-letter topic
with its original bytes and one of the :data:`REASONS`, so nothing is lost silently and a
partly bad record never leaves half its frames counted.

Time checks compare the frames' capture times with the record's own Kafka timestamp (the
producer's send time), so a replay decides the same way; and both with the processor's wall
clock, for the future only: a record or frame stamped ahead of real time (a skewed or forged
producer) would otherwise hold ranges open for frames that do not exist yet, or claim the
(camera, tick) of a real frame to come. Such a record moves no clock (it is refused before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from camtopo.core.grid import Network, NetworkError
from camtopo.core.ticks import tick_of
from camtopo.formats.avro import OCCUPANCY, Decoder, UndecodableRecord, UnknownSchemaVersion, decode

if TYPE_CHECKING:
    from camtopo.settings import Settings

REASONS = (
    "undecodable",  # not a framed Avro record, or a corrupt body
    "unknown_schema",  # framed with a schema id this build (or the registry) does not know
    "unknown_camera",  # camera id not in network.json
    "grid_mismatch",  # the record's grid is not the camera's grid in network.json
    "window_outside_grid",  # an occupied window index outside the camera's grid
    "bad_windows",  # occupied windows not sorted and unique
    "ahead_of_clock",  # record or frame stamped ahead of the processor's wall clock
    "future_timestamp",  # a frame stamped too long after its record was sent
    "past_timestamp",  # a frame captured too long before the record was sent
    "duplicate",  # a frame for a (camera, tick) already received
    "camera_removed",  # the camera registry removed the camera (processors/registry_sync.py)
    "camera_inactive",  # the camera's slot is reserved in the registry, not yet added
)


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # one of REASONS
    detail: str  # what was wrong, and where


@dataclass(frozen=True)
class ValidRecord:
    """Frames with data of one camera: ``ticks`` int64 (n,), ``windows`` n int64 arrays."""

    camera: int
    ticks: np.ndarray
    windows: list[np.ndarray]
    t_ms: np.ndarray  # int64 (n,) capture times, for the detection delay
    # Highest tick the record speaks for, frames of any status (empty and MISSING frames say
    # "nothing more for this tick" too): the camera's progress, for closing ranges early.
    through: int | None = None


@dataclass(frozen=True)
class Limits:
    tick_ms: float
    max_future_ms: float  # frame after its record's send time
    max_age_ms: float  # frame before its record's send time
    max_lead_ms: float  # record or frame after the processor's wall clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.grid.tick_ms,
            settings.processor.max_future_seconds * 1000.0,
            settings.processor.max_frame_age_seconds * 1000.0,
            settings.processor.max_clock_lead_seconds * 1000.0,
        )


def duplicate(network: Network, record: ValidRecord) -> DeadLetter:
    """The dead letter of a record repeating a (camera, tick) already received."""
    return DeadLetter(
        "duplicate",
        f"camera {network.cameras[record.camera]!r} sent a frame for a tick it already sent "
        f"(ticks {record.ticks.min()}..{record.ticks.max()})",
    )


def validate(
    data: bytes | None,
    record_ms: int,
    wall_ms: float,
    network: Network,
    limits: Limits,
    decoder: Decoder | None = None,
) -> ValidRecord | DeadLetter:
    """Decode and check one record; ``record_ms`` is its Kafka timestamp. ``decoder`` is the
    registry-mode reader (its only I/O: an id not seen before is looked up once); None reads
    file mode's fixed ids."""
    try:
        record = decoder.decode(OCCUPANCY, data) if decoder else decode(OCCUPANCY, data)
    except UnknownSchemaVersion as exc:
        return DeadLetter("unknown_schema", str(exc))
    except UndecodableRecord as exc:
        return DeadLetter("undecodable", str(exc))
    camera_id = record["camera"]
    try:
        camera = network.camera_index(camera_id)
    except NetworkError as exc:
        return DeadLetter("unknown_camera", str(exc))
    grid = network.grids[camera]
    g = record["grid"]
    if (g["cols"], g["rows"]) != (grid.cols, grid.rows):
        return DeadLetter(
            "grid_mismatch",
            f"camera {camera_id!r} sent a {g['cols']}x{g['rows']} grid; network.json has "
            f"{grid.cols}x{grid.rows}",
        )
    if record_ms > wall_ms + limits.max_lead_ms:
        return DeadLetter(
            "ahead_of_clock",
            f"record of {camera_id!r} is stamped {(record_ms - wall_ms) / 1000:.1f} s ahead of "
            "the processor's wall clock",
        )
    ticks: list[int] = []
    windows: list[np.ndarray] = []
    t_ms: list[int] = []
    n_windows = grid.n_windows
    through: int | None = None
    for frame in record["frames"]:
        t = frame["t_ms"]
        if t <= min(record_ms + limits.max_future_ms, wall_ms + limits.max_lead_ms):
            through = max(tick_of(t, limits.tick_ms), -1 if through is None else through)
        if frame["status"] != "OK":
            continue  # MISSING / ERROR / END: no data for this tick, which is not "empty"
        where = f"camera {camera_id!r} frame seq {frame['seq']} (t_ms {t})"
        if t > record_ms + limits.max_future_ms:
            return DeadLetter(
                "future_timestamp",
                f"{where} is {(t - record_ms) / 1000:.1f} s after its record was sent",
            )
        if t > wall_ms + limits.max_lead_ms:
            return DeadLetter(
                "ahead_of_clock",
                f"{where} is stamped {(t - wall_ms) / 1000:.1f} s ahead of the processor's "
                "wall clock",
            )
        if t < record_ms - limits.max_age_ms:
            return DeadLetter(
                "past_timestamp",
                f"{where} was captured {(record_ms - t) / 1000:.1f} s before its record was sent",
            )
        occ = frame["occupied"]
        if occ and (min(occ) < 0 or max(occ) >= n_windows):
            bad = next(w for w in occ if w < 0 or w >= n_windows)
            return DeadLetter(
                "window_outside_grid",
                f"{where}: window {bad} is outside the {n_windows}-window grid",
            )
        arr = np.asarray(occ, dtype=np.int64)
        if arr.size > 1 and np.any(np.diff(arr) <= 0):
            return DeadLetter("bad_windows", f"{where}: occupied windows not sorted and unique")
        ticks.append(tick_of(t, limits.tick_ms))
        windows.append(arr)
        t_ms.append(t)
    return ValidRecord(
        camera,
        np.asarray(ticks, dtype=np.int64),
        windows,
        np.asarray(t_ms, dtype=np.int64),
        through,
    )
