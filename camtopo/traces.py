"""Reading occupancy traces: the contract's JSON Lines and Avro container files of our schema.

Each reader yields :class:`FrameLine` s with where they came from, so every error can name its
file and line (or record). Problems are raised as :class:`TraceError`; whether they stop the
run or are counted and skipped is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fastavro
import orjson


class TraceError(ValueError):
    """A malformed or inconsistent line of a trace; ``reason`` is a short category."""

    def __init__(self, where: str, reason: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class FrameLine:
    camera: str
    t_ms: int
    occupied: list[int]
    where: str  # "file:line" or "file#record.frame"


def _int_list(value: object) -> list[int] | None:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return None
    return value


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
            if not isinstance(obj, dict):
                yield TraceError(where, "malformed", "a line must be a JSON object")
                continue
            camera, t_ms, occupied = obj.get("camera"), obj.get("t_ms"), obj.get("occupied")
            windows = _int_list(occupied)
            if not isinstance(camera, str):
                yield TraceError(where, "malformed", "'camera' must be a string")
            elif not isinstance(t_ms, int) or isinstance(t_ms, bool):
                yield TraceError(where, "malformed", "'t_ms' must be an integer")
            elif windows is None:
                yield TraceError(where, "malformed", "'occupied' must be a list of integers")
            elif len(set(windows)) != len(windows):
                yield TraceError(where, "malformed", f"'occupied' repeats a window: {windows}")
            else:
                yield FrameLine(camera, t_ms, sorted(windows), where)


def read_avro(path: Path, progress: Progress | None = None) -> Iterator[FrameLine | TraceError]:
    """Frames of an Avro container file of ``camtopo/schemas/occupancy.v1.avsc`` records.

    MISSING / ERROR / END frames carry no data: they yield nothing, which is what missing
    data means to the estimator (no opportunities).
    """
    with path.open("rb") as fh:
        try:
            reader = fastavro.reader(fh)
        except Exception as exc:
            raise TraceError(str(path), "malformed", f"not an Avro container file: {exc}") from exc
        for n, record in enumerate(reader):
            if progress is not None:
                progress.bytes = fh.tell()
            for k, frame in enumerate(record.get("frames", [])):
                if frame.get("status") != "OK":
                    continue
                yield FrameLine(
                    record["camera"], frame["t_ms"], sorted(frame["occupied"]), f"{path}#{n}.{k}"
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
