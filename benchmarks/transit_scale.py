"""What the transit estimator's slot cap costs at scale: one simulated campus fed, block by
block as the simulator makes it, to several transit estimators that differ only in
``max_dest`` (destination zones tracked per source zone). The largest cap holds every zone
pair, so nothing goes untracked: the reference the capped ones are scored against.

Only the transit evidence runs (no exclusion counts); the truth's camera overlaps stand in for
the overlaps the exclusion core would find (legs of indirect links), the same for every cap.
Every ``--snapshot`` simulated minutes: transit-kind edges against the truth (true / found,
recall of the detectable links: walked at least 10 times per simulated hour with a median
transit within the lag range), untracked pair updates, slots released, seconds of update.

    python -m benchmarks.transit_scale --cameras 1000 --minutes 60 --caps 256 1024 2000

Writes benchmarks/results/transit_scale.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from camtopo.evaluation.score import directions

RESULTS = Path(__file__).resolve().parent / "results"


def run(cameras: int, minutes: float, caps: list[int], seed: int, snapshot_min: float) -> dict:
    from tqdm import tqdm

    from benchmarks.transit import truth_sets
    from camtopo.core.ticks import OccupancyBuffer
    from camtopo.core.transit import TransitEstimator, TransitParams
    from camtopo.settings import Settings
    from camtopo.simulation.engine import Simulation

    settings = Settings()
    sim = Simulation.from_name("campus", cameras, seed=seed)
    network = sim.network
    buffer = OccupancyBuffer(
        network, settings.temporal_tolerance_ticks, settings.algorithm.spatial_radius
    )
    defaults = TransitParams()
    zones = defaults.zone_cols * defaults.zone_rows * network.n_cameras
    caps = [min(c, zones) for c in caps]  # a cap above the zones = every pair tracked
    ests = {c: TransitEstimator(network, TransitParams(max_dest=c)) for c in caps}
    spent = dict.fromkeys(caps, 0.0)
    rows: list[dict[str, Any]] = []
    per_snapshot = round(snapshot_min * 60 * sim.fps)
    n_ticks = round(minutes * 60 * sim.fps)
    started = time.perf_counter()
    for tick in tqdm(sim.ticks(n_ticks), total=n_ticks, desc=f"campus-{cameras}", mininterval=5):
        keep = tick.available[tick.cam]
        buffer.add_tick(tick.index, tick.available, tick.cam[keep], tick.window[keep])
        if (tick.index + 1) % 64 == 0:
            for block in buffer.release(tick.index + 1):
                for c, est in ests.items():
                    lap = time.perf_counter()
                    est.update(block)
                    spent[c] += time.perf_counter() - lap
        if (tick.index + 1) % per_snapshot == 0:
            hours = (tick.index + 1) / sim.fps / 3600
            truth = sim.truth()
            sets = truth_sets(truth, max(1, round(10 * hours)), settings.transit.max_lag_s)
            names = network.cameras
            overlaps = {
                tuple(sorted((network.camera_index(x["a"]), network.camera_index(x["b"]))))
                for x in truth["camera_links"]
                if x["kind"] == "overlap"
            }
            row: dict[str, Any] = {
                "minute": (tick.index + 1) / sim.fps / 60,
                "detectable": len(sets["detectable"]),
                "wall_s": time.perf_counter() - started,
            }
            for c, est in ests.items():
                found = {
                    tuple(sorted((names[d.src], names[d.dst])))
                    for d in est.directed(overlaps=overlaps)
                    if (min(d.src, d.dst), max(d.src, d.dst)) not in overlaps
                }
                true = found & set(sets["transit"])
                counters = est.counters()
                walked = _walked(truth)
                slots, *_ = est.zone_links()
                age: dict[tuple[str, ...], float] = {}  # minutes of evidence behind each edge
                for sl in slots.tolist():
                    a = names[est.zone_camera[sl // est.params.max_dest]]
                    b = names[est.zone_camera[est.slot_dst[sl]]]
                    k = tuple(sorted((a, b)))
                    minutes_ = (est.now - est.slot_born[sl]) / sim.fps / 60
                    age[k] = max(age.get(k, 0.0), minutes_)
                false_age = [age[k] for k in found - true if k in age]
                row[str(c)] = {
                    "found": len(found),
                    "true": len(true),
                    "precision": len(true) / len(found) if found else 1.0,
                    "recall_detectable": len(found & sets["detectable"]) / len(sets["detectable"])
                    if sets["detectable"]
                    else 1.0,
                    "untracked_share": counters["untracked_pair_updates"]
                    / max(1, counters["untracked_pair_updates"] + counters["pair_updates"]),
                    "slots_released": counters["slots_released"],
                    "update_s": spent[c],
                    "memory_mb": est.memory_bytes() / 2**20,
                    # false edges by walked hops between their cameras (2: through one camera)
                    "false_by_hops": _hops(walked, found - true),
                    "false_slot_age_min_median": float(np.median(false_age)) if false_age else None,
                }
            rows.append(row)
            print(format_row(row, caps), file=sys.stderr, flush=True)
    return {"cameras": cameras, "minutes": minutes, "seed": seed, "caps": caps, "rows": rows}


def _walked(truth: dict[str, Any]) -> dict[str, set[str]]:
    """Cameras people walked to from each camera (either kind of link), from the truth."""
    out: dict[str, set[str]] = {}
    for x in truth["camera_links"]:
        if x["kind"] == "overlap":
            out.setdefault(x["a"], set()).add(x["b"])
            out.setdefault(x["b"], set()).add(x["a"])
        for src, dst, d in directions(x):
            if d.get("walkers", 0) > 0:
                out.setdefault(src, set()).add(dst)
    return out


def _hops(walked: dict[str, set[str]], pairs: set[tuple[str, ...]], cap: int = 6) -> dict:
    """How many walked hops separate each pair (the shorter way; ">6" beyond ``cap``)."""

    def dist(a: str, b: str) -> int:
        seen, frontier = {a}, {a}
        for d in range(1, cap + 1):
            frontier = {y for x in frontier for y in walked.get(x, ())} - seen
            if b in frontier:
                return d
            seen |= frontier
        return cap + 1

    counts: dict[str, int] = {}
    for a, b in pairs:
        d = min(dist(a, b), dist(b, a))
        key = str(d) if d <= cap else f">{cap}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def format_row(row: dict[str, Any], caps: list[int]) -> str:
    parts = [f"min {row['minute']:5.1f} detectable {row['detectable']:4d}"]
    for c in caps:
        r = row[str(c)]
        parts.append(
            f"K={c}: {r['true']}/{r['found']} true, R(det) {r['recall_detectable']:.2f}, "
            f"untracked {r['untracked_share']:.0%}, released {r['slots_released']}, "
            f"{r['update_s']:.0f} s, false by hops {r['false_by_hops']}"
        )
    return " | ".join(parts)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    t = [r["minute"] for r in result["rows"]]
    for c in result["caps"]:
        rs = [r[str(c)] for r in result["rows"]]
        (line,) = ax.plot(t, [r["recall_detectable"] for r in rs], label=f"K={c} recall (det.)")
        ax.plot(t, [r["precision"] for r in rs], ":", color=line.get_color(),
                label=f"K={c} precision")  # fmt: skip
        bx.plot(t, [r["untracked_share"] for r in rs], color=line.get_color(), label=f"K={c}")
    ax.set_title(f"campus-{result['cameras']}: transit-kind edges by slot cap")
    bx.set_title("share of pair updates without a slot")
    for a in (ax, bx):
        a.set_xlabel("simulated minutes")
        a.set_ylim(-0.02, 1.02)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--caps", type=int, nargs="+", default=[256, 1024, 2000])
    p.add_argument("--snapshot", type=float, default=10.0, help="minutes between scores")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stem", default="transit_scale")
    args = p.parse_args(argv)
    result = run(args.cameras, args.minutes, args.caps, args.seed, args.snapshot)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, RESULTS / f"{args.stem}.png")
    print(format_row(result["rows"][-1], result["caps"]) if result["rows"] else "no snapshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
