"""``camtopo detect``: recorded footage -> occupancy files, no broker (the paper's offline mode).

Each camera's footage (a video file or a folder of images) runs through the producer's own
pipeline -- :class:`producers.camera.VisionFeed`, i.e. the same source readers and the same
:class:`producers.detection.OccupancyDetector` -- and the frames of all cameras are written in
capture-time order (``camtopo estimate`` needs the trace roughly time-ordered) as either

- contract JSON Lines, one line per analysed frame (``occupied: []`` = seen and empty; a frame
  not analysed, e.g. a corrupt image, has no line: missing data, never "empty"), or
- an Avro container file (``.avro``) of the streaming records, ``MISSING`` / ``ERROR`` / ``END``
  frames included, exactly what ``camtopo produce`` would have sent.

Frame k of a camera is at ``start_ms + k * 1000 / fps``, with the frame rate the video file
reports (``CAP_PROP_FPS``; ``--fps`` for image folders and files that report none).

    camtopo detect --source cam001=door.mp4 --source cam002=frames/ -o occupancy.jsonl \\
        --network-out network.json
    camtopo detect --folder footage/ -o occupancy.avro   # footage/cam001.mp4, footage/cam002/...
"""

from __future__ import annotations

import argparse
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from camtopo.core.grid import Grid
from producers.camera import CameraBatch, FeedFrame, VisionFeed, replay_clock
from producers.detection import DetectionParams
from producers.sources import (
    END,
    ERROR,
    IMAGE_SUFFIXES,
    LIVE_SCHEMES,
    MISSING,
    OK,
    ImageFilesSource,
    VideoFileSource,
    open_source,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")
WARMUP_DETAIL = "background model warm-up (not scored)"


def folder_sources(folder: str | Path) -> list[tuple[str, str]]:
    """(camera id, spec) for each video file and image sub-folder of ``folder``, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--folder {folder}: not a folder")
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            out.append((p.stem, str(p)))
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            out.append((p.name, str(p)))
    if not out:
        raise FileNotFoundError(
            f"--folder {folder}: holds no video file ({', '.join(VIDEO_SUFFIXES)}) "
            "and no folder of images"
        )
    return out


@dataclass
class CameraRun:
    """One camera's footage being analysed, and its counts."""

    camera: str
    spec: str
    feed: VisionFeed
    fps: float
    expected: int  # frames the footage says it holds (0 = unknown)
    frames: int = 0  # frames read (every status)
    analysed: int = 0  # OK frames written (after warm-up)
    errors: int = 0
    occupied: int = 0  # occupied windows summed over analysed frames
    last_error: str | None = None


@dataclass
class DetectSummary:
    cameras: list[CameraRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)


def open_cameras(
    sources: Sequence[tuple[str, str]],
    grid: Grid,
    params: DetectionParams,
    default_fps: float,
    start_ms: int,
) -> list[CameraRun]:
    """Open every camera's footage; a live URL or a missing path is refused up front."""
    runs: list[CameraRun] = []
    seen: set[str] = set()
    for camera, spec in sources:
        if camera in seen:
            raise ValueError(f"camera id {camera!r} is given twice")
        seen.add(camera)
        if spec.lower().startswith(LIVE_SCHEMES):
            raise ValueError(f"{camera}: {spec} is a live stream; use `camtopo produce` for those")
        if not any(ch in spec for ch in "*?[") and not Path(spec).exists():
            raise FileNotFoundError(f"{camera}: {spec} does not exist")
        source = open_source(spec)
        fps, expected = default_fps, 0
        if isinstance(source, VideoFileSource):
            fps = source.fps or default_fps
            expected = source.frame_count
        elif isinstance(source, ImageFilesSource):
            expected = len(source.paths)
        feed = VisionFeed(camera, source, grid, params, clock=replay_clock(start_ms, fps))
        runs.append(CameraRun(camera, spec, feed, fps, expected))
    if not runs:
        raise ValueError("nothing to detect: give --source [ID=]SPEC (repeatable) or --folder DIR")
    return runs


def network_json(runs: Sequence[CameraRun], grid: Grid) -> dict[str, Any]:
    """The network.json matching the footage: each camera at its footage's frame rate, the
    network ticking at the slowest (so no camera's frame stands for more than one tick; the
    frames of faster cameras are mapped onto its ticks by capture time)."""
    rates = {r.camera: max(1, round(r.fps)) for r in runs}
    tick = min(rates.values())
    out: dict[str, Any] = {"grid": grid.to_json(), "fps": tick, "cameras": list(rates)}
    if any(f != tick for f in rates.values()):
        out["camera_fps"] = {c: f for c, f in rates.items() if f != tick}
    return out


class JsonlSink:
    """Contract JSON Lines: one line per analysed frame, nothing for any other status."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, camera: str, frame: FeedFrame) -> None:
        if frame.status == OK:
            occupied = ",".join(str(w) for w in frame.occupied)
            self.out.write(f'{{"camera":"{camera}","t_ms":{frame.t_ms},"occupied":[{occupied}]}}\n')

    def close(self) -> None:
        pass


class AvroSink:
    """Avro container of the streaming records, batched per camera as the producer does."""

    def __init__(self, out: IO[bytes], grids: dict[str, Grid], frames_per_record: int) -> None:
        from fastavro.write import Writer

        from camtopo.formats import avro

        self.writer = Writer(out, avro.schema(avro.OCCUPANCY), codec="deflate")
        self.batches = {c: CameraBatch(c, g, frames_per_record) for c, g in grids.items()}

    def write(self, camera: str, frame: FeedFrame) -> None:
        batch = self.batches[camera]
        if batch.add(frame):
            self.writer.write(batch.take("camtopo-detect"))

    def close(self) -> None:
        for batch in self.batches.values():
            if batch.frames:
                self.writer.write(batch.take("camtopo-detect"))
        self.writer.flush()


def detect_footage(
    runs: Sequence[CameraRun],
    sink: JsonlSink | AvroSink,
    warmup_s: float = 0.0,
    max_s: float | None = None,
    progress: bool = True,
) -> DetectSummary:
    """Analyse every camera's footage to its end, writing frames in capture-time order."""
    from tqdm import tqdm

    summary = DetectSummary(list(runs))
    started = time.perf_counter()
    total = sum(r.expected for r in runs) if all(r.expected for r in runs) else None
    bar = tqdm(total=total, unit="frame", desc="detect", disable=not progress)
    # Next frame time of each camera: the earliest goes next, so cameras at different frame
    # rates interleave in time order and the estimator's reorder window is never exceeded.
    queue = [(r.feed.clock(0), i) for i, r in enumerate(runs)]
    heapq.heapify(queue)
    warm = {i: round(warmup_s * r.fps) for i, r in enumerate(runs)}
    last = {i: None if max_s is None else round(max_s * r.fps) for i, r in enumerate(runs)}
    while queue:
        _, i = heapq.heappop(queue)
        run = runs[i]
        k = run.frames
        limit = last[i]
        if limit is not None and k >= limit:  # --duration reached: the footage ends here for us
            frame = FeedFrame(run.feed.clock(k), END, (), f"{run.spec}: stopped after {k} frames")
        else:
            frame = run.feed.next_frame(k)
        if frame.status != END:
            run.frames += 1
            bar.update(1)
        if frame.status == OK and k < warm[i]:
            # The background model is still being learnt: its output means little yet.
            frame = FeedFrame(frame.t_ms, MISSING, (), WARMUP_DETAIL)
        elif frame.status == OK:
            run.analysed += 1
            run.occupied += len(frame.occupied)
        elif frame.status == ERROR:
            run.errors += 1
            run.last_error = frame.detail
        sink.write(run.camera, frame)
        if frame.status == END:
            run.feed.close()
            continue
        heapq.heappush(queue, (run.feed.clock(k + 1), i))
    bar.close()
    sink.close()
    summary.seconds = time.perf_counter() - started
    return summary


# --- command line ------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "detect",
        help="recorded footage -> occupancy JSON Lines or Avro file (no broker)",
        description=(
            "Run the producer's detection pipeline (MOG2, morphology, connected components, "
            "lowest visible extent) over recorded footage, one video file or image folder per "
            "camera, and write occupancy for `camtopo estimate` (.jsonl, or .avro records)."
        ),
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[ID=]SPEC",
        help="video file, image folder, JPEG file or glob (repeatable); id camNNN if omitted",
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="DIR",
        help="one camera per video file or image sub-folder of DIR, named by file/folder name",
    )
    p.add_argument(
        "-o", "--output", required=True, help="occupancy.jsonl, or NAME.avro for Avro records"
    )
    p.add_argument("--network-out", default=None, help="also write a matching network.json")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of image folders and of videos reporting none (default: CAMTOPO_FPS)",
    )
    p.add_argument(
        "--warmup-s",
        type=float,
        default=0.0,
        help="the first S s of each camera only train the background (no line / MISSING)",
    )
    p.add_argument("--duration", type=float, default=None, help="read at most S s of each camera")
    p.add_argument("--start-ms", type=int, default=0, help="capture time of every first frame")
    p.add_argument("--frames-per-record", type=int, default=None, help="Avro: frames per record")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from camtopo.settings import get_settings
    from producers.command import parse_source

    s = get_settings()
    grid = Grid(s.grid.cols, s.grid.rows, s.grid.frame_width, s.grid.frame_height)
    sources = [pair for folder in args.folder for pair in folder_sources(folder)]
    sources += [parse_source(spec, len(sources) + i) for i, spec in enumerate(args.source)]
    default_fps = args.fps or float(s.grid.fps)
    if default_fps <= 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    runs = open_cameras(sources, grid, DetectionParams.from_settings(s), default_fps, args.start_ms)
    # Checked before hours of footage are analysed, not after.
    network = network_json(runs, grid) if args.network_out else None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for r in runs:
        print(f"{r.camera}: {r.spec} at {r.fps:g} fps, {r.expected or '?'} frames")
    if output.suffix == ".avro":
        fpr = args.frames_per_record or s.producer.frames_per_record
        with output.open("wb") as fh:
            sink: JsonlSink | AvroSink = AvroSink(fh, {r.camera: grid for r in runs}, fpr)
            summary = detect_footage(runs, sink, args.warmup_s, args.duration, not args.no_progress)
    else:
        with output.open("w") as fh:
            sink = JsonlSink(fh)
            summary = detect_footage(runs, sink, args.warmup_s, args.duration, not args.no_progress)
    if network is not None:
        Path(args.network_out).write_text(json.dumps(network, indent=1) + "\n")
    rate = summary.frames / max(summary.seconds, 1e-9)
    print(f"{summary.frames} frames in {summary.seconds:.1f} s ({rate:.0f} frames/s) -> {output}")
    for r in summary.cameras:
        mean = r.occupied / max(r.analysed, 1)
        line = f"  {r.camera}: {r.analysed} frames analysed, {mean:.2f} occupied windows/frame"
        if r.errors:
            line += f", {r.errors} errors (last: {r.last_error})"
        print(line)
    if network is not None:
        print(f"network: {args.network_out} ({len(runs)} cameras, {network['fps']} fps)")
    # A camera with no analysed frame at all is a failed input, not an empty scene.
    return 1 if any(r.analysed == 0 for r in summary.cameras) else 0
