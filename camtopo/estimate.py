"""``camtopo estimate``: occupancy trace in, ``topology.json`` out, in bounded memory.

The trace is streamed once. Frames are held only until their ticks can be padded: the trace
is "roughly" time-ordered, so a tick is taken as complete once the trace has moved
``reorder`` ms past it. A frame older than that is out of order beyond repair, and a frame
far ahead of the trace is a broken clock; both are bad input, as are malformed lines, unknown
cameras, windows outside the grid and duplicate frames. Bad input stops the run with the
file and line, or with ``--skip-bad`` is counted by reason, skipped, and reported. A trace
with no frame to count stops too: an empty topology would read as "no links".

A tick is one frame of the network's ``fps`` (network.json), whatever CAMTOPO_FPS says by
default; a camera at its own rate (``camera_fps``) has its frames mapped onto those ticks by
capture time. The formats are described in docs/formats.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camtopo.core.bits import MAX_BLOCK_TICKS
from camtopo.core.grid import Network, NetworkError
from camtopo.core.moved import MoveParams
from camtopo.core.ticks import DuplicateFrameError, LateFrameError
from camtopo.core.topology import Topology, TopologyEstimator
from camtopo.formats.traces import FrameLine, Progress, TraceError, read_trace
from camtopo.settings import Settings, get_settings

FORMAT = "camtopo-topology/1"
# The settings a topology depends on, recorded with every result.
ESTIMATOR_SETTINGS = (
    "spatial_radius", "temporal_tolerance_ms", "o_ref", "c_star", "count_limit",
    "activity_gate", "prune", "prune_min_opportunities", "prune_max_ratio", "readmit_after",
    "transit_enabled", "transit_max_lag_s", "transit_bin_s", "transit_control_s",
    "transit_z_star", "transit_min_ratio", "transit_min_excess", "transit_max_dest",
    "move_detection", "move_check_s", "move_max_ratio", "move_min_opportunities",
    "move_min_shift", "move_shift_z",
)  # fmt: skip


@dataclass
class InputReport:
    frames: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, error: TraceError) -> None:
        self.skipped[error.reason] += 1
        self.examples.setdefault(error.reason, str(error))

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "skipped": dict(self.skipped), "examples": self.examples}


@dataclass
class Snapshot:
    t_s: float
    window_pairs: list[tuple[str, str]]
    camera_links: list[tuple[str, str, str]]


@dataclass
class EstimateResult:
    topology: Topology
    report: InputReport
    history: list[Snapshot]
    elapsed_s: float
    estimator: TopologyEstimator | None = None  # for benchmarks that read more of its state


def snapshot(network: Network, topo: Topology, t_s: float) -> Snapshot:
    e = topo.window_edges
    return Snapshot(
        t_s,
        [(network.label(int(i)), network.label(int(j))) for i, j in zip(e.i, e.j, strict=True)],
        [(c.a, c.b, c.kind) for c in topo.camera_edges],
    )


def estimate_trace(
    trace: str | Path,
    network: Network,
    settings: Settings | None = None,
    *,
    engine: str = "fast",
    skip_bad: bool = False,
    reorder_ms: int = 2000,
    max_ahead_s: float = 300.0,
    snapshot_every_s: float = 0.0,
    progress: bool = True,
    moves: MoveParams | str | None = "settings",
    moved: Sequence[tuple[str, int]] = (),
) -> EstimateResult:
    """Run the estimator over a trace file (see module doc for the input rules).

    ``moves``: detect moved cameras with these thresholds (None: no detection; default: the
    settings'); ``moved``: (camera, t_ms) an operator gives: the camera's evidence is forgotten
    from t_ms on."""
    settings = network_clock(settings or get_settings(), network)
    if isinstance(moves, str):
        moves = settings.move_parameters()
    est = TopologyEstimator(network, settings.estimator_parameters(), engine, moves=moves)
    for camera, t_ms in moved:
        est.camera_moved(camera, at_tick=est.tick_of(t_ms))
    report = InputReport()
    history: list[Snapshot] = []
    reorder_ticks = max(1, est.tick_of(reorder_ms))
    max_ahead_ticks = est.tick_of(int(max_ahead_s * 1000))
    frontier: int | None = None  # highest tick seen
    advanced = -(2**62)  # tick up to which counting was last requested
    first_tick: int | None = None
    next_snapshot = snapshot_every_s
    started = time.perf_counter()
    trace = Path(trace)
    bar = _progress(trace, progress)
    position = Progress()

    def reject(error: TraceError) -> None:
        if not skip_bad:
            raise error
        report.skip(error)

    for n, item in enumerate(read_trace(trace, position), start=1):
        if isinstance(item, TraceError):
            reject(item)
            continue
        try:
            tick = _accept(est, network, item, frontier, max_ahead_ticks)
        except TraceError as error:
            reject(error)
            continue
        report.frames += 1
        if frontier is None or tick > frontier:
            frontier = tick
            first_tick = tick if first_tick is None else first_tick
            # Count in whole 64-tick blocks: one engine call per 6.4 s of trace, not per tick.
            if frontier - reorder_ticks >= advanced + MAX_BLOCK_TICKS:
                advanced = frontier - reorder_ticks
                est.advance(advanced)
        if snapshot_every_s and first_tick is not None:
            observed = (frontier - first_tick) * settings.grid.tick_ms / 1000
            while observed >= next_snapshot:
                history.append(snapshot(network, est.topology(), next_snapshot))
                next_snapshot += snapshot_every_s
        if bar is not None and n % 4096 == 0:
            bar.update(position.bytes - bar.n)
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    if not report.frames:
        raise _no_frames(trace, report)
    est.finish()
    topo = est.topology()
    if snapshot_every_s:
        history.append(snapshot(network, topo, topo.observed_ticks * settings.grid.tick_ms / 1000))
    return EstimateResult(topo, report, history, time.perf_counter() - started, est)


def network_clock(settings: Settings, network: Network) -> Settings:
    """The settings with the network's frame rate: a tick is one of its cameras' frames.

    CAMTOPO_FPS is the default for networks that do not say; network.json always says, so
    a different rate set on purpose is a contradiction, not a choice.
    """
    if settings.grid.fps == network.fps:
        return settings
    if "fps" in settings.grid.model_fields_set:
        raise NetworkError(
            f"network.json's 'fps' is {network.fps} but CAMTOPO_FPS is {settings.grid.fps}: a tick "
            f"is one frame of the network; unset CAMTOPO_FPS or make them agree"
        )
    return settings.replace(grid={"fps": network.fps})


def _no_frames(trace: Path, report: InputReport) -> TraceError:
    """An empty topology from no data would read as "no links"; say there was no data."""
    skipped = sum(report.skipped.values())
    why = (
        f"all {skipped} were skipped as bad input ({_reasons(report)})"
        if skipped
        else "it is empty"
    )
    return TraceError(str(trace), "empty", f"no frames to estimate from: {why}")


def _reasons(report: InputReport) -> str:
    return ", ".join(f"{k}={v}" for k, v in report.skipped.items())


def _accept(
    est: TopologyEstimator,
    network: Network,
    line: FrameLine,
    frontier: int | None,
    max_ahead_ticks: int,
) -> int:
    """Add one frame to the estimator, translating every refusal into a TraceError."""
    try:
        camera = network.camera_index(line.camera)
    except NetworkError as exc:
        raise TraceError(line.where, "unknown_camera", str(exc)) from None
    grid = network.grids[camera]
    if line.grid is not None and line.grid != (grid.cols, grid.rows):
        # window numbers of another grid would land on the wrong windows, or off the grid
        raise TraceError(
            line.where,
            "grid_mismatch",
            f"camera {line.camera!r} sent a {line.grid[0]}x{line.grid[1]} grid; network.json "
            f"has {grid.cols}x{grid.rows}",
        )
    tick = est.tick_of(line.t_ms)
    if frontier is not None and tick > frontier + max_ahead_ticks:
        ahead = (tick - frontier) * est.params.tick_ms / 1000
        raise TraceError(
            line.where,
            "time_jump",
            f"t_ms {line.t_ms} is {ahead:.0f} s ahead of the trace so far (limit "
            f"{max_ahead_ticks * est.params.tick_ms / 1000:.0f} s)",
        )
    if frontier is not None and tick < frontier - max_ahead_ticks:
        # Taken before the first ticks are counted, a frame from long ago made finish() count
        # every tick from it to the frontier: t_ms -10^13 held the run for days.
        behind = (frontier - tick) * est.params.tick_ms / 1000
        raise TraceError(
            line.where,
            "time_jump",
            f"t_ms {line.t_ms} is {behind:.0f} s behind the trace so far (limit "
            f"{max_ahead_ticks * est.params.tick_ms / 1000:.0f} s)",
        )
    try:
        est.add_frame(
            camera, line.t_ms, line.occupied, [(b.window, b.hue, b.value) for b in line.blobs]
        )
    except NetworkError as exc:
        raise TraceError(line.where, "window_outside_grid", str(exc)) from None
    except DuplicateFrameError as exc:
        raise TraceError(line.where, "duplicate_frame", str(exc)) from None
    except LateFrameError:
        behind = ((frontier or tick) - tick) * est.params.tick_ms / 1000
        raise TraceError(
            line.where,
            "out_of_order",
            f"t_ms {line.t_ms} is {behind:.1f} s behind the trace, past the reorder "
            f"allowance; its ticks were already counted",
        ) from None
    return tick


def _progress(trace: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=trace.stat().st_size, unit="B", unit_scale=True, desc="estimate", file=sys.stderr
    )


def topology_json(network: Network, settings: Settings, result: EstimateResult) -> dict[str, Any]:
    topo = result.topology
    e = topo.window_edges
    return {
        "format": FORMAT,
        "network": network.to_json(),
        "settings": {k: v for k, v in settings.by_variable().items() if k in ESTIMATOR_SETTINGS},
        "observed_s": topo.observed_ticks * settings.grid.tick_ms / 1000,
        "camera_moves": [
            {"camera": e.camera, "t_s": e.tick * settings.grid.tick_ms / 1000, "cause": e.cause}
            for e in (result.estimator.move_events if result.estimator else [])
        ],
        "input": result.report.to_json(),
        "window_edges": [
            {
                "a": network.label(int(e.i[k])),
                "b": network.label(int(e.j[k])),
                "c_ab": round(float(e.c_ij[k]), 4),
                "c_ba": round(float(e.c_ji[k]), 4),
                "o_ab": int(e.o_ij[k]),
                "o_ba": int(e.o_ji[k]),
            }
            for k in range(len(e))
        ],
        "camera_edges": [c.to_json() for c in topo.camera_edges],
        "history": [
            {
                "t_s": s.t_s,
                "window_pairs": s.window_pairs,
                "camera_links": s.camera_links,
            }
            for s in result.history
        ],
    }


def find_network(trace: Path, network: str | None) -> Network:
    path = Path(network) if network else trace.parent / "network.json"
    if not path.exists():
        raise FileNotFoundError(f"no network description at {path} (give --network)")
    return Network.load(path)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("estimate", help="estimate the activity topology of an occupancy trace")
    p.add_argument("trace", type=Path, help="occupancy.jsonl (contract) or .avro container file")
    p.add_argument("--network", help="network.json (default: next to the trace)")
    p.add_argument("-o", "--out", type=Path, default=Path("topology.json"))
    p.add_argument("--engine", choices=["fast", "exact", "dense"], default="fast")
    p.add_argument("--skip-bad", action="store_true", help="count and skip bad input")
    p.add_argument("--reorder-ms", type=int, default=2000, help="allowed out-of-order lag")
    p.add_argument("--max-ahead-s", type=float, default=300.0, help="largest forward time jump")
    p.add_argument(
        "--snapshot-every",
        type=float,
        default=0.0,
        metavar="S",
        help="record the topology every S simulated seconds (for accuracy curves)",
    )
    p.add_argument(
        "--moved",
        action="append",
        default=[],
        metavar="CAMERA@SECONDS",
        help="CAMERA was re-aimed or re-mounted at SECONDS on the trace's clock (t_ms / 1000): "
        "its evidence is forgotten there and relearnt (repeatable)",
    )
    p.add_argument(
        "--no-move-detection",
        action="store_true",
        help="do not look for moved cameras (CAMTOPO_MOVE_DETECTION=false)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def parse_moved(specs: Sequence[str], network: Network) -> list[tuple[str, int]]:
    """``CAMERA@SECONDS`` -> (camera, t_ms); a clear error for a malformed one."""
    out = []
    for spec in specs:
        camera, sep, at = spec.rpartition("@")
        try:
            t_ms = round(float(at) * 1000)
        except ValueError:
            t_ms = None
        if not sep or t_ms is None:
            raise ValueError(f"--moved {spec!r}: expected CAMERA@SECONDS, e.g. cam007@1200")
        network.camera_index(camera)  # an unknown camera is refused here, naming it
        out.append((camera, t_ms))
    return out


def run(args: argparse.Namespace) -> int:
    network = find_network(args.trace, args.network)
    settings = network_clock(get_settings(), network)
    moved = parse_moved(args.moved, network)
    result = estimate_trace(
        args.trace,
        network,
        settings,
        engine=args.engine,
        skip_bad=args.skip_bad,
        reorder_ms=args.reorder_ms,
        max_ahead_s=args.max_ahead_s,
        snapshot_every_s=args.snapshot_every,
        progress=not args.quiet,
        moves=None if args.no_move_detection else "settings",
        moved=moved,
    )
    args.out.write_text(json.dumps(topology_json(network, settings, result)))
    topo, rep = result.topology, result.report
    hours = topo.observed_ticks * settings.grid.tick_ms / 3.6e6
    print(
        f"{rep.frames} frames, {hours:.2f} h observed in {result.elapsed_s:.1f} s: "
        f"{len(topo.window_edges)} window edges, {len(topo.camera_edges)} camera edges "
        f"-> {args.out}"
    )
    for e in result.estimator.move_events if result.estimator else []:
        print(
            f"camera {e.camera} moved ({e.cause}) at {e.tick * settings.grid.tick_ms / 1000:.0f} "
            "s: its evidence was forgotten and relearnt from there"
        )
    if rep.skipped:
        print("skipped bad input: " + _reasons(rep))
        for reason, example in rep.examples.items():
            print(f"  e.g. {reason}: {example}")
    return 0
