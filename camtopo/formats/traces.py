"""Reading occupancy traces: the contract's JSON Lines and Avro container files of our schema.

Each reader yields :class:`FrameLine` s with where they came from, so every error can name its
file and line (or record). Problems are raised as :class:`TraceError`; whether they stop the
run or are counted and skipped is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import fastavro
import orjson

from camtopo.core.appearance import HUE_BINS
from camtopo.formats.avro import OCCUPANCY, schema


class TraceError(ValueError):
    """A malformed or inconsistent line of a trace; ``reason`` is a short category."""

    def __init__(self, where: str, reason: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class Blob:
    """What a camera says a blob looks like (``shared/contracts/appearance.md``)."""

    window: int  # the window of the blob's lowest visible extent
    hue: tuple[float, ...]  # 8-bin hue histogram, sum 1 (all 0: nothing saturated)
    value: float  # mean brightness in [0, 1]


@dataclass(frozen=True)
class FrameLine:
    camera: str
    t_ms: int
    occupied: list[int]
    where: str  # "file:line" or "file#record.frame"
    grid: tuple[int, int] | None = None  # (cols, rows) an Avro record says it was cut with
    blobs: tuple[Blob, ...] = ()  # optional appearance of the blobs


def _whole(value: object) -> int | None:
    """An integer, or None; ``1003.0`` counts, as JSON Schema's "integer" counts it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _windows(value: object) -> list[int] | None:
    if not isinstance(value, list):
        return None
    windows = [_whole(v) for v in value]
    return None if None in windows else cast(list[int], windows)


def _frame(obj: object, where: str) -> FrameLine | TraceError:
    """One line's object as a frame; the common, well-formed line takes the fast path."""
    if type(obj) is dict:
        camera, t_ms, windows = obj.get("camera"), obj.get("t_ms"), obj.get("occupied")
        if (
            type(camera) is str
            and type(t_ms) is int
            and type(windows) is list
            and all(type(w) is int for w in windows)
            and len(set(windows)) == len(windows)
        ):
            if "blobs" not in obj:
                return FrameLine(camera, t_ms, sorted(windows), where)
            blobs = _blobs(obj["blobs"], windows, where)
            if isinstance(blobs, TraceError):
                return blobs
            return FrameLine(camera, t_ms, sorted(windows), where, blobs=blobs)
    return _checked_frame(obj, where)


def _blobs(value: object, occupied: list[int], where: str) -> tuple[Blob, ...] | TraceError:
    """The optional ``blobs`` key checked blob by blob: the error names the blob and field."""
    if not isinstance(value, list):
        return TraceError(where, "malformed", f"'blobs' must be a list, got {_shown(value)}")
    windows = set(occupied)
    out = []
    for n, blob in enumerate(value):
        at = f"'blobs[{n}]'"
        if not isinstance(blob, dict) or any(k not in blob for k in ("window", "hue", "value")):
            return TraceError(where, "malformed", f"{at} must be an object with 'window', "
                              f"'hue' and 'value', got {_shown(blob)}")  # fmt: skip
        window, hue, bright = _whole(blob["window"]), blob["hue"], blob["value"]
        if window not in windows:
            return TraceError(
                where, "malformed", f"{at}.window {_shown(blob['window'])} is not occupied"
            )
        if (
            not isinstance(hue, list)
            or len(hue) != HUE_BINS
            or not all(isinstance(h, int | float) and not isinstance(h, bool) and h >= 0
                       for h in hue)
            or not (abs(sum(hue) - 1) <= 0.02 or sum(hue) == 0)
        ):  # fmt: skip
            return TraceError(where, "malformed", f"{at}.hue must be {HUE_BINS} numbers >= 0 "
                              f"summing to 1 (or all 0), got {_shown(hue)}")  # fmt: skip
        if not isinstance(bright, int | float) or isinstance(bright, bool) or not 0 <= bright <= 1:
            return TraceError(
                where, "malformed", f"{at}.value must be a number in [0, 1], got {_shown(bright)}"
            )
        out.append(Blob(window, tuple(float(h) for h in hue), float(bright)))
    return tuple(out)


def _checked_frame(obj: object, where: str) -> FrameLine | TraceError:
    """One line's object checked field by field: the error names the field that is wrong."""
    if not isinstance(obj, dict):
        return TraceError(where, "malformed", "a line must be a JSON object")
    missing = [key for key in ("camera", "t_ms", "occupied") if key not in obj]
    if missing:
        fields = ", ".join(repr(key) for key in missing)
        return TraceError(where, "malformed", f"missing field{'s' * (len(missing) > 1)} {fields}")
    camera, t_ms, windows = obj["camera"], _whole(obj["t_ms"]), _windows(obj["occupied"])
    if not isinstance(camera, str):
        return TraceError(where, "malformed", f"'camera' must be a string, got {_shown(camera)}")
    if t_ms is None:
        return TraceError(
            where, "malformed", f"'t_ms' must be an integer, got {_shown(obj['t_ms'])}"
        )
    if windows is None:
        return TraceError(
            where,
            "malformed",
            f"'occupied' must be a list of integers, got {_shown(obj['occupied'])}",
        )
    if len(set(windows)) != len(windows):
        return TraceError(where, "malformed", f"'occupied' repeats a window: {windows}")
    blobs = _blobs(obj["blobs"], windows, where) if "blobs" in obj else ()
    if isinstance(blobs, TraceError):
        return blobs
    return FrameLine(camera, t_ms, sorted(windows), where, blobs=blobs)


def _shown(value: object) -> str:
    """A value for an error message, cut short."""
    text = orjson.dumps(value, default=repr).decode()
    return text if len(text) <= 60 else text[:57] + "..."


class Progress:
    """Bytes of the trace read so far (for progress bars)."""

    def __init__(self) -> None:
        self.bytes = 0


def read_jsonl(path: Path, progress: Progress | None = None) -> Iterator[FrameLine | TraceError]:
    """Frames of a contract ``occupancy.jsonl``; malformed lines come back as TraceError."""
    progress = progress or Progress()
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            progress.bytes += len(raw)
            where = f"{path}:{n}"
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield TraceError(where, "malformed", f"not valid JSON ({exc})")
                continue
            yield _frame(obj, where)


def read_avro(path: Path, progress: Progress | None = None) -> Iterator[FrameLine | TraceError]:
    """Frames of an Avro container file of ``camtopo/schemas/occupancy.v1.avsc`` records.

    MISSING / ERROR / END frames carry no data: they yield nothing, which is what missing
    data means to the estimator (no opportunities).
    """
    with path.open("rb") as fh:
        try:
            # Read as our schema: a container of another schema is refused here (its records
            # lacked 'grid' or 'frames': a KeyError), not record by record.
            reader = fastavro.reader(fh, reader_schema=schema(OCCUPANCY))
        except Exception as exc:
            raise TraceError(str(path), "malformed", f"not an Avro container file: {exc}") from exc
        n = -1
        while True:
            n += 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except Exception as exc:  # fastavro raises many types for a corrupt block
                raise TraceError(
                    f"{path}#{n}", "malformed", f"corrupt Avro block: {exc!r}"
                ) from exc
            if progress is not None:
                progress.bytes = fh.tell()
            if not isinstance(record, dict):  # read with our record schema: always a dict
                raise TraceError(f"{path}#{n}", "malformed", "an Avro datum that is not a record")
            grid = (record["grid"]["cols"], record["grid"]["rows"])
            for k, frame in enumerate(record.get("frames", [])):
                if frame.get("status") != "OK":
                    continue
                yield FrameLine(
                    record["camera"],
                    frame["t_ms"],
                    sorted(frame["occupied"]),
                    f"{path}#{n}.{k}",
                    grid,
                )


def read_trace(
    path: str | Path, progress: Progress | None = None
) -> Iterator[FrameLine | TraceError]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trace at {path}")
    if path.suffix == ".avro":
        return read_avro(path, progress)
    return read_jsonl(path, progress)
