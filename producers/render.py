"""Rendered camera video with known truth: the simulator's people drawn into 320 x 240 frames.

Each camera gets a fixed background made once from its ground->image homography: paving
tiles and mottling laid on the ground plane (so they recede with perspective), a building
facade above the horizon and past the camera's range. Every frame draws, far to near so near
people occlude far ones, each person the simulator counts as *seen* by that camera (feet in
the image and within its range) as an upright figure -- elliptic body and round head, its
pixel height from the camera's projection of a 1.7 m person standing at the feet -- with a
soft cast shadow on the ground beside it. Then a slow lighting drift, sensor noise and a JPEG
round trip, which is what a real camera sends (the paper's JPEG encoded frames).

The occupancy truth for a frame is the simulator's exact (noiseless) occupancy, so running
the detection pipeline on these frames measures the whole vision path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from camtopo.simulation.cameras import Cameras
from camtopo.simulation.engine import Simulation, Tick

SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel placement of small figures
ONE = 1 << SHIFT


@dataclass(frozen=True)
class RenderConfig:
    """Appearance and degradations of rendered frames."""

    jpeg_quality: int = 80
    noise_sigma: float = 3.0  # grey levels of Gaussian sensor noise per channel
    drift: float = 0.12  # lighting gain swings by +-drift
    drift_period_s: float = 600.0
    shadows: bool = True
    body_width: float = 0.27  # figure width / height (0.45 m shoulders on 1.7 m)


class Figure(NamedTuple):
    """People seen by one camera in one frame, arrays of shape (m,)."""

    person: np.ndarray  # int64 crowd slot (stable colour per slot)
    u: np.ndarray  # float64 feet x in the image
    v: np.ndarray  # float64 feet y in the image
    height_px: np.ndarray  # float64 figure height in pixels
    depth: np.ndarray  # float64 distance along the optical axis


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """float32 in ~[-1, 1]: value noise, a coarse random grid upsampled smoothly."""
    h, w = shape
    coarse = rng.uniform(-1, 1, (h // scale + 2, w // scale + 2)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


class SceneRenderer:
    """Renders frames of the cameras of a scenario; deterministic from ``seed``."""

    def __init__(self, cameras: Cameras, seed: int = 0, config: RenderConfig | None = None) -> None:
        self.cameras = cameras
        self.config = config or RenderConfig()
        self.seed = seed
        self._backgrounds: dict[int, np.ndarray] = {}
        self._palette = np.random.default_rng([seed, 7]).integers(20, 236, (4096, 2, 3))
        self._rng = np.random.default_rng([seed, 8])
        self._noise = np.empty((cameras.grid.height, cameras.grid.width, 3), np.int16)

    # --- backgrounds --------------------------------------------------------------------------
    def background(self, camera: int) -> np.ndarray:
        """uint8 (h, w, 3) BGR: the camera's empty scene under neutral light."""
        if camera not in self._backgrounds:
            self._backgrounds[camera] = self._make_background(camera)
        return self._backgrounds[camera]

    def _make_background(self, camera: int) -> np.ndarray:
        g = self.cameras.grid
        rng = np.random.default_rng([self.seed, 9, camera])
        vv, uu = np.mgrid[0 : g.height, 0 : g.width].astype(np.float64)
        uv = np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], axis=1)
        ground, ahead = self.cameras.image_to_ground(camera, uv)
        dist = np.linalg.norm(ground - self.cameras.position[camera], axis=1)
        on_ground = (ahead & (dist <= self.cameras.max_range[camera] * 1.6)).reshape(
            g.height, g.width
        )
        gx = ground[:, 0].reshape(g.height, g.width)
        gy = ground[:, 1].reshape(g.height, g.width)

        # Ground: 0.6 m paving slabs with darker joints, per-slab tone, large-scale mottling.
        base = rng.uniform(95, 150)
        tint = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.05), rng.uniform(0.95, 1.1)])
        slab = 0.6
        sx, sy = np.floor(gx / slab), np.floor(gy / slab)
        tone = (np.sin(sx * 12.9898 + sy * 78.233) * 43758.5453) % 1.0 - 0.5
        fx, fy = (gx / slab) % 1.0, (gy / slab) % 1.0
        joint = (np.minimum(np.minimum(fx, 1 - fx), np.minimum(fy, 1 - fy)) < 0.04).astype(float)
        mottle = _smooth_noise(rng, (g.height, g.width), 24)
        ground_lum = base + 10 * tone - 25 * joint + 12 * mottle
        ground_img = ground_lum[..., None] * tint[None, None, :]

        # Facade above the horizon: wall with a grid of windows, in image coordinates.
        wall = rng.uniform(70, 170) + 10 * _smooth_noise(rng, (g.height, g.width), 40)
        win_w, win_h = rng.integers(14, 26), rng.integers(12, 20)
        in_win = ((uu % (win_w * 2)) < win_w) & ((vv % (win_h * 2)) < win_h)
        wall = np.where(in_win, wall * 0.55, wall)
        wall_tint = np.array([rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.1)])
        wall_img = wall[..., None] * wall_tint[None, None, :]

        img = np.where(on_ground[..., None], ground_img, wall_img)
        img = cv2.GaussianBlur(img.astype(np.float32), (3, 3), 0.7)  # optics: no aliasing
        out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
        return out

    # --- frames -------------------------------------------------------------------------------
    def gain(self, camera: int, t_s: float) -> float:
        c = self.config
        phase = (camera * 2.399) % (2 * np.pi)  # golden-angle phases: cameras drift apart
        return 1.0 + c.drift * float(np.sin(2 * np.pi * t_s / c.drift_period_s + phase))

    def draw(self, camera: int, t_s: float, figures: Figure) -> np.ndarray:
        """uint8 (h, w, 3) BGR frame before noise and JPEG."""
        img = self.background(camera).copy()
        c = self.config
        order = np.argsort(-figures.depth)  # far first: near figures occlude far ones
        if c.shadows:
            # Shadows first, so no figure is darkened by another's shadow.
            for k in order:
                h = figures.height_px[k]
                centre = (int(figures.u[k] * ONE + 0.35 * h * ONE), int(figures.v[k] * ONE))
                axes = (max(int(0.4 * h * ONE), ONE), max(int(0.05 * h * ONE), ONE))
                x0, y0 = int(figures.u[k] - 1), int(figures.v[k] - 0.1 * h)
                x1, y1 = int(figures.u[k] + 0.8 * h + 2), int(figures.v[k] + 0.1 * h + 2)
                x0, y0 = max(x0, 0), max(y0, 0)
                if x1 <= x0 or y1 <= y0:
                    continue
                patch = img[y0:y1, x0:x1]
                mask = np.zeros(patch.shape[:2], np.uint8)
                cv2.ellipse(
                    mask,
                    (centre[0] - x0 * ONE, centre[1] - y0 * ONE),
                    axes,
                    0,
                    0,
                    360,
                    255,
                    -1,
                    cv2.LINE_AA,
                    SHIFT,
                )
                dark = 1.0 - 0.4 * mask.astype(np.float32)[..., None] / 255.0
                img[y0:y1, x0:x1] = (patch * dark).astype(np.uint8)
        for k in order:
            h = figures.height_px[k]
            u, v = figures.u[k], figures.v[k]
            body, head = self._palette[int(figures.person[k]) % len(self._palette)]
            half_w = max(c.body_width * h / 2, 0.8)
            body_axes = (max(int(half_w * ONE), ONE), max(int(0.41 * h * ONE), ONE))
            body_centre = (int(u * ONE), int((v - 0.41 * h) * ONE))
            cv2.ellipse(
                img, body_centre, body_axes, 0, 0, 360, body.tolist(), -1, cv2.LINE_AA, SHIFT
            )
            head_r = max(int(0.085 * h * ONE), ONE // 2)
            cv2.circle(
                img,
                (int(u * ONE), int((v - 0.9 * h) * ONE)),
                head_r,
                head.tolist(),
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
        return img

    def degrade(self, camera: int, t_s: float, img: np.ndarray) -> np.ndarray:
        """Lighting drift and sensor noise: uint8 (h, w, 3)."""
        c = self.config
        out = cv2.convertScaleAbs(img, alpha=self.gain(camera, t_s))
        if c.noise_sigma > 0:
            # cv2's stubs type mean and stddev as arrays; scalars are what its docs show.
            cv2.randn(self._noise, 0, c.noise_sigma)  # type: ignore[call-overload]
            out = cv2.add(out, self._noise, dtype=cv2.CV_8U)
        return out

    def jpeg(self, img: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:  # pragma: no cover - encoding a valid uint8 image does not fail
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def render_jpeg(self, camera: int, t_s: float, figures: Figure) -> bytes:
        """The camera's JPEG bytes for this frame."""
        return self.jpeg(self.degrade(camera, t_s, self.draw(camera, t_s, figures)))


class RenderedTick(NamedTuple):
    tick: Tick  # the simulator's exact occupancy (simulate it with NoiseConfig.off())
    jpegs: dict[int, bytes]  # camera index -> JPEG bytes of this frame


def figures_by_camera(sim: Simulation, cameras: Sequence[int]) -> dict[int, Figure]:
    """Who each of ``cameras`` sees right now, with feet, pixel heights and depths."""
    cams = sim.cameras
    slot, cam, u, v = sim.sightings()
    pts = sim.crowd.positions()[slot]
    _, _, depth = cams.project_pairs(cam.astype(np.int64), pts)
    out: dict[int, Figure] = {}
    for c in cameras:
        sel = cam == c
        feet = pts[sel]
        height = cams.person_height_px(c, feet) if len(feet) else np.zeros(0)
        out[c] = Figure(slot[sel].astype(np.int64), u[sel], v[sel], height, depth[sel])
    return out


def rendered_ticks(
    sim: Simulation,
    renderer: SceneRenderer,
    cameras: Sequence[int] | None = None,
    n_ticks: int | None = None,
) -> Iterator[RenderedTick]:
    """Step ``sim`` and render ``cameras`` (all by default) for each tick.

    Offline cameras (``tick.available`` False) get no frame: a dark camera sends nothing.
    """
    cameras = list(range(sim.cameras.n)) if cameras is None else list(cameras)
    for tick in sim.ticks(n_ticks):
        t_s = tick.index / sim.fps
        figs = figures_by_camera(sim, cameras)
        jpegs = {
            c: renderer.render_jpeg(c, t_s, figs[c]) for c in cameras if bool(tick.available[c])
        }
        yield RenderedTick(tick, jpegs)
