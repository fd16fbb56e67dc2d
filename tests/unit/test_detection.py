"""The detection pipeline on drawn frames, with the real OpenCV MOG2."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camtopo.core.grid import Grid
from producers.detection import DetectionParams, FrameError, OccupancyDetector

GRID = Grid()


def background(seed: int = 0) -> np.ndarray:
    """A textured grey-brown 320 x 240 scene."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(90, 150, (12, 16, 3)).astype(np.float32)
    img = cv2.resize(coarse, (320, 240), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def trained(bg: np.ndarray, params: DetectionParams | None = None) -> OccupancyDetector:
    det = OccupancyDetector(GRID, params or DetectionParams())
    rng = np.random.default_rng(1)
    for _ in range(60):
        assert det.detect(noisy(bg, rng)).size == 0 or det.frames < 5
    return det


def draw_person(img: np.ndarray, u: int, v: int, h: int, colour=(40, 60, 200)) -> np.ndarray:
    """Upright figure whose feet (lowest pixel row) are at (u, v)."""
    out = img.copy()
    cv2.ellipse(out, (u, v - h * 4 // 10), (max(h // 8, 2), h * 4 // 10), 0, 0, 360, colour, -1)
    cv2.circle(out, (u, v - h * 9 // 10), max(h // 12, 2), (30, 30, 30), -1)
    return out


@pytest.mark.parametrize(("u", "v"), [(60, 100), (200, 180), (300, 230), (170, 70)])
def test_detects_the_window_of_a_drawn_figures_feet(u: int, v: int) -> None:
    bg = background()
    det = trained(bg)
    frame = draw_person(noisy(bg, np.random.default_rng(2)), u, v, 40)
    windows = det.detect(frame).tolist()
    assert windows == [GRID.window_at(u, v)]


def test_two_figures_give_sorted_unique_windows() -> None:
    bg = background(3)
    det = trained(bg)
    frame = draw_person(draw_person(bg, 250, 200, 40), 40, 90, 30)
    windows = det.detect(frame)
    assert windows.tolist() == sorted({GRID.window_at(250, 200), GRID.window_at(40, 90)})
    assert windows.dtype == np.int32


def test_cast_shadow_is_not_foreground() -> None:
    bg = background(4)
    det = trained(bg)
    u, v = 100, 120  # feet in window row 4; the shadow reaches down into row 5
    shaded = bg.copy()
    mask = np.zeros(bg.shape[:2], np.uint8)
    cv2.ellipse(mask, (u + 25, v + 12), (35, 16), 20, 0, 360, 255, -1)
    shaded[mask > 0] = (shaded[mask > 0] * 0.6).astype(np.uint8)
    frame = draw_person(shaded, u, v, 40)
    assert det.detect(frame).tolist() == [GRID.window_at(u, v)]
    assert GRID.window_at(u + 25, v + 27) != GRID.window_at(u, v)  # the test would notice
    # A shadow alone makes no occupancy at all.
    det2 = trained(bg)
    assert det2.detect(shaded).size == 0
    raw = det2.subtractor.apply(shaded, learningRate=0)
    assert (raw[mask > 0] == 127).mean() > 0.5  # MOG2 did see it, as shadow


def test_blobs_below_min_area_are_dropped() -> None:
    bg = background(5)
    small = cv2.rectangle(bg.copy(), (60, 60), (62, 63), (250, 250, 250), -1)  # 3 x 4 = 12 px
    big = cv2.rectangle(bg.copy(), (60, 60), (67, 69), (250, 250, 250), -1)  # 8 x 10 = 80 px
    strict = DetectionParams(kernel_px=1, min_blob_area=20)
    assert trained(bg, strict).detect(small).size == 0
    assert trained(bg, strict).detect(big).tolist() == [GRID.window_at(64, 69)]
    lenient = DetectionParams(kernel_px=1, min_blob_area=10)
    assert trained(bg, lenient).detect(small).tolist() == [GRID.window_at(61, 63)]


def test_opening_removes_speckle_noise() -> None:
    bg = background(6)
    det = trained(bg, DetectionParams(min_blob_area=1))
    frame = bg.copy()
    rng = np.random.default_rng(7)
    ys, xs = rng.integers(0, 240, 150), rng.integers(0, 320, 150)
    frame[ys, xs] = 255  # isolated hot pixels
    assert det.detect(frame).size == 0


def test_frames_of_another_size_are_scaled_to_the_grid() -> None:
    bg = background(8)
    big_bg = cv2.resize(bg, (640, 480))
    det = OccupancyDetector(GRID, DetectionParams())
    rng = np.random.default_rng(9)
    for _ in range(60):
        det.detect(noisy(big_bg, rng))
    frame = draw_person(big_bg, 400, 360, 80)
    assert det.detect(frame).tolist() == [GRID.window_at(200, 180)]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((240, 320, 3), np.float32),
        np.zeros((240, 320, 4), np.uint8),
        np.zeros((0, 5), np.uint8),
    ],
)
def test_bad_frames_raise_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(FrameError, match="frame"):
        OccupancyDetector(GRID).detect(bad)
