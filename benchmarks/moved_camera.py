"""Moved-camera benchmark: how soon a re-aimed camera's stale links go and its new ones come.

Each case simulates a campus where one camera (drawn from those with overlap links) is
re-mounted elsewhere at ``--move-at`` minutes (camtopo.simulation.CameraMove), then runs
``camtopo estimate`` on the same trace with moved-camera detection off and on (default
thresholds, camtopo.core.moved.MoveParams), snapshotting the topology every minute. Per minute
since the move it reports, for the moved camera, the stale links still reported (links of the
old layout that the new one lacks) and the new links found (links of the new layout the old
one lacked), and camera-link precision of all other links (against the truth of the layout of
that minute). The normal networks of benchmarks/accuracy.py (no move) are run with detection
on to count false alarms.

    python -m benchmarks.moved_camera              # 3 campus cases + 4 normal networks
    python -m benchmarks.moved_camera --quick      # 1 case, no normal networks

Writes benchmarks/results/moved_camera.json and moved_camera.png. Targets (issue 20 item 6):
stale links gone within 10 minutes, new links found within 15, precision elsewhere unchanged.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
TARGETS = {"stale_gone_min": 10, "new_found_min": 15}


@dataclass(frozen=True)
class Case:
    scenario: str
    cameras: int
    seed: int
    move_at_s: float  # 0: no move (false-alarm run)
    duration_s: float

    @property
    def key(self) -> str:
        move = f"-move{self.move_at_s:.0f}" if self.move_at_s else ""
        return f"{self.scenario}-{self.cameras}-seed{self.seed}-{self.duration_s:.0f}s{move}"


def moved_cases(seeds: list[int], cameras: int, move_at_s: float, after_s: float) -> list[Case]:
    return [Case("campus", cameras, s, move_at_s, move_at_s + after_s) for s in seeds]


# The normal networks of benchmarks/accuracy.py (same keys: its cached traces are reused).
NORMAL = [
    Case("campus", 100, 1, 0.0, 3600.0),
    Case("corridor", 40, 1, 0.0, 3600.0),
    Case("plaza", 30, 1, 0.0, 3600.0),
    Case("branching", 60, 1, 0.0, 3600.0),
]


def pick_camera(sim: Any, seed: int) -> int:
    """A camera with at least two overlap links in the initial layout (drawn from ``seed``)."""
    truth = sim.static_truth
    degree = np.zeros(sim.cameras.n, dtype=int)
    for a, b in truth.camera_overlap_m2:
        degree[a] += 1
        degree[b] += 1
    choice = np.flatnonzero(degree >= 2)
    return int(np.random.default_rng([seed, 99]).choice(choice))


def generate(case: Case, cache: Path) -> Path:
    from camtopo.simulation import CameraMove, Simulation, build_scenario, write_scenario

    out = cache / case.key
    if (out / "truth.json").exists():  # written last: its presence means the run completed
        return out
    scenario = build_scenario(case.scenario, case.cameras, case.seed)
    moves = []
    if case.move_at_s:
        probe = Simulation(scenario, seed=case.seed, warmup_s=0)
        moves = [CameraMove(pick_camera(probe, case.seed), case.move_at_s, case.seed)]
    sim = Simulation(scenario, seed=case.seed, moves=moves)
    summary = write_scenario(out, sim, case.duration_s, progress=False)
    (out / "meta.json").write_text(json.dumps({**asdict(case), **summary}, indent=1))
    return out


def _links(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(min(x["a"], x["b"]), max(x["a"], x["b"])) for x in items}


def run_case(case: Case, cache: Path) -> dict[str, Any]:
    from camtopo import estimate
    from camtopo.core.grid import Network
    from camtopo.core.moved import MoveParams
    from camtopo.settings import get_settings

    folder = generate(case, cache)
    network = Network.load(folder / "network.json")
    truth = json.loads((folder / "truth.json").read_text())
    settings = get_settings()
    out: dict[str, Any] = {"case": asdict(case), "runs": {}}
    after = _links(truth["camera_links"])
    before = _links(truth["before"]["camera_links"]) if "before" in truth else after
    moved = truth["moves"][0]["camera"] if "moves" in truth else None
    if moved is not None:
        mine_before = {p for p in before if moved in p}
        mine_after = {p for p in after if moved in p}
        stale, new = mine_before - mine_after, mine_after - mine_before
        kinds = {_pair(x): x["kind"] for x in truth["camera_links"]}
        # Exclusion learns overlap links; transit links come from the transit evidence,
        # which reports a link only after min_report_age_s (20 min) of evidence.
        new_overlap = {q for q in new if kinds[q] == "overlap"}
        out["moved"] = {
            "camera": moved,
            "stale": sorted(map(list, stale)),
            "new": sorted(map(list, new)),
            "new_kinds": {f"{a}-{b}": kinds[(a, b)] for a, b in sorted(new)},
        }
    for label, moves in (("off", None), ("on", MoveParams())):
        if moved is None and moves is None:
            continue  # a normal network is run with detection on only
        t0 = time.perf_counter()
        res = estimate.estimate_trace(
            folder / "occupancy.jsonl", network, settings, snapshot_every_s=60.0,
            progress=False, moves=moves,
        )  # fmt: skip
        est = res.estimator
        events = [asdict(e) for e in est.move_events] if est is not None else []
        tick_s = 1 / network.fps
        for e in events:
            e["t_min"] = round(e["tick"] * tick_s / 60, 2)
        curve = []
        for snap in res.history:
            t = snap.t_s
            truth_now = after if (moved is None or t >= case.move_at_s) else before
            found = {(min(a, b), max(a, b)) for a, b, _ in snap.camera_links}
            row: dict[str, Any] = {"t_min": round(t / 60, 2)}
            others = {p for p in found if moved not in p} if moved else found
            true_others = {p for p in truth_now if moved not in p} if moved else truth_now
            row["precision_elsewhere"] = len(others & true_others) / max(len(others), 1)
            row["recall_elsewhere"] = len(others & true_others) / max(len(true_others), 1)
            if moved is not None:
                row["stale"] = len(found & stale)
                row["new"] = len(found & new)
                row["new_overlap"] = len(found & new_overlap)
                row["moved_false"] = len({p for p in found if moved in p} - truth_now)
            curve.append(row)
        out["runs"][label] = {
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "events": events,
            "curve": curve,
        }
        if moved is not None:
            out["runs"][label].update(
                _times(curve, case.move_at_s / 60, len(stale), len(new), len(new_overlap))
            )
    return out


def _pair(x: dict[str, Any]) -> tuple[str, str]:
    return (min(x["a"], x["b"]), max(x["a"], x["b"]))


def _times(curve: list[dict[str, Any]], move_min: float, n_stale: int, n_new: int, n_overlap: int):  # type: ignore[no-untyped-def]
    """Minutes from the move until no stale link is reported for good, and until every new
    overlap link is (None: not within the run)."""
    post = [r for r in curve if r["t_min"] >= move_min]
    gone = next(
        (
            r["t_min"] - move_min
            for k, r in enumerate(post)
            if all(x["stale"] == 0 for x in post[k:])
        ),
        None,
    )
    found = next(
        (r["t_min"] - move_min for r in post if r["new_overlap"] >= n_overlap and n_overlap),
        None,
    )
    # A stale pair can come back later as a false link of the fresh evidence (a surge).
    first_gone = next((r["t_min"] - move_min for r in post if r["stale"] == 0), None)
    back = [round(r["t_min"] - move_min) for r in post if first_gone is not None
            and r["t_min"] - move_min > first_gone and r["stale"]]  # fmt: skip
    pre = [r["precision_elsewhere"] for r in curve if move_min - 10 <= r["t_min"] < move_min]
    after = [r["precision_elsewhere"] for r in post if r["t_min"] >= move_min + 10]
    return {
        "stale_gone_min": None if gone is None else round(gone, 1),
        "stale_first_gone_min": None if first_gone is None else round(first_gone, 1),
        "stale_back_at_min": back,
        "new_found_min": None if found is None else round(found, 1),
        "new_found_final": post[-1]["new"] if post else 0,
        "new_overlap_final": post[-1]["new_overlap"] if post else 0,
        "n_stale": n_stale,
        "n_new": n_new,
        "n_new_overlap": n_overlap,
        "precision_elsewhere_before": round(float(np.mean(pre)), 3) if pre else None,
        "precision_elsewhere_after": round(float(np.mean(after)), 3) if after else None,
    }


def format_case(r: dict[str, Any]) -> str:
    c = r["case"]
    head = f"{c['scenario']}-{c['cameras']} seed {c['seed']}"
    if "moved" not in r:
        ev = r["runs"]["on"]["events"]
        return f"{head} (no move, 1 h): {len(ev)} false alarm(s) {[e['camera'] for e in ev]}"
    m = r["moved"]
    move_min = c["move_at_s"] / 60
    lines = [
        f"{head}: {m['camera']} moved at {move_min:.0f} min; stale links {m['stale']}, "
        f"new links {m['new']} ({m['new_kinds']})"
    ]
    for label in ("off", "on"):
        run = r["runs"][label]
        det = ", ".join(
            f"{e['camera']} {e['cause']} at {e['t_min']:.1f} min" for e in run["events"]
        )
        lines.append(
            f"  detection {label:>3}: stale gone after {run['stale_first_gone_min']} min "
            f"(back at {run['stale_back_at_min']} min; gone for good after "
            f"{run['stale_gone_min']}), new overlap "
            f"links all found after {run['new_found_min']} min; at the end new overlap "
            f"{run['new_overlap_final']}/{run['n_new_overlap']}, all new "
            f"{run['new_found_final']}/{run['n_new']}; precision elsewhere (10 min before "
            f"-> from 10 min after) {run['precision_elsewhere_before']} -> "
            f"{run['precision_elsewhere_after']}" + (f"; events: {det}" if det else "")
        )
    lines.append(
        "  min since move | stale off/on | new overlap off/on | new (all) off/on "
        "| precision elsewhere off/on"
    )
    off, on = r["runs"]["off"]["curve"], r["runs"]["on"]["curve"]
    for a, b in zip(off, on, strict=False):
        k = a["t_min"] - move_min
        if -2 <= k <= 30 and round(k) == round(k, 1):
            lines.append(
                f"  {k:14.0f} | {a['stale']:5d}/{b['stale']:<5d} "
                f"| {a['new_overlap']:8d}/{b['new_overlap']:<8d} | {a['new']:6d}/{b['new']:<8d} "
                f"| {a['precision_elsewhere']:.3f}/{b['precision_elsewhere']:.3f}"
            )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [r for r in results if "moved" in r]
    fig, axes = plt.subplots(1, len(cases), figsize=(5.2 * len(cases), 3.8), squeeze=False)
    for ax, r in zip(axes[0], cases, strict=True):
        move_min = r["case"]["move_at_s"] / 60
        for label, style in (("off", "--"), ("on", "-")):
            curve = r["runs"][label]["curve"]
            t = [x["t_min"] - move_min for x in curve]
            ax.step(t, [x["stale"] for x in curve], style, color="tab:red", where="post",
                    label=f"stale links, detection {label}")  # fmt: skip
            ax.step(t, [x["new_overlap"] for x in curve], style, color="tab:blue", where="post",
                    label=f"new overlap links, detection {label}")  # fmt: skip
            ax.step(t, [x["new"] - x["new_overlap"] for x in curve], style, color="tab:green",
                    where="post", label=f"new transit links, detection {label}")  # fmt: skip
        for x, c in ((10, "tab:red"), (15, "tab:blue")):
            ax.axvline(x, color=c, lw=0.6, ls=":")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlim(-5, None)
        c = r["case"]
        ax.set_title(f"campus-{c['cameras']} seed {c['seed']}: {r['moved']['camera']} moved")
        ax.set_xlabel("minutes since the move")
        ax.set_ylabel("links of the moved camera")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one case, no normal networks")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--cameras", type=int, default=100)
    p.add_argument("--move-at", type=float, default=20.0, help="minutes")
    p.add_argument("--after", type=float, default=30.0, help="minutes simulated after the move")
    p.add_argument("--no-normal", action="store_true", help="skip the false-alarm networks")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--summarise", action="store_true", help="re-print the saved results")
    args = p.parse_args(argv)
    if args.summarise:
        saved = json.loads((args.results_dir / "moved_camera.json").read_text())
        for r in saved["cases"]:
            for run in r["runs"].values():
                if "moved" in r:
                    m = r["moved"]
                    n_overlap = sum(k == "overlap" for k in m["new_kinds"].values())
                    run.update(_times(run["curve"], r["case"]["move_at_s"] / 60,
                                      len(m["stale"]), len(m["new"]), n_overlap))  # fmt: skip
            print(format_case(r))
            print()
        (args.results_dir / "moved_camera.json").write_text(json.dumps(saved, indent=1))
        return 0
    seeds = args.seeds[:1] if args.quick else args.seeds
    cases = moved_cases(seeds, args.cameras, args.move_at * 60, args.after * 60)
    if not (args.quick or args.no_normal):
        cases += NORMAL
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_case, cases, [args.cache_dir] * len(cases)))
    for r in results:
        print(format_case(r))
        print()
    from camtopo.core.moved import MoveParams

    out = {
        "targets": TARGETS,
        "move_params": asdict(MoveParams()),
        "wall_s": round(time.perf_counter() - started, 1),
        "cases": results,
    }
    stem = "moved_camera-quick" if args.quick else "moved_camera"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(out, indent=1))
    plot(results, args.results_dir / f"{stem}.png")
    print(f"wrote {args.results_dir / (stem + '.json')} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
