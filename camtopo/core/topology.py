"""The estimator: frames in, activity topology out — the one path shared by the offline command,
the streaming processors and the benchmarks."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from camtopo.core.adjacency import AdjacencyIndex
from camtopo.core.appearance import AppearanceTable
from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import (
    CameraEdge,
    ExclusionCounts,
    WindowEdges,
    camera_edges,
    window_edges,
)
from camtopo.core.grid import Network
from camtopo.core.moved import MoveDetector, MoveParams
from camtopo.core.padding import PaddedBlock
from camtopo.core.parameters import EstimatorParameters, ExclusionParameters
from camtopo.core.reference import DenseExclusion
from camtopo.core.ticks import OccupancyBuffer, tick_of
from camtopo.core.transit import DirectedTransit, TransitEstimator

log = logging.getLogger(__name__)


def make_counts(
    network: Network, params: ExclusionParameters, engine: str = "fast"
) -> ExclusionCounts:
    """``fast`` (production), ``exact`` (fast engine, paper semantics) or ``dense`` (reference)."""
    if engine == "dense":
        return DenseExclusion(network, params.count_limit)
    if engine == "exact":
        return FastExclusion(network, count_limit=params.count_limit)
    if engine == "fast":
        return FastExclusion(
            network,
            count_limit=params.count_limit,
            readmit_after=params.readmit_after,
            activity_gate=params.activity_gate,
            prune=params.prune,
            prune_min_opportunities=params.prune_min_opportunities,
            prune_max_ratio=params.prune_max_ratio,
            max_pool_bytes=params.max_pool_mb << 20,
        )
    raise ValueError(f"unknown engine {engine!r}; choose fast, exact or dense")


def make_transit(network: Network, params: EstimatorParameters) -> TransitEstimator | None:
    if params.transit is None:
        return None
    if network.n_cameras > params.transit_max_cameras:
        log.warning(
            "transit evidence is off: %d cameras > transit_max_cameras = %d (its zone-pair "
            "map grows with the square of the network; see docs/transit.md)",
            network.n_cameras,
            params.transit_max_cameras,
        )
        return None
    return TransitEstimator(network, params.transit)


def merge_transit(
    network: Network, overlap: list[CameraEdge], directed: list[DirectedTransit]
) -> list[CameraEdge]:
    """Overlap edges, plus a ``transit`` edge for each other pair linked in either direction.

    Either direction suffices: one-way walkways exist, and an exit zone in one view need not
    be an entry zone in the other. A pair that overlaps stays ``overlap``.
    """
    have = {(e.a, e.b) for e in overlap} | {(e.b, e.a) for e in overlap}
    pairs: dict[tuple[int, int], dict[str, DirectedTransit]] = {}
    for d in directed:
        lo, hi = min(d.src, d.dst), max(d.src, d.dst)
        pairs.setdefault((lo, hi), {})["a->b" if d.src == lo else "b->a"] = d
    out = list(overlap)
    for (lo, hi), ways in sorted(pairs.items()):
        a, b = network.cameras[lo], network.cameras[hi]
        if (a, b) in have:
            continue
        best = max(ways.values(), key=lambda d: d.support)
        out.append(
            CameraEdge(
                a=a,
                b=b,
                kind="transit",
                weight=max(1 - d.expected / d.observed for d in ways.values()),
                support=round(sum(d.support for d in ways.values())),
                co_occurrences=round(sum(d.observed for d in ways.values())),
                transit_s=round(best.median_s, 2),
                transit={k: d.to_json() for k, d in sorted(ways.items())},
            )
        )
    return out


@dataclass(frozen=True)
class CameraMoveEvent:
    """A camera whose evidence was forgotten at ``tick``: ``detected`` or ``operator``."""

    camera: str
    tick: int
    cause: str


@dataclass
class Topology:
    window_edges: WindowEdges
    camera_edges: list[CameraEdge]
    observed_ticks: int


class TopologyEstimator:
    """Occupancy buffer + exclusion counts, with the parameters' padding and thresholds."""

    def __init__(
        self,
        network: Network,
        params: EstimatorParameters,
        engine: str = "fast",
        moves: MoveParams | None = None,
    ) -> None:
        """``moves``: detect moved cameras with these thresholds (None: only operator
        moves, :meth:`camera_moved`)."""
        self.network = network
        self.params = params
        ex = params.exclusion
        self.buffer = OccupancyBuffer(
            network, ex.tolerance_ticks, ex.spatial_radius, tick_ms=params.tick_ms
        )
        self.counts = make_counts(network, ex, engine)
        self.transit = make_transit(network, params)
        # blobs' appearance, for the transit evidence, until their ticks are counted
        self.appearance = AppearanceTable(network) if self.transit is not None else None
        self.adjacency = (
            AdjacencyIndex(self.counts, ex.c_star, ex.o_ref)
            if isinstance(self.counts, FastExclusion)
            else None
        )
        self.observed_ticks = 0
        self.observations = 0  # occupied (window, tick) pairs counted
        # Ticks below this are already in the transit state (restored from a checkpoint taken
        # later than the counts'): replayed blocks feed it only from here.
        self.transit_through = 0
        self.detector = MoveDetector(network, moves) if moves is not None else None
        self.move_events: list[CameraMoveEvent] = []
        self._scheduled: list[tuple[int, int]] = []  # (tick, camera) operator moves to come
        self._counted_until: int | None = None  # end tick of the last block counted

    def tick_of(self, t_ms: int) -> int:
        return tick_of(t_ms, self.params.tick_ms)

    def add_frame(
        self,
        camera: int,
        t_ms: int,
        windows: np.ndarray | list[int],
        blobs: Sequence[tuple[int, Sequence[float], float]] = (),
    ) -> int:
        """One frame by capture time, at its camera's own rate, with its blobs' appearance
        ((window, hue, brightness) each, optional); returns its tick."""
        tick = self.buffer.add_frame(camera, t_ms, windows)
        if blobs and self.appearance is not None:
            self.appearance.add(camera, tick, blobs)
        return tick

    def advance(self, complete_until_tick: int) -> int:
        """Count every block whose padding span ends before ``complete_until_tick``."""
        return self._count(self.buffer.release(complete_until_tick))

    def finish(self) -> int:
        return self._count(self.buffer.flush())

    def camera_moved(self, camera: str, at_tick: int | None = None) -> None:
        """An operator says ``camera`` was moved (re-aimed, re-mounted): forget its evidence
        now, or once counting reaches ``at_tick`` (frames before it describe the old view)."""
        c = self.network.camera_index(camera)
        if at_tick is None or (self._counted_until is not None and at_tick <= self._counted_until):
            self._forget(c, self._counted_until or 0, "operator")
        else:
            self._scheduled.append((at_tick, c))
            self._scheduled.sort()

    def camera_removed(self, camera: str) -> None:
        """The camera registry removed ``camera``: forget its evidence now, so its edges are
        gone at the next topology update (its frames stop being counted)."""
        self._forget(self.network.camera_index(camera), self._counted_until or 0, "removed")

    def _forget(self, camera: int, tick: int, cause: str) -> None:
        self.counts.forget_camera(camera)
        if self.transit is not None:
            self.transit.forget_camera(camera)
        if self.detector is not None:
            self.detector.forget(camera)
        self.move_events.append(CameraMoveEvent(self.network.cameras[camera], tick, cause))
        log.warning(
            "camera %s: evidence forgotten at tick %d (%s move); relearning it",
            self.network.cameras[camera],
            tick,
            cause,
        )

    def _count(self, blocks: Iterator[PaddedBlock]) -> int:
        n = 0
        for block in blocks:
            while self._scheduled and self._scheduled[0][0] <= block.start_tick:
                tick, camera = self._scheduled.pop(0)
                self._forget(camera, tick, "operator")
            self.counts.update(block)
            end = block.start_tick + block.n_ticks
            self._counted_until = end
            if self.detector is not None:
                self.detector.observe(block)
                if self.detector.due(end):
                    self._check_moves(end)
            if self.transit is not None and end > self.transit_through:
                fresh = block.since(self.transit_through)
                looks = self.appearance.take(fresh) if self.appearance is not None else None
                self.transit.update(fresh, looks)
                self.transit_through = end
            self.observed_ticks += block.n_ticks
            self.observations += block.n_occupied
            n += 1
        return n

    def _check_moves(self, end: int) -> None:
        assert self.detector is not None
        if self.adjacency is not None:
            self.adjacency.refresh()
            pairs = self.adjacency.pairs()
        else:
            ex = self.params.exclusion
            e = window_edges(self.counts, ex.c_star, ex.o_ref)
            pairs = (e.i, e.j)
        for camera in self.detector.check(end, pairs, self.counts):
            self._forget(camera, end, "detected")

    def window_edges(self) -> WindowEdges:
        """Adjacent window pairs now: refreshed from changed rows on the fast engine."""
        if self.adjacency is not None:
            return self.adjacency.window_edges()
        ex = self.params.exclusion
        return window_edges(self.counts, ex.c_star, ex.o_ref)

    def topology(self) -> Topology:
        edges = self.window_edges()
        cams = camera_edges(self.network, edges)
        if self.transit is not None:
            index = self.network.camera_index
            overlaps = {(index(e.a), index(e.b)) for e in cams}
            cams = merge_transit(self.network, cams, self.transit.directed(overlaps=overlaps))
        return Topology(edges, cams, self.observed_ticks)
