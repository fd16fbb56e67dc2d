"""Per-blob appearance (``shared/contracts/appearance.md``): what a camera may say of a blob
besides where it is — an 8-bin hue histogram and a mean brightness, never an image.

- Each person wears a top and trousers, each coloured (a hue, spread a little by texture and
  shading) or achromatic (black, white, grey: pixels under saturation 0.2 do not count), plus a
  little skin. Looks are drawn per person id from their own generator, in id order, so adding
  appearance changes nothing else in a run.
- Each camera has its own unknown transfer: a hue shift of up to one bin and a monotonic
  brightness curve ``gain * v ** gamma``; each detection adds noise to both.
- A blob of several people (merged feet) shows their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HUE_BINS = 8


@dataclass(frozen=True)
class AppearanceConfig:
    coloured_top: float = 0.65  # share of tops with a hue (the rest black, white or grey)
    coloured_bottom: float = 0.4
    texture: float = 0.05  # spread of a garment's hue (turns of the hue circle)
    max_shift_bins: float = 1.0  # each camera's hue shift, uniform in +-this
    gain: tuple[float, float] = (0.75, 1.25)  # each camera's brightness gain, uniform
    gamma: tuple[float, float] = (0.7, 1.4)  # and its curve
    hue_noise: float = 0.2  # share of a detection's histogram that is noise
    value_noise: float = 0.05  # brightness noise per detection (sd)


class Looks:
    """People's clothing, and the cameras' transfers, deterministic from one generator."""

    def __init__(self, config: AppearanceConfig, n_cameras: int, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.shift = rng.uniform(-config.max_shift_bins, config.max_shift_bins, n_cameras)
        self.gain = rng.uniform(*config.gain, n_cameras)
        self.gamma = rng.uniform(*config.gamma, n_cameras)
        self.hue = np.zeros((0, HUE_BINS))
        self.value = np.zeros(0)
        self.noise_rng = np.random.default_rng(rng.integers(2**63))

    def _draw(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """k new looks: hue histograms (sum 1, or all 0 when nothing is coloured), brightness."""
        cfg = self.config
        hue = np.zeros((k, HUE_BINS))
        value = np.zeros(k)
        # (share of the blob's pixels, chance it is coloured, saturation if coloured)
        for share, coloured, fixed_hue in ((0.55, cfg.coloured_top, None),
                                           (0.35, cfg.coloured_bottom, None),
                                           (0.10, 1.0, 0.03)):  # fmt: skip
            h = rng.uniform(0, 1, k) if fixed_hue is None else np.full(k, fixed_hue)
            has = rng.random(k) < coloured
            v = rng.beta(2.0, 2.0, k)
            value += share * v
            # the garment's pixels spread over neighbouring bins (texture, shading)
            samples = (h[:, None] + rng.normal(0, cfg.texture, (k, 32))) % 1.0
            bins = np.minimum((samples * HUE_BINS).astype(np.int64), HUE_BINS - 1)
            for j in range(HUE_BINS):
                hue[:, j] += has * share * (bins == j).mean(axis=1)
        total = hue.sum(axis=1, keepdims=True)
        hue = np.divide(hue, total, out=np.zeros_like(hue), where=total > 0.25)
        return hue, value

    def of(self, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The looks of people ``pid`` (drawn in id order the first time they are asked for)."""
        need = int(pid.max()) + 1 if len(pid) else 0
        if need > len(self.value):
            hue, value = self._draw(need - len(self.value), self.rng)
            self.hue = np.concatenate([self.hue, hue])
            self.value = np.concatenate([self.value, value])
        return self.hue[pid], self.value[pid]

    def random(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Looks of false blobs (shadows, reflections): someone's clothes, nobody's (drawn
        from the noise stream, so people's looks stay fixed per id)."""
        return self._draw(k, self.noise_rng)

    def seen(self, cam: np.ndarray, hue: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, ...]:
        """What cameras ``cam`` report for blobs of true looks (hue, value): their transfer,
        then detection noise."""
        cfg, rng = self.config, self.noise_rng
        shift = self.shift[cam]
        whole = np.floor(shift).astype(np.int64)
        frac = (shift - whole)[:, None]
        idx = (np.arange(HUE_BINS)[None, :] - whole[:, None]) % HUE_BINS
        rolled = np.take_along_axis(hue, idx, axis=1)
        out = (1 - frac) * rolled + frac * np.roll(rolled, 1, axis=1)
        total = out.sum(axis=1, keepdims=True)
        coloured = total > 0.25  # a merged blob: coloured if its people mostly are
        out = np.divide(out, total, out=np.zeros_like(out), where=coloured)
        noise = rng.dirichlet(np.ones(HUE_BINS), len(cam))
        out = np.where(coloured, (1 - cfg.hue_noise) * out + cfg.hue_noise * noise, 0.0)
        v = self.gain[cam] * value ** self.gamma[cam] + rng.normal(0, cfg.value_noise, len(cam))
        return out, np.clip(v, 0.0, 1.0)
