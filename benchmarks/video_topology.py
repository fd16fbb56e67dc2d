"""Topology estimated from rendered video vs from the simulator's exact occupancy, vs truth.

One simulated network (default: plaza, 12 cameras, seed 1 -- most of its camera pairs
overlap) is stepped tick by tick. Every camera's frames are rendered (producers/render.py:
perspective figures, shadows, lighting drift, sensor noise, JPEG) and run through the
detection pipeline (JPEG decode, MOG2, morphology, components, feet -> window). The occupancy
from video and, for the same ticks, the simulator's exact occupancy are written as two
contract traces next to network.json and truth.json. camtopo's offline estimator runs on both
and both are scored against the truth. The first ``--warmup`` seconds of video only train
the background models (a camera learns its background before its output means anything);
neither trace holds them.

Cameras are split over ``--workers`` processes; each steps its own copy of the (seeded,
deterministic) simulation and renders only its cameras, so the cost splits across cores.
The video path's own errors are broken down per true window: recovered exactly, one window
off, lost where the person's figure overlaps another's (merged blobs / occlusion), lost
otherwise (missed); and detected windows away from every true one, near a figure or not.

    python -m benchmarks.video_topology                       # plaza, 12 cameras, 15 min
    python -m benchmarks.video_topology --minutes 5 --cameras 16 --scenario campus
    python -m benchmarks.video_topology --subset 2 --minutes 1 --density 3   # 2 overlapping

Rendered traces are cached under benchmarks/.cache/ (``--fresh`` redoes them). Writes
benchmarks/results/video_topology.json and video_topology.png.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
TRACES = ("exact", "video")
CUT_OFF = 0.5  # less than this fraction of the figure's height inside the frame
SMALL_PX = 12.0  # a figure this tall covers ~0.17 h^2 ~ 24 px: near the minimum blob area


@dataclass(frozen=True)
class Run:
    scenario: str = "plaza"
    cameras: int = 12
    seed: int = 1
    minutes: float = 15.0
    density: float = 1.0
    warmup_s: float = 20.0
    subset: int = 0  # 0 = every camera; k = the k cameras with the most overlapping windows

    @property
    def key(self) -> str:
        sub = f"-sub{self.subset}" if self.subset else ""
        return (
            f"video-{self.scenario}-{self.cameras}{sub}-seed{self.seed}-d{self.density:g}"
            f"-{self.minutes:g}min-w{self.warmup_s:g}s"
        )


# --- which cameras ---------------------------------------------------------------------------


def overlapping_cameras(truth: dict[str, Any], k: int) -> list[str]:
    """The ``k`` cameras sharing the most overlapping windows, grown greedily from the best
    pair: a small group in which every camera overlaps another."""
    pairs: Counter[tuple[str, str]] = Counter()
    for a, b in truth["window_overlaps"]:
        ca, cb = sorted((a.split(":")[0], b.split(":")[0]))
        pairs[ca, cb] += 1
    if not pairs:
        raise ValueError("the scenario has no overlapping cameras to choose from")
    chosen = list(pairs.most_common(1)[0][0])
    while len(chosen) < k:
        gain: Counter[str] = Counter()
        for (a, b), n in pairs.items():
            if (a in chosen) != (b in chosen):
                gain[b if a in chosen else a] += n
        if not gain:
            raise ValueError(f"only {len(chosen)} cameras overlap as a group; asked for {k}")
        chosen.append(gain.most_common(1)[0][0])
    return sorted(chosen)


def restrict_truth(truth: dict[str, Any], cameras: Sequence[str]) -> dict[str, Any]:
    """Truth among ``cameras`` only. Transit links are the full network's: with cameras left
    out, walks between two kept cameras through a dropped one are not listed."""
    keep = set(cameras)
    return {
        **truth,
        "window_overlaps": [
            p for p in truth["window_overlaps"] if {x.split(":")[0] for x in p} <= keep
        ],
        "camera_links": [x for x in truth["camera_links"] if {x["a"], x["b"]} <= keep],
    }


def _simulation(run: Run) -> Any:
    from camtopo.core.grid import Grid
    from camtopo.settings import get_settings
    from camtopo.simulation import Simulation, build_scenario
    from producers.simulated import RENDER_NOISE

    s = get_settings()
    grid = Grid(s.grid.cols, s.grid.rows, s.grid.frame_width, s.grid.frame_height)
    # Rendering makes the detection errors; the simulator keeps only outages and clock skew,
    # which both traces share.
    return Simulation(
        build_scenario(run.scenario, run.cameras, run.seed, grid),
        seed=run.seed,
        noise=RENDER_NOISE,
        fps=s.grid.fps,
        density=run.density,
    )


# --- rendering and detection (one worker per part of the cameras) ----------------------------


def _line(camera: str, t_ms: int, occupied: Sequence[int]) -> str:
    return f'{{"camera":"{camera}","t_ms":{t_ms},"occupied":[{",".join(map(str, occupied))}]}}'


def _boxes(u: np.ndarray, v: np.ndarray, h: np.ndarray, body_width: float) -> np.ndarray:
    """(m, 4) figure boxes x0, y0, x1, y1 as drawn: body of width body_width*h, head on top."""
    half = np.maximum(body_width * h / 2, 0.8)
    return np.stack([u - half, v - h, u + half, v], axis=1)


def _overlaps_another(boxes: np.ndarray) -> np.ndarray:
    """bool (m,): the figure's box intersects another figure's box (merge / occlusion)."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    hit = (
        (x0[:, None] < x1[None, :])
        & (x0[None, :] < x1[:, None])
        & (y0[:, None] < y1[None, :])
        & (y0[None, :] < y1[:, None])
    )
    np.fill_diagonal(hit, False)
    return hit.any(axis=1)


def render_part(
    run: Run, cameras: list[int], folder: str, part: int, progress: bool
) -> dict[str, Any]:
    """Render + detect ``cameras`` for the whole run; write part{k}.{exact,video}.jsonl."""
    import cv2
    from tqdm import tqdm

    from producers.agreement import Agreement
    from producers.detection import OccupancyDetector
    from producers.render import SceneRenderer, figures_by_camera
    from producers.sources import OK, decode_jpeg

    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend
    sim = _simulation(run)
    cams, grid = sim.cameras, sim.cameras.grid
    renderer = SceneRenderer(cams, seed=run.seed)
    detectors = {c: OccupancyDetector(grid) for c in cameras}
    warm = round(run.warmup_s * sim.fps)
    n_ticks = warm + round(run.minutes * 60 * sim.fps)
    agreement = Agreement()
    errors: Counter[str] = Counter()
    frames = 0
    render_s = detect_s = 0.0
    out = Path(folder)
    with (
        (out / f"part{part}.exact.jsonl").open("w") as exact_fh,
        (out / f"part{part}.video.jsonl").open("w") as video_fh,
    ):
        bar = tqdm(
            range(n_ticks),
            desc=f"render+detect part {part} ({len(cameras)} cams)",
            unit="tick",
            position=part,
            disable=not progress,
            file=sys.stderr,
            mininterval=2.0,
        )
        for _ in bar:
            tick = sim.step()
            t0 = time.perf_counter()
            figs = figures_by_camera(sim, cameras)
            t_s = tick.index / sim.fps
            jpegs = {c: renderer.render_jpeg(c, t_s, figs[c]) for c in cameras if tick.available[c]}
            t1 = time.perf_counter()
            detected: dict[int, np.ndarray] = {}
            for c, jpeg in jpegs.items():
                read = decode_jpeg(jpeg, f"rendered {cams.ids[c]}")
                if read.status != OK:  # pragma: no cover - our own encoder's output
                    raise RuntimeError(read.detail)
                detected[c] = detectors[c].detect(read.frame)
            render_s += t1 - t0
            detect_s += time.perf_counter() - t1
            frames += len(jpegs)
            if tick.index < warm:
                continue
            for c in jpegs:  # a dark camera (outage) has no line in either trace
                truth = tick.window[tick.cam == c].tolist()
                found = detected[c].tolist()
                t_ms = int(tick.t_ms[c])
                exact_fh.write(_line(cams.ids[c], t_ms, truth) + "\n")
                video_fh.write(_line(cams.ids[c], t_ms, found) + "\n")
                agreement.add(grid, truth, found)
                _classify(errors, grid, figs[c], renderer.config.body_width, truth, found)
        bar.close()
    return {
        "part": part,
        "cameras": [cams.ids[c] for c in cameras],
        "frames": frames,
        "scored_frames": agreement.frames,
        "render_s": render_s,
        "detect_s": detect_s,
        "agreement": asdict(agreement),
        "errors": dict(errors),
        "truth": sim.truth() if part == 0 else None,
    }


def _classify(
    errors: Counter[str],
    grid: Any,
    fig: Any,
    body_width: float,
    truth: list[int],
    found: list[int],
) -> None:
    """Why each true window was or was not recovered, and where false windows lie."""
    t, d = set(truth), set(found)
    near_d = {n for w in d for n in grid.neighbourhood(w, 1)}
    near_t = {n for w in t for n in grid.neighbourhood(w, 1)}
    boxes = _boxes(fig.u, fig.v, fig.height_px, body_width)
    merged = _overlaps_another(boxes)
    feet_window = np.array(
        [grid.window_at(float(x), float(y)) for x, y in zip(fig.u, fig.v, strict=True)]
    )
    for w in t:
        if w in d:
            errors["true_exact"] += 1
        elif w in near_d:
            errors["true_one_off"] += 1
        elif merged[feet_window == w].any():
            errors["true_lost_merged"] += 1
        elif (fig.v[feet_window == w] < CUT_OFF * fig.height_px[feet_window == w]).all():
            # Feet near the frame's top edge: most of the figure is above the frame, so the
            # blob is a sliver (the far end of the camera's range).
            errors["true_lost_cut_off"] += 1
        elif (fig.height_px[feet_window == w] < SMALL_PX).all():
            errors["true_lost_small"] += 1  # far figure, near the minimum blob size
        else:
            errors["true_lost_missed"] += 1
    for w in d - near_t:
        cx, cy = grid.window_centre(w)
        inside = (boxes[:, 0] - grid.width / grid.cols <= cx) & (
            cx <= boxes[:, 2] + grid.width / grid.cols
        )
        inside &= (boxes[:, 1] <= cy) & (cy <= boxes[:, 3] + grid.height / grid.rows)
        errors["false_near_figure" if inside.any() else "false_away"] += 1


def _merge_parts(paths: list[Path], out: Path) -> int:
    """Merge per-worker traces by capture time (each is in tick order) into one trace."""

    def lines(p: Path) -> Iterator[tuple[int, str]]:
        with p.open() as fh:
            for line in fh:
                yield json.loads(line)["t_ms"], line

    n = 0
    with out.open("w") as fh:
        for _, line in heapq.merge(*(lines(p) for p in paths), key=lambda x: x[0]):
            fh.write(line)
            n += 1
    for p in paths:
        p.unlink()
    return n


def generate(run: Run, cache: Path, workers: int, progress: bool, fresh: bool) -> Path:
    """Render the run into ``cache/run.key`` unless a complete copy is there (meta.json is
    written last: its presence means the run completed)."""
    from camtopo.core.grid import Network
    from camtopo.simulation.writer import write_truth

    folder = cache / run.key
    if (folder / "meta.json").exists() and not fresh:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    sim = _simulation(run)
    ids = list(sim.cameras.ids)
    chosen = overlapping_cameras(sim.truth(), run.subset) if run.subset else ids
    index = [ids.index(c) for c in chosen]
    # Deal cameras round-robin so every worker gets a similar share of busy cameras.
    parts = [index[k::workers] for k in range(workers) if index[k::workers]]
    started = time.perf_counter()
    if len(parts) == 1:
        reports = [render_part(run, parts[0], str(folder), 0, progress)]
    else:
        # spawn, not fork: forking a process with threads (Kafka clients, numba, tqdm) can
        # deadlock the child on a lock some thread held.
        with ProcessPoolExecutor(
            len(parts), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [
                pool.submit(render_part, run, p, str(folder), k, progress)
                for k, p in enumerate(parts)
            ]
            reports = [f.result() for f in futures]
    wall_s = time.perf_counter() - started
    truth = restrict_truth(reports[0]["truth"], chosen)
    Network.uniform(chosen, sim.cameras.grid, sim.fps).save(folder / "network.json")
    write_truth(folder / "truth.json", truth)
    lines = {
        kind: _merge_parts(
            [folder / f"part{k}.{kind}.jsonl" for k in range(len(parts))],
            folder / f"occupancy.{kind}.jsonl",
        )
        for kind in TRACES
    }
    meta = {
        "run": asdict(run),
        "cameras": chosen,
        "workers": len(parts),
        "render_wall_s": wall_s,
        "lines": lines,
        "parts": [{k: v for k, v in r.items() if k != "truth"} for r in reports],
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


# --- estimate, score, compare ----------------------------------------------------------------


def agreement_summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    from producers.agreement import Agreement

    total = Agreement()
    for p in parts:
        for k, v in p["agreement"].items():
            if k != "per_camera":
                setattr(total, k, getattr(total, k) + v)
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
    true_n = max(total.true_windows, 1)
    false_n = max(total.detected_windows, 1)
    return {
        **total.summary(),
        "errors": dict(errors),
        "true_window_shares": {
            k.removeprefix("true_"): errors[k] / true_n
            for k in (
                "true_exact",
                "true_one_off",
                "true_lost_merged",
                "true_lost_cut_off",
                "true_lost_small",
                "true_lost_missed",
            )
        },
        "false_window_shares": {
            "one_off": (total.false_strict - total.false_tolerant) / false_n,
            **{
                k.removeprefix("false_"): errors[k] / false_n
                for k in ("false_near_figure", "false_away")
            },
        },
    }


def _parse(label: str) -> tuple[str, int]:
    cam, w = label.split(":")
    return cam, int(w)


def compare_edges(
    video: dict[str, Any], exact: dict[str, Any], truth: dict[str, Any], grid: Any
) -> dict[str, Any]:
    """Where the video topology differs from the exact one, and how far its false window
    pairs are from true ones (one window off at either end, or further)."""

    def pairs(topo: dict[str, Any]) -> set[tuple[str, str]]:
        return {tuple(sorted((e["a"], e["b"]))) for e in topo["window_edges"]}  # type: ignore[misc]

    def links(topo: dict[str, Any]) -> set[tuple[str, str]]:
        return {tuple(sorted((e["a"], e["b"]))) for e in topo["camera_edges"]}  # type: ignore[misc]

    true_pairs = {tuple(sorted(p)) for p in truth["window_overlaps"]}
    true_links = {tuple(sorted((x["a"], x["b"]))) for x in truth["camera_links"]}
    near: set[tuple[str, str]] = set()
    for a, b in true_pairs:
        (ca, wa), (cb, wb) = _parse(a), _parse(b)
        for na in grid.neighbourhood(wa, 1):
            for nb in grid.neighbourhood(wb, 1):
                near.add(tuple(sorted((f"{ca}:{na}", f"{cb}:{nb}"))))  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for name, topo in (("exact", exact), ("video", video)):
        false = pairs(topo) - true_pairs
        out[name] = {
            "false_window_pairs": len(false),
            "false_within_one_window": len(false & near),
            "false_links": sorted(map(list, links(topo) - true_links)),
            "missed_links": sorted(map(list, true_links - links(topo))),
        }
    v, e = pairs(video), pairs(exact)
    out["true_pairs_exact_only"] = len((e - v) & true_pairs)
    out["true_pairs_video_only"] = len((v - e) & true_pairs)
    return out


def estimate_and_score(folder: Path, snapshot_s: float, progress: bool) -> dict[str, Any]:
    from camtopo.core.grid import Network
    from camtopo.estimate import estimate_trace, topology_json
    from camtopo.evaluation.score import score_topology
    from camtopo.settings import get_settings

    settings = get_settings()
    network = Network.load(folder / "network.json")
    truth = json.loads((folder / "truth.json").read_text())
    # The estimator's settings go with the figures: they are what the scores depend on.
    out: dict[str, Any] = {"topologies": {}, "settings": settings.by_variable(mode="json")}
    estimators: dict[str, Any] = {}
    for kind in TRACES:
        res = estimate_trace(
            folder / f"occupancy.{kind}.jsonl",
            network,
            settings,
            snapshot_every_s=snapshot_s,
            progress=progress,
        )
        estimators[kind] = res.estimator
        topo = topology_json(network, settings, res)
        (folder / f"topology.{kind}.json").write_text(json.dumps(topo))
        out["topologies"][kind] = topo
        out[kind] = {
            "estimate_s": res.elapsed_s,
            "frames": res.report.frames,
            "skipped": dict(res.report.skipped),
            "score": score_topology(topo, truth),
        }
    out["compare"] = compare_edges(
        out["topologies"]["video"],
        out["topologies"]["exact"],
        truth,
        network.grids[0],  # uniform: one grid for all cameras
    )
    out["compare"]["why_missed"] = why_missed(
        out["topologies"], estimators, truth, network, settings
    )
    del out["topologies"]
    return out


def why_missed(
    topologies: dict[str, Any],
    estimators: dict[str, Any],
    truth: dict[str, Any],
    network: Any,
    settings: Any,
) -> dict[str, Any]:
    """For true window pairs one trace found and the other did not: the other trace's
    evidence -- too few opportunities, or exclusions (C' below C*) -- per direction."""
    from camtopo.core.evidence import c_prime

    def found(kind: str) -> set[tuple[str, str]]:
        return {
            tuple(sorted((e["a"], e["b"])))  # type: ignore[misc]
            for e in topologies[kind]["window_edges"]
        }

    true_pairs = {tuple(sorted(p)) for p in truth["window_overlaps"]}
    out: dict[str, Any] = {}
    for kind, other in (("exact", "video"), ("video", "exact")):
        only = sorted((found(kind) - found(other)) & true_pairs)
        reasons: Counter[str] = Counter()
        if only:
            i = np.array([network.parse_label(a) for a, _ in only])
            j = np.array([network.parse_label(b) for _, b in only])
            counts = estimators[other].counts
            o_ij, p_ij = counts.pair_counts(i, j)
            o_ji, p_ji = counts.pair_counts(j, i)
            o = np.minimum(o_ij, o_ji)
            c = np.minimum(
                c_prime(p_ij, o_ij, settings.algorithm.o_ref),
                c_prime(p_ji, o_ji, settings.algorithm.o_ref),
            )
            few = o < settings.algorithm.o_ref
            reasons["few_opportunities"] = int(few.sum())
            reasons["excluded"] = int((~few & (c < settings.algorithm.c_star)).sum())
            reasons["other"] = len(only) - reasons["few_opportunities"] - reasons["excluded"]
        out[f"true_pairs_{kind}_only"] = {"n": len(only), f"in_{other}": dict(reasons)}
    return out


# --- report ----------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    run, meta, ag = result["run"], result["meta"], result["agreement"]
    print(
        f"\n{run['scenario']}, {len(meta['cameras'])} cameras, seed {run['seed']}, density "
        f"{run['density']:g}: {run['minutes']:g} simulated min scored after {run['warmup_s']:g} s "
        f"of background warm-up; truth {result['truth']['window_overlaps']} overlapping window "
        f"pairs, {result['truth']['links']}"
    )
    head = f"{'trace':<7}{'level':<16}{'precision':>10}{'recall':>8}{'found':>7}{'est.':>7}"
    print(head + f"{'true':>7}{'t (s)':>8}")
    for kind in TRACES:
        sc = result[kind]["score"]
        for level, v in sc["final"].items():
            t = sc["time_to_final_s"].get(level)
            print(
                f"{kind:<7}{level:<16}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['found']:>7}"
                f"{v['estimated']:>7}{v['true']:>7}{'' if t is None else f'{t:.0f}':>8}"
            )
    print("video / exact:")
    for level in result["exact"]["score"]["final"]:
        e = result["exact"]["score"]["final"][level]
        v = result["video"]["score"]["final"][level]
        print(
            f"  {level:<16} precision {v['precision']:.3f} vs {e['precision']:.3f} "
            f"({v['precision'] - e['precision']:+.3f}), recall {v['recall']:.3f} vs "
            f"{e['recall']:.3f} ({v['recall'] - e['recall']:+.3f})"
        )
    cmp_ = result["compare"]
    for kind in TRACES:
        c = cmp_[kind]
        print(
            f"  {kind}: {c['false_window_pairs']} false window pairs "
            f"({c['false_within_one_window']} within one window of a true pair), "
            f"false links {c['false_links']}, missed links {c['missed_links']}"
        )
    print(
        f"  true window pairs found only from exact: {cmp_['true_pairs_exact_only']}, "
        f"only from video: {cmp_['true_pairs_video_only']}"
    )
    for kind, v in cmp_["why_missed"].items():
        print(f"  {kind}: {v}")
    print(
        f"\ndetection agreement over {ag['frames']} camera-frames ({ag['true_windows']} true "
        f"occupied windows): recall {ag['recall_strict']:.3f} strict / "
        f"{ag['recall_tolerant']:.3f} ±1 window; false {ag['false_rate_strict']:.3f} strict / "
        f"{ag['false_rate_tolerant']:.4f} ±1 window"
    )
    print(
        "  true windows: "
        + ", ".join(f"{k} {v:.3f}" for k, v in ag["true_window_shares"].items())
        + "\n  detected windows not true: "
        + ", ".join(f"{k} {v:.4f}" for k, v in ag["false_window_shares"].items())
    )
    frames = sum(p["frames"] for p in meta["parts"])
    render = sum(p["render_s"] for p in meta["parts"])
    detect = sum(p["detect_s"] for p in meta["parts"])
    print(
        f"\nframes rendered and detected {frames} (incl. warm-up) in {meta['render_wall_s']:.0f} s "
        f"wall on {meta['workers']} worker(s): render {render / frames * 1e3:.2f} ms + "
        f"detect {detect / frames * 1e3:.2f} ms per frame (CPU time in workers); estimate "
        f"{result['exact']['estimate_s']:.1f} s (exact) / {result['video']['estimate_s']:.1f} s "
        f"(video); total wall {result['wall_s']:.0f} s"
        + (" (render cached)" if result["cached"] else "")
    )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, level in zip(axes, ("window", "camera_overlap"), strict=True):
        for kind, style in (("exact", "-"), ("video", "--")):
            curve = result[kind]["score"]["curve"]
            t = [c["t_s"] / 60 for c in curve if level in c]
            for metric, colour in (("precision", "C0"), ("recall", "C1")):
                ax.plot(
                    t,
                    [c[level][metric] for c in curve if level in c],
                    style,
                    color=colour,
                    label=f"{metric}, {kind}",
                )
        ax.set_title(f"{level} level")
        ax.set_xlabel("simulated minutes")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    run = result["run"]
    fig.suptitle(
        f"topology from rendered video vs exact occupancy ({run['scenario']}, "
        f"{len(result['meta']['cameras'])} cameras)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="plaza", choices=["plaza", "campus", "corridor",
                                                           "branching"])  # fmt: skip
    p.add_argument("--cameras", type=int, default=12, help="cameras in the simulated network")
    p.add_argument("--subset", type=int, default=0, metavar="K",
                   help="only the K cameras sharing the most overlapping windows")  # fmt: skip
    p.add_argument("--minutes", type=float, default=15.0, help="simulated minutes scored")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of MOG2 warm-up")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--density", type=float, default=1.0, help="crowd density factor")
    p.add_argument("--workers", type=int, default=2, help="render+detect processes")
    p.add_argument("--snapshot-every", type=float, default=60.0, metavar="S")
    p.add_argument("--fresh", action="store_true", help="re-render even if cached")
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.cameras < 1 or args.workers < 1 or args.subset < 0:
        p.error("--minutes must be > 0, --cameras and --workers >= 1, --subset >= 0")
    run = Run(
        args.scenario,
        args.cameras,
        args.seed,
        args.minutes,
        args.density,
        args.warmup,
        args.subset,
    )
    started = time.perf_counter()
    cached = (args.cache_dir / run.key / "meta.json").exists() and not args.fresh
    folder = generate(run, args.cache_dir, args.workers, not args.quiet, args.fresh)
    meta = json.loads((folder / "meta.json").read_text())
    truth = json.loads((folder / "truth.json").read_text())
    scored = estimate_and_score(folder, args.snapshot_every, not args.quiet)
    result = {
        "run": asdict(run),
        "folder": str(folder),
        "cached": cached,
        "meta": meta,
        "truth": {
            "window_overlaps": len(truth["window_overlaps"]),
            "links": dict(Counter(x["kind"] for x in truth["camera_links"])),
        },
        "agreement": agreement_summary(meta["parts"]),
        **scored,
        "wall_s": time.perf_counter() - started,
    }
    print_report(result)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "video_topology.json").write_text(json.dumps(result, indent=1))
    plot(result, args.results_dir / "video_topology.png")
    print(f"-> {args.results_dir / 'video_topology.json'}, video_topology.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
