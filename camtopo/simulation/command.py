"""``camtopo simulate``: write a simulated scenario (network, occupancy, truth) to a folder."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the CLI starts without the simulator
    from camtopo.simulation.engine import CameraMove


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a camera network with ground truth",
        description="Write network.json, occupancy.jsonl and truth.json of a simulated network.",
    )
    p.add_argument("--scenario", default="campus", help="campus | corridor | plaza | branching")
    p.add_argument("--cameras", type=int, default=100, help="number of cameras")
    p.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-noise", action="store_true", help="perfect detection, no outages/skew")
    p.add_argument("--density", type=float, default=1.0, help="scale the arrival rates")
    p.add_argument("--render-map", action="store_true", help="also write map.png of the world")
    p.add_argument(
        "--move",
        action="append",
        default=[],
        metavar="CAMERA@SECONDS",
        help="re-mount camera CAMERA (id or index) elsewhere at SECONDS (repeatable); truth.json "
        "then holds the layout after the moves, with 'moves' and 'before'",
    )
    p.add_argument(
        "--fps-mix",
        type=_rates,
        metavar="RATES",
        help="cameras at mixed frame rates, e.g. 15,25,30: camera i at the (i mod n)-th rate "
        "(network.json's camera_fps); the network still ticks at CAMTOPO_FPS",
    )
    p.add_argument(
        "--appearance",
        action="store_true",
        help="blobs also carry hue and brightness (the optional 'blobs' key of each line; "
        "people's clothes, each camera's colour transfer and noise; docs/simulation.md)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from camtopo.core.grid import Grid
    from camtopo.settings import get_settings
    from camtopo.simulation.appearance import AppearanceConfig
    from camtopo.simulation.engine import Simulation
    from camtopo.simulation.noise import NoiseConfig
    from camtopo.simulation.scenarios import build_scenario
    from camtopo.simulation.writer import write_scenario

    if args.duration <= 0:
        raise ValueError(f"--duration must be positive, got {args.duration}")
    s = get_settings()
    grid = Grid(s.grid.cols, s.grid.rows, s.grid.frame_width, s.grid.frame_height)
    t0 = time.perf_counter()
    scenario = build_scenario(args.scenario, args.cameras, args.seed, grid)
    moves = [_move(spec, scenario.cameras.ids, args.seed) for spec in args.move]
    sim = Simulation(
        scenario,
        seed=args.seed,
        noise=NoiseConfig.off() if args.no_noise else NoiseConfig(),
        fps=s.grid.fps,
        density=args.density,
        moves=moves,
        camera_fps=None
        if args.fps_mix is None
        else [args.fps_mix[i % len(args.fps_mix)] for i in range(scenario.cameras.n)],
        appearance=AppearanceConfig() if args.appearance else None,
    )
    print(f"built {args.scenario} with {args.cameras} cameras in {time.perf_counter() - t0:.1f} s")
    summary = write_scenario(args.out, sim, args.duration)
    if args.render_map:
        from camtopo.simulation.render_map import render_map

        render_map(Path(args.out) / "map.png", sim)
    for k, v in summary.items():
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")
    print(f"wrote {args.out}")
    return 0


def _move(spec: str, ids: tuple[str, ...], seed: int) -> CameraMove:
    from camtopo.simulation.engine import CameraMove

    cam, sep, at = spec.rpartition("@")
    if not sep:
        raise ValueError(f"--move {spec!r}: expected CAMERA@SECONDS, e.g. cam007@1200")
    index = ids.index(cam) if cam in ids else int(cam) if cam.isdigit() else -1
    if not 0 <= index < len(ids):
        raise ValueError(f"--move {spec!r}: no camera {cam!r} (ids {ids[0]}..{ids[-1]})")
    return CameraMove(index, float(at), seed)


def _rates(spec: str) -> list[int]:
    try:
        rates = [int(r) for r in spec.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) < 1:
        raise argparse.ArgumentTypeError(f"expected frame rates >= 1 like 15,25,30, got {spec!r}")
    return rates
