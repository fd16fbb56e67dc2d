"""The estimator: frames in, activity topology out — the one path shared by the offline command,
the streaming processors and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import CameraEdge, ExclusionCounts, WindowEdges, camera_edges, window_edges
from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock
from camtopo.core.reference import DenseExclusion
from camtopo.core.ticks import OccupancyBuffer
from camtopo.settings import Settings


def make_counts(network: Network, settings: Settings, engine: str = "fast") -> ExclusionCounts:
    """``fast`` (production), ``exact`` (fast engine, paper semantics) or ``dense`` (reference)."""
    if engine == "dense":
        return DenseExclusion(network, settings.count_bits)
    if engine == "exact":
        return FastExclusion(network, count_bits=settings.count_bits)
    if engine == "fast":
        return FastExclusion(
            network,
            count_bits=settings.count_bits,
            activity_gate=settings.activity_gate,
            prune=settings.prune,
            prune_min_opportunities=settings.prune_min_opportunities,
            prune_max_ratio=settings.prune_max_ratio,
            max_pool_bytes=settings.max_pool_mb << 20,
        )
    raise ValueError(f"unknown engine {engine!r}; choose fast, exact or dense")


@dataclass
class Topology:
    window_edges: WindowEdges
    camera_edges: list[CameraEdge]
    observed_ticks: int


class TopologyEstimator:
    """Occupancy buffer + exclusion counts, with the settings' padding and thresholds."""

    def __init__(self, network: Network, settings: Settings, engine: str = "fast") -> None:
        self.network = network
        self.settings = settings
        self.buffer = OccupancyBuffer(
            network, settings.temporal_tolerance_ticks, settings.spatial_radius
        )
        self.counts = make_counts(network, settings, engine)
        self.observed_ticks = 0
        self.observations = 0  # occupied (window, tick) pairs counted

    def tick_of(self, t_ms: int) -> int:
        return int(round(t_ms / self.settings.tick_ms))

    def add_frame(self, camera: int, t_ms: int, windows: np.ndarray | list[int]) -> None:
        self.buffer.add(camera, self.tick_of(t_ms), windows)

    def advance(self, complete_until_tick: int) -> int:
        """Count every block whose padding span ends before ``complete_until_tick``."""
        return self._count(self.buffer.release(complete_until_tick))

    def finish(self) -> int:
        return self._count(self.buffer.flush())

    def _count(self, blocks: Iterator[PaddedBlock]) -> int:
        n = 0
        for block in blocks:
            self.counts.update(block)
            self.observed_ticks += block.n_ticks
            self.observations += block.n_occupied
            n += 1
        return n

    def topology(self) -> Topology:
        edges = window_edges(self.counts, self.settings.c_star, self.settings.o_ref)
        return Topology(edges, camera_edges(self.network, edges), self.observed_ticks)
