"""Does the exclusion engine's memory level off? Live segments over a long simulated run.

The streaming benchmark runs minutes; whether the engine's pool stops growing needs an hour.
This runs the estimator alone (no Kafka) on a simulated campus, fed tick by tick as the
simulator makes them (nothing held in memory), and records every simulated minute: live,
pruned and ever-touched segments, the engine's bytes and the process RSS, and what the
counting cost follows: occupied (window, tick) pairs (the crowd; campus has lecture-change
surges), seconds spent counting, segments pruned and re-admitted. One run per pool budget
(``--budgets``, MB; 0 = the default setting), each in its own subprocess.

    python -m benchmarks.engine_memory --cameras 1000 --minutes 40 --budgets 0 1024
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_one(cameras: int, minutes: float, budget_mb: int, seed: int) -> dict:
    from tqdm import tqdm

    from camtopo.core.topology import TopologyEstimator
    from camtopo.evaluation.score import score_sets
    from camtopo.settings import Settings
    from camtopo.simulation.engine import Simulation

    settings = Settings(transit={"enabled": False})
    if budget_mb:
        settings = settings.replace(algorithm={"max_pool_mb": budget_mb})
    sim = Simulation.from_name("campus", cameras, seed=seed)
    est = TopologyEstimator(sim.network, settings.estimator_parameters())
    per_minute = 60 * sim.fps
    counts = est.counts
    rows: list[dict] = []
    started = time.perf_counter()
    counting = 0.0  # seconds in est.advance this minute
    last = {"occupied": 0, "pruned": 0, "readmitted": 0}
    n_ticks = int(minutes * per_minute)
    for tick in tqdm(sim.ticks(n_ticks), total=n_ticks, desc=f"{budget_mb or 'default'} MB"):
        keep = tick.available[tick.cam]
        est.buffer.add_tick(tick.index, tick.available, tick.cam[keep], tick.window[keep])
        if (tick.index + 1) % 64 == 0:  # whole 64-tick blocks, as the processors release them
            lap = time.perf_counter()
            est.advance(tick.index + 1)
            counting += time.perf_counter() - lap
        if (tick.index + 1) % per_minute == 0:
            stats = counts.stats()  # type: ignore[attr-defined]
            now = {
                "occupied": est.observations,
                "pruned": counts.pruned_total,  # type: ignore[attr-defined]
                "readmitted": counts.readmitted_total,  # type: ignore[attr-defined]
            }
            rows.append(
                {
                    "minute": (tick.index + 1) // per_minute,
                    "live_segments": stats.live_segments,
                    "pruned_segments": stats.pruned_segments,
                    "touched_segments": int(counts.high_water),  # type: ignore[attr-defined]
                    "refused_total": stats.refused_allocations,
                    "engine_mb": stats.nbytes / 2**20,
                    "rss_mb": rss_mb(),
                    "wall_s": time.perf_counter() - started,
                    "count_s": counting,
                    **{k: v - last[k] for k, v in now.items()},
                }
            )
            last, counting = now, 0.0
    topo = est.topology()
    w = topo.window_edges
    label = sim.network.label
    score = score_sets(
        ((label(i), label(j)) for i, j in zip(w.i.tolist(), w.j.tolist(), strict=True)),
        ((e.a, e.b, e.kind) for e in topo.camera_edges),
        sim.truth(),
    )
    return {
        "cameras": cameras,
        "budget_mb": budget_mb or settings.algorithm.max_pool_mb,
        "minutes": minutes,
        "camera_edges": len(topo.camera_edges),
        "camera_overlap": asdict(score["camera_overlap"]),
        "rows": rows,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    for r in results:
        m = [row["minute"] for row in r["rows"]]
        label = f"{r['cameras']} cameras, pool budget {r['budget_mb']} MB"
        ax1.plot(m, [row["live_segments"] / 1e6 for row in r["rows"]], label=f"live, {label}")
        ax1.plot(m, [row["touched_segments"] / 1e6 for row in r["rows"]], "--",
                 label=f"touched, {label}")  # fmt: skip
        ax2.plot(m, [row["rss_mb"] / 1024 for row in r["rows"]], label=label)
        if "count_s" in r["rows"][0]:
            ax3.plot(m, [row["count_s"] for row in r["rows"]], label=f"counting s, {label}")
            ax3.plot(m, [row["occupied"] / 1e5 for row in r["rows"]], ":",
                     label=f"occupied (window, tick) / 1e5, {label}")  # fmt: skip
    ax1.set_ylabel("segments (millions)")
    ax1.set_title("Exclusion engine memory over a long run")
    ax1.legend(fontsize=7)
    ax2.set_ylabel("process RSS (GB)")
    ax2.legend(fontsize=7)
    ax3.set_ylabel("per simulated minute")
    ax3.set_title("Counting cost follows the crowd (lecture-change surges)")
    ax3.set_xlabel("simulated minutes")
    ax3.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--budgets", type=int, nargs="+", default=[0], help="MB; 0 = default")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.cameras, args.minutes, args.budgets[0], args.seed)))
        return 0
    results = []
    for budget in args.budgets:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.engine_memory", "--one", "--cameras",
             str(args.cameras), "--minutes", str(args.minutes), "--budgets", str(budget),
             "--seed", str(args.seed)],
            stdout=subprocess.PIPE, check=True, text=True,
        )  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_memory.json").write_text(json.dumps(results, indent=1))
    plot(results, RESULTS / "engine_memory.png")
    print(
        f"{'budget MB':>9} {'minute':>6} {'live M':>7} {'touched M':>9} {'RSS GB':>7} "
        f"{'occupied k':>10} {'count s':>7} {'readmitted k':>12}"
    )
    for r in results:
        for row in r["rows"][:: max(1, len(r["rows"]) // 8)] + r["rows"][-1:]:
            print(
                f"{r['budget_mb']:>9} {row['minute']:>6} {row['live_segments'] / 1e6:>7.2f} "
                f"{row['touched_segments'] / 1e6:>9.2f} {row['rss_mb'] / 1024:>7.2f} "
                f"{row['occupied'] / 1e3:>10.0f} {row['count_s']:>7.1f} "
                f"{row['readmitted'] / 1e3:>12.1f}"
            )
        ov = r["camera_overlap"]
        print(f"  overlap links: precision {ov['precision']:.3f}, recall {ov['recall']:.3f}")
    print(f"wrote {RESULTS / 'engine_memory.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
