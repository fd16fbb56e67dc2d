"""``camtopo produce``: camera-side producers, many cameras per process, to Kafka.

Examples::

    camtopo produce --source cam001=videos/door.avi --source cam002=rtsp://10.0.0.7/stream
    camtopo produce --source frames/cam003/            # image folder, camera id cam000
    camtopo produce --simulate --scenario campus --cameras 20 --render --duration 60
    camtopo produce --simulate --cameras 200 --fast --duration 600
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

_CAMERA_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_source(spec: str, index: int) -> tuple[str, str]:
    """``ID=SPEC`` or ``SPEC`` (id ``camNNN`` from its position) -> (camera id, spec)."""
    head, sep, tail = spec.partition("=")
    if sep and tail and _CAMERA_ID.match(head) and "://" not in head:
        return head, tail
    return f"cam{index:03d}", spec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "produce",
        help="publish camera occupancy (video or simulator) to Kafka",
        description=(
            "Run the detection pipeline (MOG2, morphology, connected components, lowest visible "
            "extent) on each camera's frames and publish Avro occupancy records to Kafka."
        ),
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[ID=]SPEC",
        help="video file, image folder, JPEG file or glob, rtsp:// or http:// URL (repeatable)",
    )
    p.add_argument("--simulate", action="store_true", help="cameras from the simulator")
    p.add_argument("--scenario", default="campus", help="simulator scenario")
    p.add_argument("--cameras", type=int, default=10, help="simulated cameras")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--density", type=float, default=1.0, help="scale simulated arrival rates")
    p.add_argument("--no-noise", action="store_true", help="simulator: no misses/outages/skew")
    p.add_argument(
        "--render", action="store_true", help="simulator: render video and run the full vision path"
    )
    p.add_argument("--fast", action="store_true", help="as fast as possible, not real time")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds of frames")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: settings)")
    p.add_argument("--topic", default=None, help="topic (default: CAMTOPO_OCCUPANCY_TOPIC)")
    p.add_argument("--frames-per-record", type=int, default=None, help="frames batched per record")
    p.add_argument("--start-ms", type=int, default=None, help="capture-time origin (default: now)")
    p.add_argument("--producer-id", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def build_feeds(args: argparse.Namespace, settings: Any, start_ms: int) -> tuple[list[Any], Any]:
    """The feeds of this run, and the per-tick hook (the simulator's step) if any."""
    from pathlib import Path

    from camtopo.core.grid import Grid
    from producers.camera import VisionFeed, replay_clock
    from producers.detection import DetectionParams
    from producers.simulated import SimulatedNetwork
    from producers.sources import open_source

    grid = Grid(
        settings.grid.cols,
        settings.grid.rows,
        settings.grid.frame_width,
        settings.grid.frame_height,
    )
    params = DetectionParams.from_settings(settings)
    feeds: list[Any] = []
    hook = None
    if args.simulate:
        if args.cameras <= 0:
            raise ValueError(f"--cameras must be positive, got {args.cameras}")
        net = SimulatedNetwork.build(
            args.scenario,
            args.cameras,
            args.seed,
            start_ms,
            render=args.render,
            noise=not args.no_noise,
            density=args.density,
            grid=grid,
            fps=settings.grid.fps,
        )
        hook = net.advance
        for c in range(net.sim.cameras.n):
            feeds.append(net.render_feed(c, params) if args.render else net.exact_feed(c))
    seen: set[str] = {f.camera for f in feeds}
    for i, spec in enumerate(args.source):
        camera, target = parse_source(spec, len(feeds) + i)
        if camera in seen:
            raise ValueError(f"camera id {camera!r} is given twice")
        seen.add(camera)
        if (
            "://" not in target
            and not any(ch in target for ch in "*?[")
            and not Path(target).exists()
        ):
            # A typo on the command line fails fast; a file that breaks later is a status.
            raise FileNotFoundError(f"--source {spec}: {target} does not exist")
        source = open_source(
            target, settings.producer.source_read_timeout_s, settings.producer.source_reconnect_s
        )
        if source.live and args.fast:
            raise ValueError(f"--fast cannot pace a live stream ({target}); drop --fast")
        feeds.append(
            VisionFeed(
                camera, source, grid, params, clock=replay_clock(start_ms, settings.grid.fps)
            )
        )
    if not feeds:
        raise ValueError("nothing to produce: give --source SPEC (repeatable) or --simulate")
    return feeds, hook


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from camtopo.settings import get_settings
    from processors.topics import ensure_topics
    from producers.producer import OccupancyPublisher, ProducerLoop

    s = get_settings()
    fpr = args.frames_per_record or s.producer.frames_per_record
    if fpr <= 0:
        raise ValueError(f"--frames-per-record must be positive, got {fpr}")
    # Before the first record (and before the capture clock starts): a producer started ahead
    # of the processor must not let the broker auto-create the topic with 1 partition.
    target = {"bootstrap": args.bootstrap or s.kafka.bootstrap}
    if args.topic:
        target["occupancy_topic"] = args.topic
    ensure_topics(s.replace(kafka=target), "occupancy")
    start_ms = args.start_ms if args.start_ms is not None else int(time.time() * 1000)
    feeds, hook = build_feeds(args, s, start_ms)
    publisher = OccupancyPublisher(
        args.bootstrap or s.kafka.bootstrap,
        args.topic,
        s,
        producer_id=args.producer_id,
        stats_interval_ms=1000,
    )
    if s.producer.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(s.producer.metrics_port, addr=s.service.host)
    max_ticks = None if args.duration is None else round(args.duration * s.grid.fps)
    bar = tqdm(total=max_ticks, unit="tick", disable=args.no_progress, desc="produce")

    def progress(_tick: int) -> None:
        bar.update(1)
        if _tick % s.grid.fps == 0:
            st = publisher.stats
            bar.set_postfix(records=st.records, delivered=st.delivered, failed=st.failed)

    print(
        f"producing {len(feeds)} camera(s) to {publisher.topic} at "
        f"{'full speed' if args.fast else f'{s.grid.fps} FPS real time'}, {fpr} frame(s) per record"
    )
    loop = ProducerLoop(
        feeds,
        publisher,
        fps=s.grid.fps,
        frames_per_record=fpr,
        realtime=not args.fast,
        before_tick=hook,
        max_ticks=max_ticks,
        on_tick=progress,
    )
    summary = loop.run()
    bar.close()
    st = publisher.stats
    publisher.poll(0)
    print(
        f"{summary.ticks} ticks in {summary.seconds:.1f} s; records {st.records}, frames "
        f"{st.frames}, bytes {st.bytes}, delivered {st.delivered}, delivery failures {st.failed}, "
        f"undelivered at exit {summary.undelivered}, backpressure waits "
        f"{st.backpressure_waits}, late ticks {summary.late_ticks}"
    )
    for camera, counts in summary.per_camera.items():
        if counts.get("ERROR") or counts.get("MISSING"):
            print(f"  {camera}: {counts}")
    for err in st.errors:
        print(f"  error: {err}")
    return 1 if st.failed or summary.undelivered else 0
