"""Ground truth: overlapping windows, overlap and transit camera links, true transit times.

- Window overlaps are measured on *walkable* ground only (people are only seen where they
  walk): a lattice of ``step`` m points over the walkways is projected into every camera; two
  windows of different cameras overlap when the points they share cover at least
  ``min_area_m2`` (default 0.25 m²).
- A walkway station (points every ``station_m`` along centre lines) is *covered* by a camera
  when it sees most of the walkway's cross-section there. A transit link a -> b exists when
  people can walk from a covered station of a to one of b through uncovered stations only,
  i.e. without passing another camera's view; ``path_m`` is that walk's length (capped at
  ``max_transit_m``, beyond which exclusion's temporal padding cannot link cameras anyway).
- True transit times come from the simulated walkers: the time between the last frame a
  person is seen by camera a and the first frame they are seen by camera b.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camtopo.core.grid import Network
from camtopo.simulation.cameras import CameraIndex, Cameras
from camtopo.simulation.people import MEAN_SPEED, Crowd
from camtopo.simulation.scenarios import Scenario
from camtopo.simulation.world import Walkways


@dataclass
class StaticTruth:
    window_pairs: np.ndarray  # int64 (k, 2): (cam * n_windows + w) pairs, first < second
    window_area_m2: np.ndarray  # float64 (k,)
    camera_overlap_m2: dict[tuple[int, int], float]  # a < b
    transit_m: dict[tuple[int, int], float]  # directed a -> b walking distance
    params: dict[str, float] = field(default_factory=dict)


def sightings_of(
    cameras: Cameras, index: CameraIndex, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point_idx, cam, window) for every camera that sees each ground point."""
    idx, cam = index.candidates(points)
    mask, u, v = cameras.visible_pairs(cam, points[idx])
    return idx[mask], cam[mask], cameras.windows(u[mask], v[mask])


def window_overlaps(
    world: Walkways, cameras: Cameras, index: CameraIndex, step: float, min_area_m2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-camera window pairs sharing >= min_area_m2 of walkable ground, and their areas."""
    nw = cameras.grid.n_windows
    counts: dict[int, int] = {}
    for chunk in world.walkable_lattice(step):
        idx, cam, win = sightings_of(cameras, index, chunk)
        order = np.argsort(idx, kind="stable")
        idx, gw = idx[order], cam[order].astype(np.int64) * nw + win[order]
        # Pair every sighting with each later one of the same point (groups are tiny).
        for d in range(1, 64):
            same = idx[d:] == idx[:-d]
            if not same.any():
                break
            a, b = gw[:-d][same], gw[d:][same]
            cross = a // nw != b // nw
            lo, hi = np.minimum(a, b)[cross], np.maximum(a, b)[cross]
            keys, n = np.unique(lo * (cameras.n * nw) + hi, return_counts=True)
            for k, c in zip(keys.tolist(), n.tolist(), strict=True):
                counts[k] = counts.get(k, 0) + c
    if not counts:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    keys = np.fromiter(counts.keys(), np.int64, len(counts))
    area = np.fromiter(counts.values(), np.float64, len(counts)) * step * step
    keep = area >= min_area_m2
    keys, area = keys[keep], area[keep]
    order = np.argsort(keys)
    keys, area = keys[order], area[order]
    pairs = np.stack([keys // (cameras.n * nw), keys % (cameras.n * nw)], axis=1)
    return pairs, area


def _stations(
    world: Walkways, spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[tuple[int, int, float]]]:
    """Centre-line stations with cross-section sample points and directed arcs between them."""
    pts = [world.nodes]
    half = np.zeros(world.n_nodes)
    normals = [np.tile([[1.0, 0.0]], (world.n_nodes, 1))]
    np.maximum.at(half, world.edge_a, world.width / 2)
    np.maximum.at(half, world.edge_b, world.width / 2)
    arcs: list[tuple[int, int, float]] = []
    n = world.n_nodes
    for e in range(world.n_edges):
        a, b = int(world.edge_a[e]), int(world.edge_b[e])
        p, q = world.nodes[a], world.nodes[b]
        k = max(1, int(np.ceil(world.lengths[e] / spacing)))
        f = np.arange(1, k) / k
        inner = p + f[:, None] * (q - p)
        ids = [a, *range(n, n + k - 1), b]
        n += k - 1
        pts.append(inner)
        d = (q - p) / world.lengths[e]
        normals.append(np.tile([[-d[1], d[0]]], (k - 1, 1)))
        half = np.concatenate([half, np.full(k - 1, world.width[e] / 2)])
        seg = world.lengths[e] / k
        for s, t in itertools.pairwise(ids):
            arcs.append((s, t, seg))
            if not world.one_way[e]:
                arcs.append((t, s, seg))
    return np.concatenate(pts), np.concatenate(normals), half, n, arcs


def transit_distances(
    world: Walkways,
    cameras: Cameras,
    index: CameraIndex,
    spacing: float = 2.0,
    max_transit_m: float = 150.0,
) -> dict[tuple[int, int], float]:
    """Directed a -> b walking distance through unwatched walkway, for every reachable pair."""
    centre, normal, half, n_st, arcs = _stations(world, spacing)
    offsets = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])
    samples = centre[:, None, :] + offsets[None, :, None] * half[:, None, None] * normal[:, None, :]
    idx, cam, _ = sightings_of(cameras, index, samples.reshape(-1, 2))
    key = np.unique((idx // len(offsets)) * cameras.n + cam, return_counts=True)
    covered = key[0][key[1] >= 3]  # most of the cross-section is in view
    st_of, cam_of = covered // cameras.n, (covered % cameras.n).astype(np.int64)
    station_cams: list[list[int]] = [[] for _ in range(n_st)]
    cam_stations: list[list[int]] = [[] for _ in range(cameras.n)]
    for s, c in zip(st_of.tolist(), cam_of.tolist(), strict=True):
        station_cams[s].append(c)
        cam_stations[c].append(s)
    out_arcs: list[list[tuple[int, float]]] = [[] for _ in range(n_st)]
    for s, t, length in arcs:
        out_arcs[s].append((t, length))
    result: dict[tuple[int, int], float] = {}
    for a in range(cameras.n):
        sources = cam_stations[a]
        dist = dict.fromkeys(sources, 0.0)
        heap = [(0.0, s) for s in sources]
        heapq.heapify(heap)
        done: set[int] = set()
        while heap:
            d, s = heapq.heappop(heap)
            if s in done:
                continue
            done.add(s)
            others = [c for c in station_cams[s] if c != a]
            if d > 0 and others:
                for c in others:
                    if d < result.get((a, c), np.inf):
                        result[(a, c)] = d
                if a not in station_cams[s]:
                    continue  # walked into another camera's view: stop here
            for t, length in out_arcs[s]:
                nd = 0.0 if a in station_cams[t] else d + length
                if nd <= max_transit_m and nd < dist.get(t, np.inf):
                    dist[t] = nd
                    heapq.heappush(heap, (nd, t))
    return result


def static_truth(
    scenario: Scenario,
    index: CameraIndex,
    step: float | None = None,
    min_area_m2: float = 0.25,
    station_m: float = 2.0,
    max_transit_m: float = 150.0,
) -> StaticTruth:
    cams = scenario.cameras
    if step is None:
        step = 0.25 if cams.n <= 2000 else 0.5  # bounded work on 10,000-camera worlds
    pairs, area = window_overlaps(scenario.world, cams, index, step, min_area_m2)
    nw = cams.grid.n_windows
    cam_area: dict[tuple[int, int], float] = {}
    for (ga, gb), ar in zip(pairs.tolist(), area.tolist(), strict=True):
        k = (min(ga // nw, gb // nw), max(ga // nw, gb // nw))
        cam_area[k] = cam_area.get(k, 0.0) + ar
    transit = transit_distances(scenario.world, cams, index, station_m, max_transit_m)
    return StaticTruth(
        pairs,
        area,
        cam_area,
        transit,
        {
            "lattice_step_m": step,
            "min_overlap_m2": min_area_m2,
            "station_m": station_m,
            "max_transit_m": max_transit_m,
        },
    )


class TransitRecorder:
    """True camera-to-camera transit times of the simulated walkers (reservoir per direction):
    a person's next camera after leaving one, within ``max_s`` (the contract's first hop)."""

    def __init__(self, dt: float, rng: np.random.Generator, cap: int = 2000, max_s: float = 120):
        self.dt = dt
        self.rng = rng
        self.cap = cap
        self.max_ticks = int(max_s / dt)
        self.samples: dict[tuple[int, int], list[float]] = {}
        self.seen: dict[tuple[int, int], int] = {}

    def update(self, crowd: Crowd, tick: int, slot: np.ndarray, cam: np.ndarray) -> None:
        """Record transits ending this tick; slot/cam are this tick's true sightings."""
        prev = crowd.last_cam[slot]
        gap = tick - crowd.last_tick[slot]
        ev = (prev >= 0) & (gap > 1) & (gap <= self.max_ticks) & (prev != cam)
        for a, b, g in zip(prev[ev].tolist(), cam[ev].tolist(), gap[ev].tolist(), strict=True):
            key = (a, b)
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
            bucket = self.samples.setdefault(key, [])
            if n < self.cap:
                bucket.append(g * self.dt)
            else:
                j = int(self.rng.integers(0, n + 1))
                if j < self.cap:
                    bucket[j] = g * self.dt
        crowd.last_cam[slot] = cam
        crowd.last_tick[slot] = tick

    def stats(self, a: int, b: int) -> dict[str, Any]:
        """The contract's per-direction figures: walkers (first hops a -> b) and their median
        blind-walk time (None when nobody walked it), with the 10th and 90th percentiles."""
        s = self.samples.get((a, b))
        if not s:
            return {"walkers": 0, "median_s": None, "p10_s": None, "p90_s": None}
        p10, med, p90 = np.percentile(s, [10, 50, 90])
        return {
            "walkers": self.seen[(a, b)],
            "median_s": round(float(med), 2),
            "p10_s": round(float(p10), 2),
            "p90_s": round(float(p90), 2),
        }


def truth_json(network: Network, truth: StaticTruth, transits: TransitRecorder) -> dict[str, Any]:
    """The contract's truth.json (plus extra fields: areas, one_way, transit times)."""
    nw = network.max_windows_per_camera
    ids = network.cameras

    def label(g: int) -> str:
        return f"{ids[g // nw]}:{g % nw}"

    overlaps = [[label(a), label(b)] for a, b in truth.window_pairs.tolist()]
    links: list[dict[str, Any]] = []
    for (a, b), area in sorted(truth.camera_overlap_m2.items()):
        links.append(
            {
                "a": ids[a],
                "b": ids[b],
                "kind": "overlap",
                "path_m": 0.0,
                "overlap_m2": round(area, 2),
            }
        )
    pairs = {(min(a, b), max(a, b)) for a, b in truth.transit_m}
    for a, b in sorted(pairs - set(truth.camera_overlap_m2)):
        fwd, back = truth.transit_m.get((a, b)), truth.transit_m.get((b, a))
        if fwd is None:  # one-way b -> a: name the source first
            a, b, fwd, back = b, a, back, fwd
        assert fwd is not None
        path = min(fwd, back) if back is not None else fwd
        ways: dict[str, Any] = {}
        all_samples: list[float] = []
        for way, s, t, d in (("a->b", a, b, fwd), ("b->a", b, a, back)):
            if d is None:
                continue
            st = transits.stats(s, t)
            ways[way] = {"path_m": round(d, 2), **st}
            all_samples += transits.samples.get((s, t), [])
        links.append(
            {
                "a": ids[a],
                "b": ids[b],
                "kind": "transit",
                "path_m": round(path, 2),
                "one_way": back is None,
                "transit_s": round(float(np.median(all_samples)), 2) if all_samples else None,
                "transit_expected_s": round(path / MEAN_SPEED, 2),
                **ways,
            }
        )
    return {"window_overlaps": overlaps, "camera_links": links, "params": truth.params}
