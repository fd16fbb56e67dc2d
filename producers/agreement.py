"""Agreement of occupancy detected on rendered video with the simulator's exact occupancy.

Per camera-frame, T = true occupied windows, D = detected windows. Strict scoring counts a
true window recovered when it is in D and a detected window false when it is not in T.
Tolerant scoring (reported *alongside*, never instead) accepts a window within Chebyshev
distance 1 on the grid -- the same neighbourhood as the paper's spatial padding, which the
exclusion counts apply anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from camtopo.core.grid import Grid
from camtopo.simulation.engine import Simulation
from camtopo.simulation.noise import NoiseConfig
from producers.detection import DetectionParams, OccupancyDetector
from producers.render import RenderConfig, SceneRenderer, rendered_ticks


@dataclass
class Agreement:
    """Counts over scored camera-frames; ratios as properties."""

    frames: int = 0
    true_windows: int = 0
    detected_windows: int = 0
    recovered_strict: int = 0
    false_strict: int = 0
    recovered_tolerant: int = 0
    false_tolerant: int = 0
    per_camera: dict[str, list[int]] = field(default_factory=dict)

    def add(self, grid: Grid, truth: Sequence[int], detected: Sequence[int]) -> None:
        t, d = set(truth), set(detected)
        self.frames += 1
        self.true_windows += len(t)
        self.detected_windows += len(d)
        self.recovered_strict += len(t & d)
        self.false_strict += len(d - t)
        t_near = {n for w in t for n in grid.neighbourhood(w, 1)}
        d_near = {n for w in d for n in grid.neighbourhood(w, 1)}
        self.recovered_tolerant += len(t & d_near)
        self.false_tolerant += len(d - t_near)

    @property
    def recall_strict(self) -> float:
        return self.recovered_strict / max(self.true_windows, 1)

    @property
    def false_rate_strict(self) -> float:
        return self.false_strict / max(self.detected_windows, 1)

    @property
    def recall_tolerant(self) -> float:
        return self.recovered_tolerant / max(self.true_windows, 1)

    @property
    def false_rate_tolerant(self) -> float:
        return self.false_tolerant / max(self.detected_windows, 1)

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {k: v for k, v in asdict(self).items() if k != "per_camera"}
        out.update(
            recall_strict=self.recall_strict,
            false_rate_strict=self.false_rate_strict,
            recall_tolerant=self.recall_tolerant,
            false_rate_tolerant=self.false_rate_tolerant,
        )
        return out


def measure_agreement(
    scenario: str = "campus",
    n_cameras: int = 12,
    seed: int = 1,
    seconds: float = 120.0,
    warmup_s: float = 20.0,
    density: float = 3.0,
    params: DetectionParams | None = None,
    render: RenderConfig | None = None,
    progress: bool = True,
) -> Agreement:
    """Run the full vision path (render -> JPEG -> decode -> detect) against exact truth.

    The first ``warmup_s`` seconds train the background models and are not scored (a real
    camera's pipeline likewise needs its background learnt before its output means much).
    """
    sim = Simulation.from_name(
        scenario, n_cameras, seed=seed, noise=NoiseConfig.off(), density=density
    )
    grid = sim.cameras.grid
    renderer = SceneRenderer(sim.cameras, seed=seed, config=render)
    detectors = [OccupancyDetector(grid, params) for _ in range(n_cameras)]
    n_ticks = round(seconds * sim.fps)
    warm = round(warmup_s * sim.fps)
    result = Agreement()
    ticks = rendered_ticks(sim, renderer, n_ticks=n_ticks)
    for rt in tqdm(ticks, total=n_ticks, desc="render+detect", disable=not progress):
        tick = rt.tick
        for c, jpeg in rt.jpegs.items():
            frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if frame is None:  # our own renderer's JPEG: a bug, not bad input
                raise RuntimeError(f"camera {c}: rendered JPEG does not decode")
            detected = detectors[c].detect(frame)
            if tick.index < warm:
                continue
            truth = tick.window[tick.cam == c]
            result.add(grid, truth.tolist(), detected.tolist())
            row = result.per_camera.setdefault(sim.cameras.ids[c], [0, 0, 0, 0])
            row[0] += len(truth)
            row[1] += len(set(truth.tolist()) & set(detected.tolist()))
            row[2] += len(detected)
            row[3] += len(set(detected.tolist()) - set(truth.tolist()))
    return result
