"""Frame sources, all decoded through OpenCV: image folders and JPEG files, video files, and
live RTSP / HTTP streams.

Every ``read()`` returns a :class:`FrameRead` whose status is that of the Avro record:
``OK`` with a decoded frame, ``MISSING`` when no frame exists for this time (a dark or stalled
camera), ``ERROR`` with a detail naming what failed and where, ``END`` when a finite source is
done. A source never returns an empty frame, and never raises for bad input: one camera's
failure must not stop the producer serving the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

OK, MISSING, ERROR, END = "OK", "MISSING", "ERROR", "END"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class FrameRead:
    """One read of a source."""

    status: str
    frame: np.ndarray | None = None
    t_ms: int | None = None  # capture time when the source knows it (live streams)
    detail: str | None = None


class FrameSource(Protocol):
    """What the producer needs of a source of frames."""

    name: str
    live: bool  # True: frames arrive at the camera's pace; False: read as fast as asked

    def read(self) -> FrameRead: ...

    def close(self) -> None: ...


def decode_jpeg(data: bytes, where: str) -> FrameRead:
    """Decode JPEG (or other image) bytes; corrupt or truncated data gives an ERROR read.

    libjpeg "decodes" a truncated JPEG into a grey-filled image with only a warning, so a
    JPEG must also end with its end-of-image marker to count as whole.
    """
    if not data:
        return FrameRead(ERROR, detail=f"{where}: empty image data")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return FrameRead(ERROR, detail=f"{where}: truncated JPEG (no end-of-image marker)")
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        return FrameRead(ERROR, detail=f"{where}: not a decodable image ({len(data)} bytes)")
    return FrameRead(OK, frame)


class ImageFilesSource:
    """A sequence of image files (JPEG, PNG, BMP), one frame each, in the given order."""

    live = False

    def __init__(self, paths: Sequence[str | Path], name: str | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.name = name or (str(self.paths[0].parent) if self.paths else "images")
        self._next = 0

    @classmethod
    def folder(cls, folder: str | Path) -> ImageFilesSource:
        """All images of ``folder`` in name order; an empty or absent folder is an error."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {folder} does not exist")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)}")
        return cls(paths, name=str(folder))

    def read(self) -> FrameRead:
        if self._next >= len(self.paths):
            return FrameRead(END, detail=f"{self.name}: all {len(self.paths)} images read")
        path = self.paths[self._next]
        self._next += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            return FrameRead(ERROR, detail=f"{path}: cannot read ({exc.strerror or exc})")
        return decode_jpeg(data, str(path))

    def close(self) -> None:
        self._next = len(self.paths)


class VideoFileSource:
    """A recorded video file read frame by frame through ``cv2.VideoCapture``."""

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self._cap: cv2.VideoCapture | None = None
        self._frames = 0
        self._total = 0
        self._failed: str | None = None
        self._done = False
        self.fps = 0.0  # frames per second the file says it was recorded at; 0 = unknown
        if not self.path.is_file():
            self._failed = f"{self.path}: no such video file"
            return
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            self._failed = f"{self.path}: cannot open as video (not a video or unsupported codec)"
            return
        self._cap = cap
        self._total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 0.0  # some containers report junk

    @property
    def frame_count(self) -> int:
        """Frames the container says it holds (0 = unknown)."""
        return self._total

    def read(self) -> FrameRead:
        if self._done:
            return FrameRead(END, detail=f"{self.name}: finished after {self._frames} frames")
        if self._failed is not None:
            # Reported once as ERROR; the camera then ends rather than repeat the error forever.
            self._done = True
            return FrameRead(ERROR, detail=self._failed)
        assert self._cap is not None
        ok, frame = self._cap.read()
        if ok and frame is not None and frame.size:
            self._frames += 1
            return FrameRead(OK, frame)
        self.close()
        if self._total and self._frames < self._total - 1:
            # Frame count says more frames exist: the file is damaged, not finished.
            self._failed = f"{self.name}: read failed at frame {self._frames} of {self._total}"
            self._done = True
            return FrameRead(ERROR, detail=self._failed)
        self._done = True
        return FrameRead(END, detail=f"{self.name}: finished after {self._frames} frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class LiveStreamSource:
    """An RTSP / HTTP (MJPEG, HLS, ...) stream, read by a background thread.

    The thread keeps only the newest frame (bounded memory: one frame), so a slow consumer
    skips frames instead of lagging behind. ``read()`` never blocks: it returns the newest
    frame if one arrived since the last read, ``MISSING`` if none did, and ``ERROR`` while the
    stream is down; the thread reopens a vanished stream every ``reconnect_s``.
    """

    live = True

    def __init__(self, url: str, read_timeout_s: float = 5.0, reconnect_s: float = 2.0) -> None:
        self.url = url
        self.name = url
        self.read_timeout_s = read_timeout_s
        self.reconnect_s = reconnect_s
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._frame_ms = 0
        self._fresh = False
        self._error: str | None = None
        self._last_ms = time.time() * 1000
        self.frames = 0
        self.reconnects = 0  # times the stream was opened again after having been open
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream {url}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        ms = int(self.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _run(self) -> None:
        was_open = False
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self._set_error(f"{self.url}: cannot open stream")
                self._stop.wait(self.reconnect_s)
                continue
            with self._lock:
                self._error = None
                # Counted when the stream is back, not per attempt: a server down for a
                # minute is one reconnect, not thirty.
                if was_open:
                    self.reconnects += 1
            was_open = True
            while not self._stop.is_set():
                ok, frame = cap.read()
                if not ok or frame is None or frame.size == 0:
                    self._set_error(f"{self.url}: stream ended or stalled; reopening")
                    break
                with self._lock:
                    self._frame, self._fresh = frame, True
                    self._frame_ms = self._last_ms = int(time.time() * 1000)
                    self.frames += 1
            cap.release()
            self._stop.wait(self.reconnect_s)

    def _set_error(self, detail: str) -> None:
        with self._lock:
            self._error = detail

    def read(self) -> FrameRead:
        with self._lock:
            if self._fresh and self._frame is not None:
                self._fresh = False
                return FrameRead(OK, self._frame, t_ms=self._frame_ms)
            if self._error is not None:
                return FrameRead(ERROR, detail=self._error)
            silent = time.time() - self._last_ms / 1000
        if silent > self.read_timeout_s:
            return FrameRead(MISSING, detail=f"{self.url}: no frame for {silent:.1f} s")
        return FrameRead(MISSING)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.read_timeout_s + self.reconnect_s + 1)


def open_source(spec: str, read_timeout_s: float = 5.0, reconnect_s: float = 2.0) -> FrameSource:
    """A source from a command-line spec: URL, image folder, image file(s) glob, video file."""
    if spec.lower().startswith(LIVE_SCHEMES):
        return LiveStreamSource(spec, read_timeout_s, reconnect_s)
    path = Path(spec)
    if path.is_dir():
        return ImageFilesSource.folder(path)
    if any(ch in spec for ch in "*?["):
        matches = (
            sorted(Path().glob(spec))
            if not path.is_absolute()
            else sorted(Path(path.anchor).glob(str(path.relative_to(path.anchor))))
        )
        if not matches:
            raise FileNotFoundError(f"no files match {spec!r}")
        return ImageFilesSource(matches, name=spec)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], name=spec)
    return VideoFileSource(path)
