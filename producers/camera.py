"""Per-camera feeds: something that yields one occupancy frame per tick, plus its batching.

A feed's ``next_frame()`` returns the schema's ``Frame`` fields except ``seq`` (the camera
numbers its own ticks). :class:`VisionFeed` runs a frame source through the detection
pipeline; the simulator's feeds live in :mod:`producers.simulated`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from camtopo.core.grid import Grid
from producers import metrics
from producers.detection import DetectionParams, FrameError, OccupancyDetector
from producers.sources import END, ERROR, MISSING, OK, FrameRead, FrameSource


@dataclass(frozen=True)
class FeedFrame:
    """One tick of one camera, before numbering."""

    t_ms: int
    status: str
    occupied: tuple[int, ...] = ()
    detail: str | None = None


class Feed(Protocol):
    camera: str
    grid: Grid
    live: bool

    def next_frame(self, tick: int) -> FeedFrame: ...

    def close(self) -> None: ...


def replay_clock(start_ms: int, fps: float) -> Callable[[int], int]:
    """Capture time of tick k of recorded footage replayed from ``start_ms``."""
    return lambda k: start_ms + round(k * 1000 / fps)


class VisionFeed:
    """A frame source -> MOG2 detection -> occupied windows, for one camera."""

    def __init__(
        self,
        camera: str,
        source: FrameSource,
        grid: Grid,
        params: DetectionParams | None = None,
        clock: Callable[[int], int] | None = None,
    ) -> None:
        self.camera = camera
        self.source = source
        self.grid = grid
        self.live = source.live
        self.detector = OccupancyDetector(grid, params)
        self.clock = clock or (lambda _k: int(time.time() * 1000))
        self._reconnects = 0  # the source's reconnects already counted in the metrics

    def _stream_health(self, read: FrameRead) -> None:
        """A live stream's up gauge and reconnect counter, from what the read says."""
        reconnects = int(getattr(self.source, "reconnects", 0))
        if reconnects > self._reconnects:
            metrics.STREAM_RECONNECTS.labels(self.camera).inc(reconnects - self._reconnects)
            self._reconnects = reconnects
        if read.status == OK:
            metrics.STREAM_UP.labels(self.camera).set(1)
        elif read.status == ERROR or (read.status == MISSING and read.detail):
            # ERROR: lost / cannot open; MISSING with a detail: silent past the read timeout.
            metrics.STREAM_UP.labels(self.camera).set(0)

    def next_frame(self, tick: int) -> FeedFrame:
        read = self.source.read()
        if self.live:
            self._stream_health(read)
        t_ms = read.t_ms if read.t_ms is not None else self.clock(tick)
        if read.status != OK or read.frame is None:
            return FeedFrame(t_ms, read.status if read.status != OK else ERROR, (), read.detail)
        try:
            windows = self.detector.detect(read.frame)
        except FrameError as exc:
            return FeedFrame(t_ms, ERROR, (), f"{self.source.name}: {exc}")
        return FeedFrame(t_ms, OK, tuple(int(w) for w in windows))

    def close(self) -> None:
        self.source.close()


@dataclass
class CameraBatch:
    """A camera's sequence numbering and the frames waiting to be published as one record."""

    camera: str
    grid: Grid
    frames_per_record: int
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {OK: 0, MISSING: 0, ERROR: 0, END: 0})

    def add(self, frame: FeedFrame) -> bool:
        """Number and queue a frame; True when the batch should be published now."""
        self.frames.append(
            {
                "t_ms": int(frame.t_ms),
                "seq": self.seq,
                "status": frame.status,
                "occupied": list(frame.occupied),
                "detail": frame.detail,
            }
        )
        self.seq += 1
        self.counts[frame.status] = self.counts.get(frame.status, 0) + 1
        if frame.status == END:
            self.finished = True
        # Errors and the end go out at once: they are news, not data to batch up.
        return len(self.frames) >= self.frames_per_record or frame.status in (ERROR, END)

    def take(self, producer_id: str) -> dict[str, Any]:
        record = {
            "camera": self.camera,
            "grid": self.grid.to_json(),
            "frames": self.frames,
            "producer": producer_id,
        }
        self.frames = []
        return record
