"""Detection noise: missed people, false blobs, merged blobs, camera outages and clock skew.

Defaults are realistic for background-subtraction blobs on surveillance video: about one
person in ten missed per frame, a false blob in roughly one camera-frame in fifty, people
within ~14 px merged into one blob, cameras offline ~2 % of the time in spells of minutes,
and clocks offset by up to +-300 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of each kind of detection error; :meth:`off` gives a noiseless run."""

    miss_prob: float = 0.10  # per person per frame
    false_blob_rate: float = 0.02  # false blobs per camera-frame
    merge_px: float = 14.0  # feet closer than this (in the image) make one blob
    outage_mean_s: float = 120.0  # mean length of an outage
    outage_fraction: float = 0.02  # long-run fraction of time a camera is offline
    max_skew_ms: float = 300.0  # constant per-camera clock offset, uniform in +-max

    @classmethod
    def off(cls) -> NoiseConfig:
        return cls(0.0, 0.0, 0.0, 120.0, 0.0, 0.0)


class Noise:
    """Applies :class:`NoiseConfig` to the true (camera, feet position) detections of a tick."""

    def __init__(self, config: NoiseConfig, n_cameras: int, fps: int, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.dt = 1.0 / fps
        self.skew_ms = rng.uniform(-config.max_skew_ms, config.max_skew_ms, n_cameras)
        # Two-state Markov chain per camera; start in its stationary distribution.
        f = config.outage_fraction
        self.p_recover = self.dt / config.outage_mean_s if f > 0 else 1.0
        self.p_fail = self.p_recover * f / (1 - f) if f > 0 else 0.0
        self.available = rng.random(n_cameras) >= f

    def step_outages(self) -> np.ndarray:
        """Advance camera on/offline states by one tick; bool (n_cameras,) available."""
        if self.p_fail == 0.0:
            return self.available
        r = self.rng.random(len(self.available))
        self.available = np.where(self.available, r >= self.p_fail, r < self.p_recover)
        return self.available

    def detections(
        self, cam: np.ndarray, u: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """True feet (cam, u, v) -> detected blob feet (cam, u, v) after misses and merges,
        with who is in each blob: the indices of the true feet kept, and each one's blob."""
        cfg = self.config
        keep = self.available[cam]
        if cfg.miss_prob > 0:
            keep &= self.rng.random(len(cam)) >= cfg.miss_prob
        kept = np.flatnonzero(keep)
        cam, u, v = cam[keep], u[keep], v[keep]
        blob = np.arange(len(cam))
        if cfg.merge_px > 0 and len(cam) > 1:
            # People in the same merge cell of the same camera form one blob whose lower-edge
            # midpoint is their mean feet position: a cheap O(n log n) stand-in for blob merging.
            cu = (u // cfg.merge_px).astype(np.int64)
            cv = (v // cfg.merge_px).astype(np.int64)
            key = (cam.astype(np.int64) * 4096 + cu) * 4096 + cv
            uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
            if len(uniq) < len(key):
                cam = (uniq // (4096 * 4096)).astype(np.int32)
                u = np.bincount(inv, u, len(uniq)) / counts
                v = np.bincount(inv, v, len(uniq)) / counts
                blob = inv.reshape(-1)
        return cam, u, v, kept, blob

    def false_blobs(self, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
        """(cam int32, window int32) of this tick's false blobs on available cameras."""
        up = np.flatnonzero(self.available)
        k = int(self.rng.poisson(self.config.false_blob_rate * len(up))) if len(up) else 0
        if k == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        return (
            self.rng.choice(up, k).astype(np.int32),
            self.rng.integers(0, n_windows, k).astype(np.int32),
        )
