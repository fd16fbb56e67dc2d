"""What ``camtopo detect`` sees: one frame with its blobs, feet points and window grid, and the
occupied windows per frame against the number of people in view.

Real pedestrian footage cannot be downloaded on this machine (no internet), so the footage is
the simulator's rendered video (producers/footage.py), whose truth says who is in view.

    python -m benchmarks.detect_picture [--cameras 6] [--seconds 60] [--seed 1]

Renders the footage into benchmarks/.cache/detect_picture/, runs ``camtopo detect`` on it,
and writes benchmarks/results/detect_frame.png, detect_counts.png and detect_picture.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camtopo.cli import main as camtopo
from camtopo.core.grid import Grid
from producers.agreement import Agreement
from producers.detection import OccupancyDetector
from producers.footage import write_footage
from producers.sources import OK, VideoFileSource

HERE = Path(__file__).resolve().parent
CACHE, RESULTS = HERE / ".cache" / "detect_picture", HERE / "results"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def frame_stages(video: Path, index: int) -> dict[str, np.ndarray]:
    """Frame ``index`` of ``video`` and the pipeline's stages on it, after the background has
    learnt from every frame before it (the same detector ``camtopo detect`` runs)."""
    source, detector = VideoFileSource(video), OccupancyDetector()
    for _ in range(index + 1):
        read = source.read()
        assert read.status == OK and read.frame is not None, read.detail
        mask = detector.foreground(read.frame)
    source.close()
    boxes = detector.blobs(mask)
    feet = detector.feet(boxes)
    return {
        "frame": read.frame,
        "mask": mask,
        "boxes": boxes,
        "feet": feet,
        "windows": detector.windows_of(feet),
    }


def draw_frame(
    stages: dict[str, np.ndarray],
    truth: Sequence[int] | None,
    grid: Grid,
    out: Path,
    title: str,
) -> None:
    """The frame with its windows, blobs and feet beside the foreground mask (truth: the
    simulator's occupied windows, outlined; None for real footage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ww, wh = grid.width / grid.cols, grid.height / grid.rows
    ax = axes[0]
    ax.imshow(cv2.cvtColor(stages["frame"], cv2.COLOR_BGR2RGB))
    for w in truth or ():  # the simulator's occupied windows: outlined
        r, c = divmod(int(w), grid.cols)
        ax.add_patch(Rectangle((c * ww, r * wh), ww, wh, fill=False, ec="deepskyblue", lw=2.2))
    for w in stages["windows"]:  # detected: shaded
        r, c = divmod(int(w), grid.cols)
        ax.add_patch(Rectangle((c * ww, r * wh), ww, wh, color="orange", alpha=0.35))
    for k in range(1, grid.cols):
        ax.axvline(k * ww, color="white", lw=0.5, alpha=0.6)
    for k in range(1, grid.rows):
        ax.axhline(k * wh, color="white", lw=0.5, alpha=0.6)
    for x, y, w, h, _ in stages["boxes"]:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="lime", lw=1.2))
    if len(stages["feet"]):
        ax.plot(stages["feet"][:, 0], stages["feet"][:, 1], "r.", ms=9, label="feet (blob base)")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, grid.width)
    ax.set_ylim(grid.height, 0)
    ax.legend(loc="lower right", fontsize=7)
    legend = "green: blobs; orange: detected windows"
    ax.set_xlabel(legend + ("; blue outline: true windows" if truth else ""), fontsize=8)
    axes[1].imshow(stages["mask"], cmap="gray")
    axes[1].set_title("foreground after MOG2 + open/close (shadows dropped)", fontsize=9)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def draw_counts(
    truth: list[dict],
    detected: dict[tuple[str, int], list[int]],
    cameras: Sequence[str],
    warmup_ms: int,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cameras), 1, figsize=(11, 2.1 * len(cameras)), sharex=True)
    for ax, cam in zip(np.atleast_1d(axes), cameras, strict=True):
        rows = [x for x in truth if x["camera"] == cam and x["t_ms"] >= warmup_ms]
        t = np.array([x["t_ms"] / 1000 for x in rows])
        ax.step(
            t,
            [x["people"] for x in rows],
            where="post",
            color="k",
            lw=1.2,
            label="people in view (truth)",
        )
        ax.step(
            t,
            [len(x["occupied"]) for x in rows],
            where="post",
            color="deepskyblue",
            lw=1,
            label="occupied windows (truth)",
        )
        ax.step(
            t,
            [len(detected.get((cam, x["t_ms"]), [])) for x in rows],
            where="post",
            color="orange",
            lw=1,
            ls="--",
            label="occupied windows (camtopo detect)",
        )
        ax.set_ylabel(cam)
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=7, ncol=3)
    np.atleast_1d(axes)[-1].set_xlabel("footage time, s (after the background warm-up)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=6)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--density", type=float, default=3.0)
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    footage = write_footage(
        args.cache_dir,
        n_cameras=args.cameras,
        seconds=args.seconds,
        seed=args.seed,
        density=args.density,
    )
    trace = args.cache_dir / "occupancy.jsonl"
    detect = ["detect", "--folder", str(args.cache_dir), "-o", str(trace), "--no-progress"]
    if camtopo([*detect, "--warmup-s", str(args.warmup)]) != 0:
        return 1

    grid = Grid()
    truth = _lines(footage.truth)
    by_key = {(x["camera"], x["t_ms"]): x for x in truth}
    detected = {(x["camera"], x["t_ms"]): x["occupied"] for x in _lines(trace)}
    agreement = Agreement()
    for key, occupied in detected.items():
        agreement.add(grid, by_key[key]["occupied"], occupied)

    # The picture: the scored frame with the most people standing well inside the view (feet
    # below the top two window rows: figures cut by the top edge show little), then the most
    # people in view.
    def shown(x: dict) -> tuple[int, int, int]:
        inside = sum(w // grid.cols >= 2 for w in x["occupied"])
        return inside, x["people"], -x["t_ms"]

    best = max((x for x in truth if (x["camera"], x["t_ms"]) in detected), key=shown)
    index = best["t_ms"] * footage.fps // 1000
    stages = frame_stages(footage.videos[best["camera"]], index)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    title = (
        f"{best['camera']} frame {index} (t = {best['t_ms'] / 1000:.1f} s): "
        f"{best['people']} people in view, {len(stages['windows'])} windows detected"
    )
    draw_frame(stages, best["occupied"], grid, args.results_dir / "detect_frame.png", title)
    draw_counts(
        truth,
        detected,
        sorted(footage.videos),
        round(args.warmup * 1000),
        args.results_dir / "detect_counts.png",
    )
    summary = {
        "footage": {
            "scenario": "campus",
            "cameras": args.cameras,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "seed": args.seed,
            "density": args.density,
        },
        "agreement": agreement.summary(),
        "picture": {"camera": best["camera"], "frame": index, "people": best["people"]},
    }
    (args.results_dir / "detect_picture.json").write_text(json.dumps(summary, indent=1) + "\n")
    a = agreement
    print(
        f"{a.frames} camera-frames scored: {a.true_windows} true windows, recovered "
        f"{a.recall_strict:.3f} strict / {a.recall_tolerant:.3f} within one window; false "
        f"{a.false_rate_strict:.3f} strict / {a.false_rate_tolerant:.4f} beyond one window"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run())
