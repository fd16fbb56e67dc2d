"""Accuracy benchmark: camtopo's exclusion estimator beside the Makris-style baseline.

Each network of the suite is simulated for one hour (seeded; cached under
``benchmarks/.cache/`` and reused), then ``camtopo estimate`` (snapshots every 300 s) and
``camtopo baseline`` run on the same trace and both are scored against the truth: window and
camera precision/recall (overall, overlap, transit), the simulated time each needed to reach
its final figures, and transit-time error where an estimator gives transit times. For
camtopo, the false window edges are broken down (which rows, how busy the windows, which
camera relation) — the figures that say what limits precision.

    python -m benchmarks.accuracy                 # the full suite (~15-30 min on 2 cores)
    python -m benchmarks.accuracy --quick         # small networks, 10 simulated min
    python -m benchmarks.accuracy --only campus-100
    python -m benchmarks.accuracy --window-level  # issue 24: window rules, seeds 1 and 2

Writes benchmarks/results/accuracy.json and accuracy.png; ``--window-level`` writes
accuracy_window.json, accuracy_window.png (window pairs) and accuracy_window_camera.png
(overlap camera links) instead (see "window level" below and docs/research/window_level.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"

# Issue 2's targets (camera level, overlap links, within one simulated hour).
TARGETS = {"camera_overlap": {"precision": 0.95, "recall": 0.90}}


@dataclass(frozen=True)
class Net:
    name: str
    scenario: str
    cameras: int
    duration_s: float
    seed: int = 1
    noise: bool = True
    appearance: bool = False  # blobs carry hue and brightness (the occupancy is the same)

    @property
    def key(self) -> str:
        clean = "" if self.noise else "-clean"
        looks = "-looks" if self.appearance else ""
        return (
            f"{self.scenario}-{self.cameras}-seed{self.seed}-{self.duration_s:.0f}s{clean}{looks}"
        )


SUITE = (
    Net("campus-100", "campus", 100, 3600.0),
    Net("corridor-40", "corridor", 40, 3600.0),
    Net("plaza-30", "plaza", 30, 3600.0),
    Net("branching-60", "branching", 60, 3600.0),
)
QUICK = (
    Net("campus-20", "campus", 20, 600.0),
    Net("corridor-12-clean", "corridor", 12, 1200.0, noise=False),
    Net("plaza-12", "plaza", 12, 600.0),
    Net("branching-16", "branching", 16, 600.0),
)


# --- one network ------------------------------------------------------------------------------


def generate(net: Net, cache: Path, progress: bool) -> Path:
    """Simulate ``net`` into ``cache/net.key`` unless a complete copy is there already."""
    from camtopo.core.grid import Grid
    from camtopo.settings import get_settings
    from camtopo.simulation import NoiseConfig, Simulation, build_scenario, write_scenario
    from camtopo.simulation.appearance import AppearanceConfig

    out = cache / net.key
    if (out / "truth.json").exists():  # written last: its presence means the run completed
        return out
    s = get_settings()
    grid = Grid(s.grid.cols, s.grid.rows, s.grid.frame_width, s.grid.frame_height)
    sim = Simulation(
        build_scenario(net.scenario, net.cameras, net.seed, grid),
        seed=net.seed,
        noise=NoiseConfig() if net.noise else NoiseConfig.off(),
        fps=s.grid.fps,
        appearance=AppearanceConfig() if net.appearance else None,
    )
    summary = write_scenario(out, sim, net.duration_s, progress=progress)
    (out / "meta.json").write_text(json.dumps({**asdict(net), **summary}, indent=1))
    return out


def run_network(net: Net, cache: Path, snapshot_s: float, progress: bool) -> dict[str, Any]:
    from camtopo import estimate
    from camtopo.core.grid import Network
    from camtopo.evaluation import baseline
    from camtopo.evaluation.score import score_topology
    from camtopo.settings import get_settings

    def say(msg: str) -> None:
        print(f"[{net.name}] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    folder = generate(net, cache, progress)
    say(f"trace ready in {time.perf_counter() - t0:.0f} s ({folder})")
    trace = folder / "occupancy.jsonl"
    network = Network.load(folder / "network.json")
    truth = json.loads((folder / "truth.json").read_text())
    settings = get_settings()

    say("camtopo estimate ...")
    res = estimate.estimate_trace(
        trace, network, settings, snapshot_every_s=snapshot_s, progress=progress
    )
    ours = estimate.topology_json(network, settings, res)
    (folder / "camtopo.topology.json").write_text(json.dumps(ours))
    say(f"camtopo done in {res.elapsed_s:.0f} s")

    say("baseline ...")
    bres = baseline.baseline_trace(trace, network, snapshot_every_s=snapshot_s, progress=progress)
    theirs = baseline.topology_json(network, bres)
    (folder / "baseline.topology.json").write_text(json.dumps(theirs))
    say(f"baseline done in {bres.elapsed_s:.0f} s")

    say("false-positive analysis ...")
    occupancy = window_occupancy(trace, network)
    return {
        "net": asdict(net),
        "cameras": network.n_cameras,
        "truth": truth_summary(truth),
        "camtopo": {
            "elapsed_s": res.elapsed_s,
            "score": score_topology(ours, truth),
            "transit_time": transit_time_error(ours, truth),
            "false_positives": false_positive_analysis(ours, truth, network, occupancy),
        },
        "baseline": {
            "elapsed_s": bres.elapsed_s,
            "score": score_topology(theirs, truth),
            "transit_time": transit_time_error(theirs, truth),
            "false_links": false_link_relations(theirs, truth),
        },
    }


def truth_summary(truth: dict[str, Any]) -> dict[str, Any]:
    kinds = Counter(link["kind"] for link in truth["camera_links"])
    transit = [
        x["transit_s"]
        for x in truth["camera_links"]
        if x["kind"] == "transit" and x.get("transit_s") is not None
    ]
    return {
        "window_overlaps": len(truth["window_overlaps"]),
        "overlap_links": kinds.get("overlap", 0),
        "transit_links": kinds.get("transit", 0),
        "transit_s_median": float(np.median(transit)) if transit else None,
        "transit_over_60s": int(sum(t > 60 for t in transit)),
        "transit_never_walked": kinds.get("transit", 0) - len(transit),
    }


def window_occupancy(trace: Path, network: Any) -> np.ndarray:
    """float64 (n_windows,): fraction of its camera's frames in which each window is occupied."""
    from camtopo.formats.traces import TraceError, read_trace

    hits = np.zeros(network.n_windows)
    frames = np.zeros(network.n_cameras)
    for item in read_trace(trace):
        if isinstance(item, TraceError):
            continue
        cam = network.camera_index(item.camera)
        frames[cam] += 1
        if item.occupied:
            hits[network.offsets[cam] + np.asarray(item.occupied)] += 1
    return hits / np.maximum(frames[network.window_camera], 1)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def false_positive_analysis(
    topo: dict[str, Any], truth: dict[str, Any], network: Any, occupancy: np.ndarray
) -> dict[str, Any]:
    """Where camtopo's false window edges are: rows, how busy, what camera relation."""
    true_w = {_pair(a, b) for a, b in truth["window_overlaps"]}
    links = {_pair(x["a"], x["b"]): x["kind"] for x in truth["camera_links"]}
    rows = network.grids[0].rows
    cols = network.grids[0].cols
    fp_rows, tp_rows = np.zeros(rows, int), np.zeros(rows, int)
    fp_occ, tp_occ = [], []
    relation: Counter[str] = Counter()
    per_window: Counter[str] = Counter()
    for e in topo["window_edges"]:
        a, b = e["a"], e["b"]
        ends = [network.parse_label(a), network.parse_label(b)]
        occ = [float(occupancy[g]) for g in ends]
        local = [int(x.rpartition(":")[2]) for x in (a, b)]
        if _pair(a, b) in true_w:
            for w in local:
                tp_rows[w // cols] += 1
            tp_occ += occ
            continue
        for w in local:
            fp_rows[w // cols] += 1
        fp_occ += occ
        cams = _pair(a.rpartition(":")[0], b.rpartition(":")[0])
        relation[links.get(cams, "unlinked")] += 1
        per_window[a] += 1
        per_window[b] += 1
    n_fp = int(sum(relation.values()))
    all_occ = occupancy[occupancy > 0]
    return {
        "false_window_edges": n_fp,
        "true_window_edges": len(topo["window_edges"]) - n_fp,
        "by_camera_relation": dict(relation),
        "false_ends_by_row": fp_rows.tolist(),  # row 0 = top of the image (far field)
        "true_ends_by_row": tp_rows.tolist(),
        "occupancy_false_median": float(np.median(fp_occ)) if fp_occ else None,
        "occupancy_true_median": float(np.median(tp_occ)) if tp_occ else None,
        "occupancy_all_windows_median": float(np.median(all_occ)) if len(all_occ) else None,
        "top_false_windows": [
            {
                "window": w,
                "false_edges": n,
                "occupancy": round(float(occupancy[network.parse_label(w)]), 4),
            }
            for w, n in per_window.most_common(8)
        ],
        "false_camera_links": false_link_relations(topo, truth),
    }


def false_link_relations(topo: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """Estimated camera links not in the truth, and the estimated kind they were given."""
    links = {_pair(x["a"], x["b"]) for x in truth["camera_links"]}
    false = [e for e in topo["camera_edges"] if _pair(e["a"], e["b"]) not in links]
    return {
        "n": len(false),
        "by_estimated_kind": dict(Counter(e["kind"] for e in false)),
        "examples": [[e["a"], e["b"], e["kind"]] for e in false[:8]],
    }


def transit_time_error(topo: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """Relative error of estimated transit times on found true transit links."""
    true_t = {
        _pair(x["a"], x["b"]): x.get("transit_s")
        for x in truth["camera_links"]
        if x["kind"] == "transit"
    }
    errs = [
        abs(e["transit_s"] - t) / t
        for e in topo["camera_edges"]
        if e.get("transit_s") is not None
        and (t := true_t.get(_pair(e["a"], e["b"]))) is not None
        and t > 0
    ]
    return {
        "links_with_time": len(errs),
        "median_rel_error": float(np.median(errs)) if errs else None,
        "within_20pct": int(sum(x <= 0.2 for x in errs)),
    }


# --- report -----------------------------------------------------------------------------------

LEVELS = ("window", "camera", "camera_overlap", "camera_transit")


def _cell(score: dict[str, Any], level: str) -> str:
    v = score["final"].get(level)
    if v is None:
        return f"{'-':>6}{'-':>6}{'-':>7}"
    t = score["time_to_final_s"].get(level)
    return f"{v['precision']:>6.2f}{v['recall']:>6.2f}{'' if t is None else f'{t:.0f}':>7}"


def format_network(r: dict[str, Any]) -> str:
    t = r["truth"]
    head = (
        f"{r['net']['name']}: {r['cameras']} cameras, {t['overlap_links']} overlap + "
        f"{t['transit_links']} transit links, {t['window_overlaps']} window overlaps, "
        f"{r['net']['duration_s'] / 60:.0f} simulated min"
        f"{'' if r['net']['noise'] else ' (noise-free)'}"
    )
    lines = [
        head,
        f"{'':<16}{'camtopo':^19} | {'baseline (xcorr)':^19} | target",
        f"{'level':<16}{'P':>6}{'R':>6}{'t(s)':>7} | {'P':>6}{'R':>6}{'t(s)':>7} |",
    ]
    for level in LEVELS:
        ours = _cell(r["camtopo"]["score"], level)
        theirs = (
            f"{'n/a':>6}{'':>13}" if level == "window" else _cell(r["baseline"]["score"], level)
        )
        tgt = TARGETS.get(level)
        target = (
            f"P>={tgt['precision']:.2f} R>={tgt['recall']:.2f}"
            if tgt
            else ("as measured" if level == "camera_transit" else "")
        )
        lines.append(f"{level:<16}{ours} | {theirs} | {target}")
    ct, bt = r["camtopo"]["transit_time"], r["baseline"]["transit_time"]

    def tt(x: dict[str, Any]) -> str:
        if not x["links_with_time"]:
            return "none"
        n, err = x["links_with_time"], x["median_rel_error"]
        return f"{x['within_20pct']}/{n} within 20%, median error {err:.0%}"

    lines.append(f"{'transit times':<16}camtopo: {tt(ct)}; baseline: {tt(bt)}")
    lines.append(
        f"{'run time (s)':<16}camtopo {r['camtopo']['elapsed_s']:.0f}, baseline "
        f"{r['baseline']['elapsed_s']:.0f}"
    )
    fp = r["camtopo"]["false_positives"]
    if fp["false_window_edges"]:
        lines.append(
            f"camtopo false window edges: {fp['false_window_edges']} "
            f"(camera relation {fp['by_camera_relation']}); ends by row (0 = top) "
            f"{fp['false_ends_by_row']} vs true {fp['true_ends_by_row']}; median occupancy "
            f"false {fp['occupancy_false_median']:.4f} / true "
            f"{fp['occupancy_true_median'] or 0:.4f} / all {fp['occupancy_all_windows_median']:.4f}"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 2)
    rows_ = -(-n // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(6.2 * cols, 4.2 * rows_), squeeze=False)
    for ax, r in zip(axes.ravel(), results, strict=False):
        for who, style in (("camtopo", "-"), ("baseline", "--")):
            curve = r[who]["score"]["curve"]
            t = [c["t_s"] / 60 for c in curve]
            for level, colour in (("camera_overlap", "tab:blue"), ("camera_transit", "tab:orange")):
                if not curve or level not in curve[0]:
                    continue
                ax.plot(
                    t,
                    [c[level]["recall"] for c in curve],
                    style,
                    color=colour,
                    label=f"{who} {level[7:]} recall",
                )
            ax.plot(
                t,
                [c["camera"]["precision"] for c in curve],
                style,
                color="tab:green",
                label=f"{who} camera precision",
            )
            if who == "camtopo":
                ax.plot(
                    t,
                    [c["window"]["precision"] for c in curve],
                    ":",
                    color="tab:red",
                    label="camtopo window precision",
                )
                ax.plot(
                    t,
                    [c["window"]["recall"] for c in curve],
                    ":",
                    color="tab:purple",
                    label="camtopo window recall",
                )
        ax.axhline(0.95, color="grey", lw=0.6)
        ax.axhline(0.90, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{r['net']['name']} ({r['cameras']} cameras)")
        ax.set_xlabel("simulated time (min)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("camtopo (solid) vs Makris-style cross-correlation baseline (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- window level (issue 24) -----------------------------------------------------------------
#
# Each network of the suite, for each seed, is counted once by the product's estimator (the
# same engine and settings as `camtopo estimate`), with the windows' activity (design effect,
# base rate) counted beside it from the same padded blocks. At every snapshot the counts are
# decided by each rule of window_rules() and scored: window pairs against the truth's
# window_overlaps, and camera links (camera_edges of the overlap pairs + transit, as
# TopologyEstimator.topology builds them) against its camera_links. The candidate pairs and
# the activity of the final counts are saved (np.savez, --state-dir) so that decisions can be
# re-run without recounting (--reuse-state).

WINDOW_SEEDS = (1, 2)
STATE_DIR = Path("/tmp/camtopo-window-state")


def window_rules() -> dict[str, Any]:
    """The rules compared: the paper's, today's (the settings' O_ref and C*), the test at its
    defaults, and the test at a stricter lift (about today's window precision)."""
    from camtopo.core.window_decision import WindowRule
    from camtopo.settings import get_settings

    s = get_settings()
    return {
        "paper": WindowRule.paper(),
        "today": WindowRule.threshold(s.algorithm.o_ref, s.algorithm.c_star),
        "test": WindowRule(),
        "test_strict": WindowRule(rho=0.2, rho_one_way=0.1),
    }


def _window_state(est: Any, activity: Any, c_min: float) -> dict[str, np.ndarray]:
    """What the decisions read from counts: candidate pairs both ways, activity, transit."""
    from camtopo.core.evidence import candidate_pairs

    i, j, o, p, o_r, p_r = candidate_pairs(est.counts, c_min)
    act = activity.activity()
    directed = est.transit.directed() if est.transit is not None else []
    transit = np.array(
        [[d.src, d.dst, d.z, d.observed, d.expected, d.median_s, d.p10_s, d.p90_s]
         for d in directed],
        dtype=np.float64,
    ).reshape(-1, 8)  # fmt: skip
    return {
        "i": i.astype(np.int32), "j": j.astype(np.int32), "o_ij": o.astype(np.int32),
        "p_ij": p.astype(np.int32), "o_ji": o_r.astype(np.int32), "p_ji": p_r.astype(np.int32),
        "occupied": act.occupied, "runs": act.runs, "padded": act.padded,
        "available": act.available, "transit": transit,
        "observed_ticks": np.array(est.observed_ticks),
    }  # fmt: skip


def decide_state(
    state: dict[str, np.ndarray], network: Any, truth: dict[str, Any], rules: dict[str, Any]
) -> dict[str, Any]:
    """Decide and score one counted state with every rule."""
    from camtopo.core.evidence import WindowEdges, c_prime, camera_edges
    from camtopo.core.topology import merge_transit
    from camtopo.core.transit import DirectedTransit
    from camtopo.core.window_decision import WindowActivity, decide
    from camtopo.evaluation.score import score_sets
    from camtopo.settings import get_settings

    settings = get_settings()
    args = [state[k].astype(np.int64) for k in ("i", "j", "o_ij", "p_ij", "o_ji", "p_ji")]
    activity = WindowActivity(state["occupied"], state["runs"], state["padded"], state["available"])
    neighbours = network.neighbour_table(settings.algorithm.spatial_radius)
    directed = [DirectedTransit(int(r[0]), int(r[1]), *map(float, r[2:])) for r in state["transit"]]
    # Pairs whose counts both ways are known: every pair in `state` (C_ij >= c_min one way).
    i, j, o_ij, p_ij, o_ji, p_ji = args

    def labelled(a: np.ndarray, b: np.ndarray) -> list[tuple[str, str]]:
        pairs = zip(a.tolist(), b.tolist(), strict=True)
        return [(network.label(x), network.label(y)) for x, y in pairs]

    out: dict[str, Any] = {}
    for name, rule in rules.items():
        rel = decide(*args, activity, rule, neighbours)
        # Overlap pairs with their evidence, for camera links (as in TopologyEstimator).
        key = i * network.n_windows + j
        order = np.argsort(key)
        pos = order[np.searchsorted(key[order], rel.overlap_i * network.n_windows + rel.overlap_j)]
        edges = WindowEdges(
            rel.overlap_i, rel.overlap_j, o_ij[pos], p_ij[pos], o_ji[pos], p_ji[pos],
            c_prime(p_ij[pos], o_ij[pos], settings.algorithm.o_ref),
            c_prime(p_ji[pos], o_ji[pos], settings.algorithm.o_ref),
        )  # fmt: skip
        cams = merge_transit(network, camera_edges(network, edges), directed)
        lo, hi = rel.pairs()
        scores = score_sets(labelled(lo, hi), [(c.a, c.b, c.kind) for c in cams], truth)
        only_overlap = score_sets(labelled(rel.overlap_i, rel.overlap_j), [], truth)["window"]
        inside = score_sets(labelled(rel.inside_i, rel.inside_j), [], truth)["window"]
        out[name] = {
            **{k: asdict(v) for k, v in scores.items()},
            "window_f1": _f1(scores["window"].precision, scores["window"].recall),
            "overlap_pairs": asdict(only_overlap),
            "contained_in_pairs": asdict(inside),
        }
    return out


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def run_window_network(
    net: Net, cache: Path, state_dir: Path, snapshot_s: float, reuse: bool, progress: bool
) -> dict[str, Any]:
    """Count ``net`` (or reuse its saved state) and score every rule at every snapshot."""
    from camtopo.core.grid import Network
    from camtopo.core.topology import TopologyEstimator
    from camtopo.core.window_decision import ActivityCounter
    from camtopo.formats.traces import TraceError, read_trace
    from camtopo.settings import get_settings

    def say(msg: str) -> None:
        print(f"[{net.key}] {msg}", file=sys.stderr, flush=True)

    folder = generate(net, cache, progress)
    network = Network.load(folder / "network.json")
    truth = json.loads((folder / "truth.json").read_text())
    rules = window_rules()
    c_min = min(r.c0 for r in rules.values() if r.kind == "test")
    saved = state_dir / f"{net.key}.npz"
    if reuse and saved.exists():
        say(f"reusing {saved}")
        state = dict(np.load(saved))
        final = decide_state(state, network, truth, rules)
        return {"net": asdict(net), "truth": truth_summary(truth), "final": final, "curve": []}

    settings = get_settings()
    activity = ActivityCounter(network.window_camera)

    class Counting(TopologyEstimator):
        def _count(self, blocks: Any) -> int:
            def tee() -> Any:
                for block in blocks:
                    activity.update(block)
                    yield block

            return super()._count(tee())

    est = Counting(network, settings)
    reorder = max(1, est.tick_of(2000))  # as `camtopo estimate` (reorder_ms 2000)
    frontier: int | None = None
    first: int | None = None
    advanced = -(2**62)
    next_snap = snapshot_s
    curve: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for item in read_trace(folder / "occupancy.jsonl"):
        if isinstance(item, TraceError):
            continue
        tick = est.tick_of(item.t_ms)
        est.buffer.add(network.camera_index(item.camera), tick, item.occupied)
        if frontier is None or tick > frontier:
            frontier = tick
            first = tick if first is None else first
            if frontier - reorder >= advanced + 64:
                advanced = frontier - reorder
                est.advance(advanced)
            while (frontier - first) * settings.grid.tick_ms / 1000 >= next_snap:
                state = _window_state(est, activity, c_min)
                curve.append({"t_s": next_snap, **decide_state(state, network, truth, rules)})
                say(f"{next_snap:.0f} s counted ({time.perf_counter() - t0:.0f} s)")
                next_snap += snapshot_s
    est.finish()
    state = _window_state(est, activity, c_min)
    state_dir.mkdir(parents=True, exist_ok=True)
    np.savez(saved, **state)
    final = decide_state(state, network, truth, rules)
    say(f"done in {time.perf_counter() - t0:.0f} s; state in {saved}")
    return {
        "net": asdict(net),
        "truth": truth_summary(truth),
        "elapsed_s": time.perf_counter() - t0,
        "final": final,
        "curve": curve,
    }


def format_window(results: list[dict[str, Any]]) -> str:
    """Window P/R/F1 per network and seed for each rule, and camera overlap P/R."""
    rules = list(results[0]["final"]) if results else []
    head = f"{'network':<15}{'seed':>5}{'true':>7} " + "".join(
        f"| {name + ' P/R/F1':<18}" for name in rules
    )
    cam = "".join(f"| {name + ' P/R':<18}" for name in rules)
    lines = ["window level (truth window_overlaps)", head]
    for r in results:
        cells = "".join(
            f"| {v['window']['precision']:.2f}/{v['window']['recall']:.2f}/{v['window_f1']:.2f}"
            f"{'':<4}"
            for v in r["final"].values()
        )
        lines.append(
            f"{r['net']['name']:<15}{r['net']['seed']:>5}{r['truth']['window_overlaps']:>7} {cells}"
        )
    for level in ("camera_overlap", "camera"):
        what = "overlap links" if level == "camera_overlap" else "all links (overlap + transit)"
        lines += ["", f"camera level, {what}", f"{'network':<15}{'seed':>5}{'':>7} {cam}"]
        for r in results:
            cells = "".join(
                f"| {v[level]['precision']:.2f}/{v[level]['recall']:.2f}{'':<9}"
                for v in r["final"].values()
            )
            lines.append(f"{r['net']['name']:<15}{r['net']['seed']:>5}{'':>7} {cells}")
    return "\n".join(lines)


def plot_window(
    results: list[dict[str, Any]], path: Path, level: str = "window", title: str = "window pairs"
) -> None:
    """Precision and recall of ``level`` (a score_sets key) over simulated time, per network
    (first seed), per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r["curve"] and r["net"]["seed"] == WINDOW_SEEDS[0]]
    if not shown:
        return
    cols = min(len(shown), 2)
    rows_ = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(6.2 * cols, 4.2 * rows_), squeeze=False)
    colours = {"paper": "tab:grey", "today": "tab:blue", "test": "tab:red",
               "test_strict": "tab:orange"}  # fmt: skip
    for ax, r in zip(axes.ravel(), shown, strict=False):
        t = [c["t_s"] / 60 for c in r["curve"]] + [r["net"]["duration_s"] / 60]
        for name in r["final"]:
            pts = [*(c[name] for c in r["curve"]), r["final"][name]]
            colour = colours.get(name)
            ax.plot(t, [p[level]["precision"] for p in pts], "-", color=colour,
                    label=f"{name} precision")  # fmt: skip
            ax.plot(t, [p[level]["recall"] for p in pts], ":", color=colour,
                    label=f"{name} recall")  # fmt: skip
        ax.axhline(0.8, color="grey", lw=0.6)
        ax.set_title(f"{r['net']['name']} seed {r['net']['seed']}: {level.replace('_', ' ')}")
        ax.set_xlabel("simulated time (min)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: precision (solid) and recall (dotted) by rule")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_window(args: argparse.Namespace, suite: tuple[Net, ...]) -> int:
    from dataclasses import replace

    results = []
    for seed in args.seeds:
        for net in suite:
            results.append(
                run_window_network(
                    replace(net, seed=seed), args.cache_dir, args.state_dir,
                    args.window_snapshot_every, args.reuse_state, not args.quiet,
                )
            )  # fmt: skip
    print(format_window(results))
    stem = "accuracy_window-quick" if args.quick else "accuracy_window"
    out = {
        "suite": "quick" if args.quick else "full",
        "seeds": list(args.seeds),
        "rules": {k: asdict(v) for k, v in window_rules().items()},
        "snapshot_every_s": args.window_snapshot_every,
        "networks": results,
    }
    (args.results_dir / f"{stem}.json").write_text(json.dumps(out, indent=1))
    plot_window(results, args.results_dir / f"{stem}.png")
    plot_window(
        results, args.results_dir / f"{stem}_camera.png", "camera_overlap", "overlap camera links"
    )
    print(f"wrote {args.results_dir / (stem + '.json')}, {stem}.png and {stem}_camera.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small networks, 10 simulated minutes")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this network")
    p.add_argument("--jobs", type=int, default=1, help="networks run in parallel (2 cores)")
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument(
        "--snapshot-every",
        type=float,
        default=None,
        metavar="S",
        help="snapshot interval (default 300 s, quick 120 s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--window-level",
        action="store_true",
        help="issue 24: window-pair rules (paper, today, test) per network and seed",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(WINDOW_SEEDS))
    p.add_argument("--state-dir", type=Path, default=STATE_DIR, help="saved counted states")
    p.add_argument(
        "--reuse-state", action="store_true", help="decide saved states again (no curves)"
    )
    p.add_argument("--window-snapshot-every", type=float, default=900.0, metavar="S")
    args = p.parse_args(argv)

    suite = QUICK if args.quick else SUITE
    if args.only:
        names = {n.name for n in suite}
        unknown = set(args.only) - names
        if unknown:
            p.error(f"unknown network(s) {sorted(unknown)}; choose from {sorted(names)}")
        suite = tuple(n for n in suite if n.name in args.only)
    snapshot_s = args.snapshot_every or (120.0 if args.quick else 300.0)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    if args.window_level:
        return main_window(args, suite)

    from tqdm import tqdm

    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(total=len(suite), desc="networks", unit="net", file=sys.stderr, disable=args.quiet)
    if args.jobs > 1:
        with ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [
                pool.submit(run_network, n, args.cache_dir, snapshot_s, False) for n in suite
            ]
            for f in futures:
                results.append(f.result())
                bar.update()
    else:
        for net in suite:
            results.append(run_network(net, args.cache_dir, snapshot_s, not args.quiet))
            bar.update()
    bar.close()

    from camtopo.estimate import ESTIMATOR_SETTINGS
    from camtopo.evaluation.baseline import BaselineParams
    from camtopo.settings import get_settings

    print()
    for r in results:
        print(format_network(r))
        print()
    out = {
        "suite": "quick" if args.quick else "full",
        "snapshot_every_s": snapshot_s,
        "targets": TARGETS,
        "camtopo_settings": {
            k: v for k, v in get_settings().by_variable().items() if k in ESTIMATOR_SETTINGS
        },
        "baseline_params": asdict(BaselineParams()),
        "wall_s": time.perf_counter() - started,
        "networks": results,
    }
    stem = "accuracy-quick" if args.quick else "accuracy"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(out, indent=1))
    plot(results, args.results_dir / f"{stem}.png")
    print(f"wrote {args.results_dir / (stem + '.json')} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
