"""The paper's Figure 6 redone: exclusion throughput and memory versus camera count.

For each camera count, a campus network is simulated (realistic densities, detection noise)
and its occupancy held in memory; then the estimator (padding + counts) is timed on it,
each engine in a fresh subprocess so that peak memory (ru_maxrss) is its own. Reported:
frames per second per camera the engine sustains (10 = real time at 10 FPS), peak memory,
engine memory, occupancy density, and the fast/dense ratio where both ran.

    python -m benchmarks.engine_speed                  # the default sweep (~15-25 min)
    python -m benchmarks.engine_speed --quick          # a small sweep for a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def simulate(n_cameras: int, seconds: float, seed: int) -> tuple[object, list, float]:
    from camtopo.simulation.engine import Simulation

    sim = Simulation.from_name("campus", n_cameras, seed=seed)
    ticks = []
    occupied = 0
    for tick in sim.ticks(int(seconds * sim.fps)):
        keep = tick.available[tick.cam]
        ticks.append((tick.index, tick.available, tick.cam[keep], tick.window[keep]))
        occupied += int(keep.sum())
    density = occupied / max(1, sum(int(t[1].sum()) for t in ticks))
    return sim.network, ticks, density


def run_one(engine: str, n_cameras: int, seconds: float, seed: int) -> dict[str, float]:
    """Time one engine on one network (called in a subprocess)."""
    from camtopo.core.topology import TopologyEstimator
    from camtopo.settings import Settings

    network, ticks, density = simulate(n_cameras, seconds, seed)
    settings = Settings(transit={"enabled": False})  # the exclusion engine alone (issue 2, item 6)
    est = TopologyEstimator(network, settings.estimator_parameters(), engine)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Warm the JIT on a copy so compile time is not counted as throughput.
    warm = TopologyEstimator(network, settings.estimator_parameters(), engine)
    for t, avail, cam, win in ticks[:70]:
        warm.buffer.add_tick(t, avail, cam, win)
    warm.finish()
    del warm
    started = time.perf_counter()
    for t, avail, cam, win in ticks:
        est.buffer.add_tick(t, avail, cam, win)
        if t % 64 == 63:
            est.advance(t - 8)
    est.finish()
    elapsed = time.perf_counter() - started
    topo = est.topology()
    n_ticks = len(ticks)
    out = {
        "engine": engine,
        "cameras": n_cameras,
        "windows": network.n_windows,
        "sim_seconds": seconds,
        "elapsed_s": elapsed,
        "fps": n_ticks / elapsed,  # frames per second per camera the engine keeps up with
        "realtime_factor": n_ticks / elapsed / network.fps,
        "occupied_per_camera_frame": density,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before / 1024,
        "engine_mb": getattr(est.counts, "nbytes", 0) / 2**20,
        "window_edges": len(topo.window_edges),
    }
    stats = getattr(est.counts, "stats", None)
    if stats is not None:
        s = stats()
        out["live_segments"] = s.live_segments
        out["pruned_segments"] = s.pruned_segments
        out["refused"] = s.refused_allocations
    return out


def in_subprocess(engine: str, n: int, seconds: float, seed: int) -> dict[str, float] | None:
    cmd = [sys.executable, "-m", "benchmarks.engine_speed", "--one", engine, str(n),
           "--seconds", str(seconds), "--seed", str(seed)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {engine} {n}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sustained_cameras(rows: list[dict[str, float]], fps: float = 10.0) -> float | None:
    """Largest camera count at which the engine kept up with ``fps`` (linear interpolation)."""
    rows = sorted(rows, key=lambda r: r["cameras"])
    best = None
    for a, b in itertools.pairwise(rows):
        if a["fps"] >= fps > b["fps"]:
            frac = (a["fps"] - fps) / (a["fps"] - b["fps"])
            return a["cameras"] + frac * (b["cameras"] - a["cameras"])
    if rows and rows[-1]["fps"] >= fps:
        best = rows[-1]["cameras"]  # kept up everywhere: a lower bound
    return best


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for engine, style in (("fast", "o-"), ("dense", "s--")):
        rs = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["cameras"])
        if not rs:
            continue
        cams = [r["cameras"] for r in rs]
        ax1.semilogy(cams, [r["fps"] for r in rs], style, label=f"{engine} engine")
        ax2.plot(cams, [r["peak_rss_mb"] / 1024 for r in rs], style, label=f"{engine} engine")
    ax1.axhline(10, color="red", lw=1, label="10 FPS")
    ax1.set(xlabel="cameras (108 windows each)", ylabel="frames/s/camera", title="Throughput")
    ax2.axhline(6, color="red", lw=1, label="6 GB target")
    ax2.set(xlabel="cameras", ylabel="peak memory (GB)", title="Peak memory")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Exclusion engine on 2 cores (paper Fig. 6: ~1,000 cameras on 8 cores, 24 GB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "CAMERAS"))
    ap.add_argument("--seconds", type=float, default=120.0, help="simulated seconds (fast)")
    ap.add_argument("--dense-seconds", type=float, default=12.8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fast", default="100,250,400,700,1000,1500,2000")
    ap.add_argument("--dense", default="100,250,400")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.seconds, args.seed)))
        return 0
    if args.quick:
        args.fast, args.dense, args.seconds, args.dense_seconds = "50,100", "50,100", 20, 6.4
    rows: list[dict[str, float]] = []
    plan = [("dense", int(n), args.dense_seconds) for n in args.dense.split(",") if n] + [
        ("fast", int(n), args.seconds) for n in args.fast.split(",") if n
    ]
    print(f"{'engine':<7}{'cams':>6}{'fps/cam':>10}{'x realtime':>11}{'peak GB':>9}"
          f"{'engine GB':>10}{'occ/cam-frame':>14}{'edges':>7}")  # fmt: skip
    for engine, n, seconds in plan:
        row = in_subprocess(engine, n, seconds, args.seed)
        if row is None:
            continue
        rows.append(row)
        print(
            f"{engine:<7}{n:>6}{row['fps']:>10.1f}{row['realtime_factor']:>11.2f}"
            f"{row['peak_rss_mb'] / 1024:>9.2f}{row['engine_mb'] / 1024:>10.2f}"
            f"{row['occupied_per_camera_frame']:>14.2f}{row['window_edges']:>7}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    fast = [r for r in rows if r["engine"] == "fast"]
    dense = [r for r in rows if r["engine"] == "dense"]
    common = sorted({r["cameras"] for r in fast} & {r["cameras"] for r in dense})
    for n in common:
        f = next(r for r in fast if r["cameras"] == n)
        d = next(r for r in dense if r["cameras"] == n)
        print(f"fast/dense throughput at {n} cameras: {f['fps'] / d['fps']:.1f}x")
    print(f"sustained cameras at 10 FPS: fast {sustained_cameras(fast)}, "
          f"dense {sustained_cameras(dense)}")  # fmt: skip
    (RESULTS / "engine_speed.json").write_text(json.dumps(rows, indent=1))
    plot(rows, RESULTS / "engine_speed.png")
    print(f"wrote {RESULTS / 'engine_speed.json'} and engine_speed.png")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
