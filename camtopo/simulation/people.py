"""The crowd: arrivals over time, routes along walkways and vectorised walking.

People appear at entry nodes (gates, building doors) at a rate that changes over time
(between-lecture surges, quiet spells), pick a destination among nearby entries, and walk
the shortest route (one-way edges respected) at their own speed with a lateral offset
inside the walkway. All state lives in flat numpy arrays; one step is O(people).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from camtopo.simulation.world import Walkways

MEAN_SPEED = 1.3  # m/s, typical walking pace
SPEED_SD = 0.25
LATERAL_USE = 0.85  # fraction of the half-width people actually use


@dataclass
class Routes:
    """All routes as one concatenated polyline table; route r covers segments [first, last)."""

    seg_p0: np.ndarray  # float64 (S, 2) segment start
    seg_dir: np.ndarray  # float64 (S, 2) unit direction
    seg_normal: np.ndarray  # float64 (S, 2) unit left normal
    seg_half_width: np.ndarray  # float64 (S,)
    seg_start: np.ndarray  # float64 (S,) global arc-length where the segment starts
    route_start: np.ndarray  # float64 (R,) global arc-length of each route's start
    route_length: np.ndarray  # float64 (R,)
    origin_routes: dict[int, np.ndarray]  # entry node -> route ids

    @classmethod
    def plan(
        cls,
        world: Walkways,
        entries: np.ndarray,
        rng: np.random.Generator,
        per_origin: int = 6,
        max_origins: int = 2500,
        trip_radius_m: float = 500.0,
    ) -> Routes:
        """Shortest routes from (a sample of) entries to nearby entries, respecting one-way."""
        entries = np.asarray(entries, dtype=np.int64)
        origins = entries
        if len(origins) > max_origins:
            origins = np.sort(rng.choice(entries, max_origins, replace=False))
        pts = world.nodes[entries]
        p0: list[np.ndarray] = []
        hw: list[np.ndarray] = []
        lengths: list[float] = []
        origin_routes: dict[int, list[int]] = {}
        for o in origins.tolist():
            d = np.linalg.norm(pts - world.nodes[o], axis=1)
            near = entries[(d <= trip_radius_m) & (entries != o)]
            if len(near) == 0:
                near = entries[entries != o][np.argsort(d[entries != o])[:per_origin]]
            targets = rng.choice(near, min(per_origin, len(near)), replace=False)
            _, prev = world.shortest_paths(o, set(targets.tolist()), max_m=4 * trip_radius_m)
            for t in targets.tolist():
                if t not in prev:
                    continue  # unreachable against one-way flow
                nodes = [t]
                while nodes[-1] != o:
                    nodes.append(prev[nodes[-1]])
                nodes.reverse()
                xy = world.nodes[nodes]
                edges = [world.edge_index[(a, b)] for a, b in itertools.pairwise(nodes)]
                p0.append(xy)
                hw.append(world.width[edges] / 2)
                lengths.append(float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()))
                origin_routes.setdefault(o, []).append(len(lengths) - 1)
        if not lengths:
            raise ValueError("no route between any two entries: check the walkway graph")
        return cls._concat(p0, hw, origin_routes)

    @classmethod
    def _concat(
        cls,
        polylines: Sequence[np.ndarray],
        half_widths: Sequence[np.ndarray],
        origin_routes: Mapping[int, list[int]],
    ) -> Routes:
        seg_p0: list[np.ndarray] = []
        seg_dir: list[np.ndarray] = []
        seg_hw: list[np.ndarray] = []
        seg_start: list[np.ndarray] = []
        route_start: list[float] = []
        route_len: list[float] = []
        cursor = 0.0
        for xy, hw in zip(polylines, half_widths, strict=True):
            d = np.diff(xy, axis=0)
            seg_len = np.linalg.norm(d, axis=1)
            keep = seg_len > 1e-9
            d, seg_len, hw = d[keep], seg_len[keep], hw[keep]
            starts = xy[:-1][keep]
            route_start.append(cursor)
            route_len.append(float(seg_len.sum()))
            seg_p0.append(starts)
            seg_dir.append(d / seg_len[:, None])
            seg_hw.append(hw)
            seg_start.append(cursor + np.concatenate([[0.0], np.cumsum(seg_len)[:-1]]))
            # A gap between routes keeps a person's arc-length inside their own route.
            cursor += route_len[-1] + 10.0
        sd = np.concatenate(seg_dir)
        return cls(
            seg_p0=np.concatenate(seg_p0),
            seg_dir=sd,
            seg_normal=np.stack([-sd[:, 1], sd[:, 0]], axis=1),
            seg_half_width=np.concatenate(seg_hw),
            seg_start=np.concatenate(seg_start),
            route_start=np.asarray(route_start),
            route_length=np.asarray(route_len),
            origin_routes={o: np.asarray(r, dtype=np.int64) for o, r in origin_routes.items()},
        )

    @property
    def n_routes(self) -> int:
        return len(self.route_length)

    def positions(self, route: np.ndarray, s: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """float64 (m, 2): ground position at arc-length s along route, lateral in [-1, 1]."""
        g = self.route_start[route] + s
        seg = np.searchsorted(self.seg_start, g, side="right") - 1
        along = g - self.seg_start[seg]
        off = lateral * self.seg_half_width[seg] * LATERAL_USE
        xy: np.ndarray = (
            self.seg_p0[seg]
            + self.seg_dir[seg] * along[:, None]
            + self.seg_normal[seg] * off[:, None]
        )
        return xy


@dataclass
class ArrivalProfile:
    """Arrival-rate multiplier over time: quiet spells, a base level and lecture-change surges.

    Surges recur every ``period_s`` (a lecture slot) at a random phase, last ``surge_s``
    and multiply the base rate by ``surge_factor``; quiet spells scale it by ``quiet_factor``.
    """

    period_s: float
    phase_s: float
    surge_s: float = 300.0
    surge_factor: float = 4.0
    quiet_start_s: float = 0.0
    quiet_s: float = 0.0
    quiet_factor: float = 0.3

    @classmethod
    def random(cls, rng: np.random.Generator, period_s: float = 1800.0) -> ArrivalProfile:
        return cls(
            period_s=period_s,
            phase_s=float(rng.uniform(0.1, 0.5) * period_s),
            surge_s=float(rng.uniform(180, 360)),
            surge_factor=float(rng.uniform(3.0, 5.0)),
            quiet_start_s=float(rng.uniform(0.55, 0.7) * period_s),
            quiet_s=float(rng.uniform(0.1, 0.2) * period_s),
        )

    def factor(self, t_s: float) -> float:
        phase = (t_s - self.phase_s) % self.period_s
        if phase < self.surge_s:
            # A smooth bump: crowds build up and drain, not a step.
            bump: float = 1.0 + (self.surge_factor - 1.0) * np.sin(np.pi * phase / self.surge_s)
            return bump
        q = (t_s - self.quiet_start_s) % self.period_s
        if q < self.quiet_s:
            return self.quiet_factor
        return 1.0

    def mean_factor(self) -> float:
        ts = np.linspace(0, self.period_s, 721)[:-1]
        return float(np.mean([self.factor(t) for t in ts]))


class Crowd:
    """Everybody currently walking: flat arrays, compacted as people finish their routes."""

    def __init__(
        self,
        routes: Routes,
        entries: np.ndarray,
        entry_weight: np.ndarray,
        rate_per_s: float,
        profile: ArrivalProfile,
        rng: np.random.Generator,
    ) -> None:
        self.routes = routes
        has_route = np.array([int(e) in routes.origin_routes for e in entries])
        self.entries = np.asarray(entries)[has_route]
        w = np.asarray(entry_weight, dtype=np.float64)[has_route]
        self.entry_p = w / w.sum()
        self.rate_per_s = rate_per_s
        self.profile = profile
        self.rng = rng
        self.route = np.zeros(0, np.int64)
        self.s = np.zeros(0)
        self.speed = np.zeros(0)
        self.lateral = np.zeros(0)
        self.pid = np.zeros(0, np.int64)
        # Truth tracking of transits: last camera seen and the tick it was seen in.
        self.last_cam = np.zeros(0, np.int32)
        self.last_tick = np.zeros(0, np.int64)
        self._next_pid = 0

    @property
    def n(self) -> int:
        return len(self.s)

    def spawn(self, t_s: float, dt: float) -> None:
        lam = self.rate_per_s * self.profile.factor(t_s) * dt
        k = int(self.rng.poisson(lam))
        if k == 0:
            return
        rng = self.rng
        origin = rng.choice(self.entries, k, p=self.entry_p)
        route = np.array(
            [rng.choice(self.routes.origin_routes[int(o)]) for o in origin], dtype=np.int64
        )
        speed = np.clip(rng.normal(MEAN_SPEED, SPEED_SD, k), 0.5, 2.5)
        self.route = np.concatenate([self.route, route])
        self.s = np.concatenate([self.s, rng.uniform(0, speed * dt)])
        self.speed = np.concatenate([self.speed, speed])
        self.lateral = np.concatenate([self.lateral, rng.uniform(-1, 1, k)])
        self.pid = np.concatenate([self.pid, np.arange(self._next_pid, self._next_pid + k)])
        self.last_cam = np.concatenate([self.last_cam, np.full(k, -1, np.int32)])
        self.last_tick = np.concatenate([self.last_tick, np.full(k, -(10**9), np.int64)])
        self._next_pid += k

    def step(self, dt: float) -> None:
        """Advance everybody by dt seconds and drop those who reached their destination."""
        self.s += self.speed * dt
        # Lateral drift: people weave a little inside the walkway.
        self.lateral = np.clip(self.lateral + self.rng.normal(0, 0.02, self.n) * dt, -1, 1)
        alive = self.s < self.routes.route_length[self.route]
        if not alive.all():
            for name in ("route", "s", "speed", "lateral", "pid", "last_cam", "last_tick"):
                setattr(self, name, getattr(self, name)[alive])

    def positions(self) -> np.ndarray:
        return self.routes.positions(self.route, self.s, self.lateral)
