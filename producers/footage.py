"""Recorded footage with known truth: the simulator's rendered cameras written as video files.

Real pedestrian footage is not available offline, so ``camtopo detect`` is tested and
illustrated on this: each camera's rendered JPEG frames (producers/render.py) written as a
Motion-JPEG AVI (OpenCV's own AVI writer, no codec library needed), next to the simulator's
exact occupancy of the same frames as a contract trace, ``truth_occupancy.jsonl``, whose
lines also say how many people the camera had in view (``people``; extra fields are ignored
by ``camtopo estimate``). Frame k of every file is at ``t_ms = k * 1000 / fps``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camtopo.simulation.engine import Simulation
from camtopo.simulation.noise import NoiseConfig
from producers.render import RenderConfig, SceneRenderer, figures_by_camera


@dataclass(frozen=True)
class Footage:
    folder: Path
    videos: dict[str, Path]  # camera id -> video file
    truth: Path  # truth_occupancy.jsonl
    fps: int
    frames: int


def write_footage(
    folder: str | Path,
    scenario: str = "campus",
    n_cameras: int = 4,
    seconds: float = 40.0,
    seed: int = 1,
    density: float = 3.0,
    cameras: list[int] | None = None,
    render: RenderConfig | None = None,
) -> Footage:
    """Render ``cameras`` (all by default) for ``seconds`` into ``folder``/<camera>.avi."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # No simulator noise: the detection errors under test are the vision path's own, and a
    # recorded file has no outages.
    sim = Simulation.from_name(
        scenario, n_cameras, seed=seed, noise=NoiseConfig.off(), density=density
    )
    grid, fps = sim.cameras.grid, sim.fps
    chosen = list(range(sim.cameras.n)) if cameras is None else list(cameras)
    ids = {c: sim.cameras.ids[c] for c in chosen}
    renderer = SceneRenderer(sim.cameras, seed=seed, config=render)
    fourcc = cv2.VideoWriter.fourcc(*"MJPG")
    videos = {ids[c]: folder / f"{ids[c]}.avi" for c in chosen}
    writers = {
        c: cv2.VideoWriter(str(videos[ids[c]]), fourcc, fps, (grid.width, grid.height))
        for c in chosen
    }
    n_ticks = round(seconds * fps)
    truth = folder / "truth_occupancy.jsonl"
    with truth.open("w") as out:
        for tick in sim.ticks(n_ticks):
            figs = figures_by_camera(sim, chosen)
            t_ms = round(tick.index * 1000 / fps)
            for c in chosen:
                jpeg = renderer.render_jpeg(c, tick.index / fps, figs[c])
                frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if frame is None:  # our own renderer's JPEG: a bug, not bad input
                    raise RuntimeError(f"camera {ids[c]}: rendered JPEG does not decode")
                writers[c].write(frame)
                windows = sorted(int(w) for w in tick.window[tick.cam == c])
                line = {"camera": ids[c], "t_ms": t_ms, "occupied": windows}
                out.write(json.dumps(line | {"people": len(figs[c].u)}) + "\n")
    for w in writers.values():
        w.release()
    return Footage(folder, videos, truth, fps, n_ticks)
