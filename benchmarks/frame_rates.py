"""Mixed frame rates (issue #20 item 3): campus-100 with cameras at 15, 25 and 30 fps.

The same campus (seed 1, one hour, default noise) is simulated twice: every camera at 10 fps
(the accuracy benchmark's trace, reused from its cache) and cameras at 15, 25 and 30 fps side
by side (camera i at the (i mod 3)-th rate). ``camtopo estimate`` runs on

- ``uniform-10``: the 10 fps trace (what resampling every camera to one rate gives);
- ``mixed@10``: the mixed trace, the network ticking at 10 fps (``camera_fps`` per camera:
  every camera faster than the tick, its frames OR-ed per tick);
- ``mixed@15``: the mixed trace ticking at the slowest camera's rate (what ``camtopo detect``
  writes for such footage);
- ``declared-30``: the mixed trace with network.json claiming one rate, 30 fps, and no
  ``camera_fps``: the only way the code before per-camera rates would take it (15 and 25 fps
  cameras then miss ticks and give no opportunities where their frames fall short).

    python -m benchmarks.frame_rates [--duration 3600] [--only NAME]

Writes benchmarks/results/frame_rates.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
MIX = (15, 25, 30)


def simulate(out: Path, duration_s: float, mix: tuple[int, ...] | None) -> Path:
    from camtopo.core.grid import Grid
    from camtopo.simulation import NoiseConfig, Simulation, build_scenario, write_scenario

    if (out / "truth.json").exists():  # written last: the run completed
        return out
    scenario = build_scenario("campus", 100, 1, Grid())
    rates = None if mix is None else [mix[i % len(mix)] for i in range(scenario.cameras.n)]
    sim = Simulation(scenario, seed=1, noise=NoiseConfig(), fps=10, camera_fps=rates)
    write_scenario(out, sim, duration_s, progress=False)
    return out


def run(name: str, folder: Path, network: Any, duration_s: float) -> dict[str, Any]:
    from camtopo import estimate
    from camtopo.evaluation.score import score_topology
    from camtopo.settings import get_settings

    truth = json.loads((folder / "truth.json").read_text())
    settings = get_settings()
    res = estimate.estimate_trace(
        folder / "occupancy.jsonl",
        network,
        settings,
        snapshot_every_s=300,
        progress=False,
        skip_bad=True,
    )
    topo = estimate.topology_json(network, settings, res)
    score = score_topology(topo, truth)
    final = score["final"]
    row = {
        "name": name,
        "tick_fps": network.fps,
        "frames": res.report.frames,
        "skipped": dict(res.report.skipped),
        "elapsed_s": round(res.elapsed_s, 1),
        "frames_per_s": round(res.report.frames / res.elapsed_s),
        "camera_overlap": final["camera_overlap"],
        "camera": final["camera"],
        "window": final["window"],
        "camera_transit": final["camera_transit"],
    }
    print(
        f"{name:>12}: tick {network.fps} fps, {res.report.frames} frames "
        f"({sum(res.report.skipped.values())} skipped), {res.elapsed_s:.0f} s; camera overlap "
        f"P/R {final['camera_overlap']['precision']:.2f}/{final['camera_overlap']['recall']:.2f}"
        f", all camera links P/R {final['camera']['precision']:.2f}/"
        f"{final['camera']['recall']:.2f}, window P/R {final['window']['precision']:.2f}/"
        f"{final['window']['recall']:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    from camtopo.core.grid import Network

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    p.add_argument("--only", action="append", help="run only this configuration")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    started = time.perf_counter()
    d = f"{args.duration:.0f}s"
    uniform = simulate(CACHE / f"campus-100-seed1-{d}", args.duration, None)
    mixed = simulate(CACHE / f"campus-100-seed1-{d}-fps15-25-30", args.duration, MIX)
    net = Network.load(mixed / "network.json")
    runs = {
        "uniform-10": (uniform, Network.load(uniform / "network.json")),
        "mixed@10": (mixed, net),
        "mixed@15": (mixed, Network(net.cameras, net.grids, 15, net.camera_fps)),
        "declared-30": (mixed, Network(net.cameras, net.grids, 30)),
    }
    rows = [
        run(name, folder, network, args.duration)
        for name, (folder, network) in runs.items()
        if not args.only or name in args.only
    ]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "frame_rates.json"
    doc = {
        "network": "campus-100, seed 1, default noise",
        "duration_s": args.duration,
        "mix": MIX,
        "runs": rows,
        "wall_s": round(time.perf_counter() - started),
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
