"""``camtopo detect`` on real pedestrian footage: OpenCV's ``vtest.avi`` (people walking across
a hall, filmed from above; 795 frames, 768 x 576, 10 fps), shipped in Debian's ``opencv-doc``.

    python -m benchmarks.detect_real

Fetches the footage with ``apt-get download opencv-doc`` into benchmarks/.cache/detect_real/
(once), runs ``camtopo detect`` on it, and writes benchmarks/results/detect_real_frame.png (a
frame with blobs, feet and the window grid), detect_real_counts.png (occupied windows per
frame against people in view) and detect_real.json. There is no ground truth for this video:
the people in view were counted by eye on 12 frames (``PEOPLE_BY_EYE``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.detect_picture import draw_frame, frame_stages
from camtopo.cli import main as camtopo
from camtopo.core.grid import Grid

HERE = Path(__file__).resolve().parent
CACHE, RESULTS = HERE / ".cache" / "detect_real", HERE / "results"
MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


def fetch_vtest(cache: Path) -> Path:
    """vtest.avi from Debian's opencv-doc package (downloaded, not installed)."""
    video = cache / "vtest.avi"
    if video.exists():
        return video
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=cache, check=True)
    (deb,) = sorted(cache.glob("opencv-doc_*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(cache), MEMBER], input=tar.stdout, check=True)
    (cache / MEMBER).rename(video)
    deb.unlink()
    return video


# People in view, counted by eye (whole people and partly visible ones, at the frame's edges
# too) on every 60th frame from 60: the footage has no ground truth, and OpenCV 5's wheel no
# longer has the HOG people detector. Anyone can re-count: the frame index is all it takes.
PEOPLE_BY_EYE = {60: 6, 120: 8, 180: 7, 240: 7, 300: 6, 360: 6,
                 420: 3, 480: 4, 540: 6, 600: 6, 660: 6, 720: 8}  # fmt: skip


def draw_counts(
    windows: dict[int, int], people: dict[int, int], fps: float, warmup: int, out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.2))
    frames = sorted(windows)
    ax.step(
        [f / fps for f in frames],
        [windows[f] for f in frames],
        where="post",
        color="orange",
        lw=1,
        label="occupied windows (camtopo detect)",
    )
    shown = sorted(f for f in people if f >= warmup)
    ax.plot(
        [f / fps for f in shown],
        [people[f] for f in shown],
        "ko",
        ms=5,
        label="people in view (counted by eye)",
    )
    ax.set_xlabel("vtest.avi time, s (after the background warm-up)")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=float, default=2.0, help="background warm-up, s")
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    video = fetch_vtest(args.cache_dir)
    trace, network = args.cache_dir / "occupancy.jsonl", args.cache_dir / "network.json"
    detect = ["detect", "--source", f"vtest={video}", "-o", str(trace), "--no-progress"]
    if camtopo([*detect, "--network-out", str(network), "--warmup-s", str(args.warmup)]) != 0:
        return 1
    spec = json.loads(network.read_text())
    grid, fps = Grid(**spec["grid"]), float(spec["fps"])
    windows = {
        round(x["t_ms"] * fps / 1000): len(x["occupied"])
        for x in map(json.loads, trace.read_text().splitlines())
    }
    people = PEOPLE_BY_EYE
    warmup = round(args.warmup * fps)

    both = [f for f in people if f in windows]  # counted by eye and analysed by detect
    # The picture: the counted frame with the most people.
    index = max(both, key=lambda f: (people[f], -f))
    stages = frame_stages(video, index)
    stages["frame"] = cv2.resize(stages["frame"], (grid.width, grid.height), cv2.INTER_AREA)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    title = (
        f"vtest.avi frame {index} (t = {index / fps:.1f} s): {people[index]} people in view, "
        f"{len(stages['windows'])} windows occupied"
    )
    draw_frame(stages, None, grid, args.results_dir / "detect_real_frame.png", title)
    draw_counts(windows, people, fps, warmup, args.results_dir / "detect_real_counts.png")

    w, h = np.array([windows[f] for f in both]), np.array([people[f] for f in both])
    summary = {
        "footage": {
            "file": "vtest.avi (Debian opencv-doc)",
            "frames": len(windows) + warmup,
            "fps": fps,
            "warmup_s": args.warmup,
        },
        "frames_scored": len(both),
        "occupied_windows_per_frame": round(float(w.mean()), 2),
        "people_per_frame": round(float(h.mean()), 2),
        "windows_per_person": round(float(w.sum() / max(1, h.sum())), 2),
        "correlation": round(float(np.corrcoef(w, h)[0, 1]), 3),
        "picture": {"frame": index, "people": people[index]},
    }
    (args.results_dir / "detect_real.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run())
