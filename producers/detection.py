"""The per-camera detection pipeline of the paper's section 5.1: frame -> occupied windows.

Stages: Stauffer–Grimson mixture-of-Gaussians background subtraction (OpenCV's MOG2 with
shadow detection; shadow pixels, value 127, are not foreground), morphological opening (drops
specks of noise) then closing (fills holes in bodies), connected components with a minimum
blob area, and for every blob the midpoint of its bounding box's lower edge -- the lowest
visible extent, approximately the feet -- mapped to a window of the camera's grid.

Frames of another size than the grid's are resized to the grid's ``width`` x ``height``
first, so a window is the same fraction of the view whatever the source resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from camtopo.core.grid import Grid
from camtopo.settings import Settings, get_settings

FOREGROUND = 255  # MOG2 marks foreground 255, shadows 127, background 0


@dataclass(frozen=True)
class DetectionParams:
    """Tuning of the pipeline; defaults come from :class:`camtopo.settings.Settings`."""

    history: int = 500
    var_threshold: float = 25.0
    learning_rate: float = -1.0
    kernel_px: int = 3
    min_blob_area: int = 12

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DetectionParams:
        s = settings or get_settings()
        return cls(
            history=s.detection.mog2_history,
            var_threshold=s.detection.mog2_var_threshold,
            learning_rate=s.detection.mog2_learning_rate,
            kernel_px=s.detection.morph_kernel_px,
            min_blob_area=s.detection.min_blob_area_px,
        )


class FrameError(ValueError):
    """A frame that cannot be analysed (wrong type, shape or depth); the message says why."""


class OccupancyDetector:
    """One camera's pipeline state (its background model) and the frame -> windows function."""

    def __init__(self, grid: Grid | None = None, params: DetectionParams | None = None) -> None:
        self.grid = grid or Grid()
        self.params = params or DetectionParams.from_settings()
        p = self.params
        self.subtractor = cv2.createBackgroundSubtractorMOG2(
            history=p.history, varThreshold=p.var_threshold, detectShadows=True
        )
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (p.kernel_px, p.kernel_px))
        self.frames = 0

    def _check(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise FrameError(f"frame must be a uint8 image array, got {type(frame).__name__}")
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
            raise FrameError(f"frame must be grey (h, w) or BGR (h, w, 3), got {frame.shape}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise FrameError(f"empty frame {frame.shape}")
        g = self.grid
        if frame.shape[1] != g.width or frame.shape[0] != g.height:
            frame = cv2.resize(frame, (g.width, g.height), interpolation=cv2.INTER_AREA)
        return frame

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (h, w) mask, 255 = foreground after clean-up; shadows are dropped.

        Updates the background model, so call it once per frame, in order.
        """
        frame = self._check(frame)
        raw = self.subtractor.apply(frame, learningRate=self.params.learning_rate)
        self.frames += 1
        # Shadow pixels (127) fall below the threshold: only certain foreground survives.
        _, mask = cv2.threshold(raw, FOREGROUND - 1, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.kernel)

    def blobs(self, mask: np.ndarray) -> np.ndarray:
        """int32 (k, 5) of (x, y, w, h, area) for connected components of at least min area."""
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        stats = stats[1:n]  # label 0 is the background
        return stats[stats[:, cv2.CC_STAT_AREA] >= self.params.min_blob_area].astype(np.int32)

    def feet(self, boxes: np.ndarray) -> np.ndarray:
        """float64 (k, 2): midpoint of each box's lower edge (centre of its lowest pixel row)."""
        x = boxes[:, 0] + boxes[:, 2] / 2.0
        y = boxes[:, 1] + boxes[:, 3] - 0.5
        return np.stack([x, y], axis=1).astype(np.float64)

    def windows_of(self, feet: np.ndarray) -> np.ndarray:
        """int32 sorted unique windows holding the given image points."""
        g = self.grid
        wins = {g.window_at(float(x), float(y)) for x, y in feet}
        return np.array(sorted(wins), dtype=np.int32)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """int32 sorted unique occupied windows of this frame (updates the background)."""
        return self.windows_of(self.feet(self.blobs(self.foreground(frame))))
