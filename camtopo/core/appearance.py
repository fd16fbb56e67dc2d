"""Blob appearance held until its ticks are counted, as descriptors the transit evidence
compares (``shared/contracts/appearance.md``; camtopo/core/transit.py ``_alike``).

A descriptor is the blob's 8 hue bins and its brightness's *rank* among the blobs its camera
has seen so far: each camera's brightness curve is unknown but monotonic, so ranks compare
across cameras where raw brightness does not (the transfer Javed et al. learn per camera
pair, here with nothing to learn). Several blobs in one window at one tick are averaged.
Memory: the ticks not yet counted (the reorder allowance), and one histogram per camera.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock

HUE_BINS = 8
VALUE_BINS = 32  # resolution of each camera's brightness distribution


class AppearanceTable:
    def __init__(self, network: Network) -> None:
        self.network = network
        # Each camera's brightness histogram (one count per bin to start: no division by 0)
        self.values = np.ones((network.n_cameras, VALUE_BINS))
        # tick -> global window -> (descriptor sum (9,), blobs)
        self.pending: dict[int, dict[int, tuple[np.ndarray, int]]] = {}

    def add(
        self, camera: int, tick: int, blobs: Iterable[tuple[int, Iterable[float], float]]
    ) -> None:
        """A frame's blobs: (local window, hue histogram, brightness) each."""
        base = int(self.network.offsets[camera])
        hist = self.values[camera]
        at = self.pending.setdefault(tick, {})
        for window, hue, value in blobs:
            b = min(int(value * VALUE_BINS), VALUE_BINS - 1)
            rank = (hist[:b].sum() + hist[b] / 2) / hist.sum()
            hist[b] += 1
            d = np.empty(HUE_BINS + 1, np.float32)
            d[:HUE_BINS] = tuple(hue)
            d[HUE_BINS] = rank
            total, n = at.get(base + window, (0.0, 0))
            at[base + window] = (d + total, n + 1)

    def take(self, block: PaddedBlock) -> tuple[np.ndarray, np.ndarray] | None:
        """(desc_idx int32 (n_occ, n_ticks), desc float32 (m, 9)) of the block's occupied
        entries, and forget its ticks (and any older); None when none has a descriptor."""
        end = block.start_tick + block.n_ticks
        ticks = [t for t in self.pending if t < end]
        if not ticks:
            return None
        entry = {int(w): e for e, w in enumerate(block.occ_windows.tolist())}
        idx = np.full((len(entry), max(block.n_ticks, 1)), -1, np.int32)
        rows: list[np.ndarray] = []
        for t in sorted(ticks):
            at = self.pending.pop(t)
            k = t - block.start_tick
            if k < 0:
                continue  # ticks before the block were counted without them
            for w, (total, n) in at.items():
                e = entry.get(w)
                if e is not None:
                    idx[e, k] = len(rows)
                    rows.append(total / n)
        if not rows:
            return None
        return idx, np.stack(rows).astype(np.float32)
