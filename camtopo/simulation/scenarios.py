"""Scenario builders: a world, its cameras and its demand, deterministic from a seed.

- ``campus``: a grid of walkways with buildings in the blocks (the paper's university
  campus); people leave building doors in between-lecture surges; cameras along walkways
  and at intersections.
- ``corridor``: an indoor building of long corridors; ceiling cameras in sequence, some
  overlapping their neighbour, some separated by blind stretches.
- ``plaza``: open squares watched by many overlapping cameras, joined by paths.
- ``branching``: hubs fanning out to 3-4 destinations over long (30-60 s) blind walkways,
  some of them one-way, for transit-link work.

Each scenario mixes overlapping camera pairs, transit pairs and many unrelated cameras.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from camtopo.core.grid import Grid
from camtopo.simulation.cameras import Cameras, tilt_for_far_edge
from camtopo.simulation.people import ArrivalProfile
from camtopo.simulation.world import WalkwayBuilder, Walkways


@dataclass
class Scenario:
    name: str
    world: Walkways
    cameras: Cameras
    entries: np.ndarray  # int64 node ids where people appear and leave
    entry_weight: np.ndarray  # relative arrival share of each entry
    rate_per_s: float  # mean arrivals per second over the whole world
    profile: ArrivalProfile
    trip_radius_m: float = 500.0


class CameraPlanner:
    """Collects camera mounts and draws their optics (height, focal length, reach)."""

    def __init__(
        self,
        rng: np.random.Generator,
        height: tuple[float, float] = (3.0, 8.0),
        far: tuple[float, float] = (18.0, 35.0),
    ) -> None:
        self.rng = rng
        self.height_range = height
        self.far_range = far
        self.rows: list[tuple[float, float, float]] = []  # x, y, heading

    def add(self, xy: np.ndarray, heading: float) -> None:
        self.rows.append((float(xy[0]), float(xy[1]), float(heading)))

    def along(self, p: np.ndarray, q: np.ndarray, width: float, frac: float, back: bool) -> None:
        """A mount beside walkway p-q at ``frac`` of its length, looking along it."""
        d = (q - p) / np.linalg.norm(q - p)
        normal = np.array([-d[1], d[0]])
        side = self.rng.choice([-1.0, 1.0])
        xy = p + frac * (q - p) + normal * side * (width / 2 + 0.5)
        look = -d if back else d
        # Turn slightly towards the walkway centre, as installers aim cameras.
        yaw = np.arctan2(look[1], look[0]) + np.deg2rad(self.rng.uniform(3, 12)) * (
            -side if not back else side
        )
        self.add(xy, float(yaw))

    def build(self, grid: Grid) -> Cameras:
        rng = self.rng
        n = len(self.rows)
        rows = np.array(self.rows).reshape(n, 3)
        height = rng.uniform(*self.height_range, n)
        hfov = np.deg2rad(rng.uniform(50, 80, n))
        focal = (grid.width / 2) / np.tan(hfov / 2)
        far = rng.uniform(*self.far_range, n)
        tilt = tilt_for_far_edge(height, focal, far, grid.height)
        digits = max(3, len(str(n - 1)))
        return Cameras(
            ids=tuple(f"cam{i:0{digits}d}" for i in range(n)),
            position=rows[:, :2],
            height=height,
            heading=rows[:, 2],
            tilt=tilt,
            focal=focal,
            max_range=far * 1.15,
            grid=grid,
        )


def _people_rate(n_cameras: int, per_camera: float, mean_factor: float) -> float:
    return per_camera * n_cameras / mean_factor


def campus(n_cameras: int, seed: int, grid: Grid | None = None) -> Scenario:
    """Grid of walkways (blocks 60-90 m) with a building in each block, doors on spur paths."""
    grid = grid or Grid()
    rng = np.random.default_rng([seed, 1])
    g = max(3, round(np.sqrt(n_cameras / 1.6)) + 1)
    block = rng.uniform(60, 90)
    wb = WalkwayBuilder()
    jitter = rng.uniform(-6, 6, (g, g, 2))
    node = np.zeros((g, g), dtype=np.int64)
    xy = np.zeros((g, g, 2))
    for i in range(g):
        for j in range(g):
            xy[i, j] = np.array([i * block, j * block]) + jitter[i, j]
            node[i, j] = wb.node(*xy[i, j])
    avenue = rng.integers(0, 4)
    # Grid edges get door attachments from the blocks beside them; build them as chains.
    attach: dict[tuple[int, int, int, int], list[tuple[float, int]]] = {}
    for i in range(g - 1):
        for j in range(g - 1):
            corners = xy[[i, i + 1, i + 1, i], [j, j, j + 1, j + 1]]
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            margin = 9.0
            if hi[0] - lo[0] > 2 * margin + 10 and hi[1] - lo[1] > 2 * margin + 10:
                wb.buildings.append(
                    (lo[0] + margin, lo[1] + margin, hi[0] - margin, hi[1] - margin)
                )
            sides = [
                (i, j, i + 1, j),
                (i + 1, j, i + 1, j + 1),
                (i, j + 1, i + 1, j + 1),
                (i, j, i, j + 1),
            ]
            for k in rng.choice(4, int(rng.integers(1, 3)), replace=False):
                a, b, c, d = sides[int(k)]
                frac = float(rng.uniform(0.3, 0.7))
                mid = xy[a, b] + frac * (xy[c, d] - xy[a, b])
                centre = (lo + hi) / 2
                door = mid + (centre - mid) / np.linalg.norm(centre - mid) * margin
                attach.setdefault((a, b, c, d), []).append((frac, wb.node(*door)))
    doors: list[int] = []
    main_edges: list[tuple[int, int, float]] = []
    for i in range(g):
        for j in range(g):
            for di, dj in ((1, 0), (0, 1)):
                if i + di >= g or j + dj >= g:
                    continue
                key = (i, j, i + di, j + dj)
                is_avenue = (j % 4 == avenue and dj == 0) or (i % 4 == avenue and di == 0)
                width = rng.uniform(7, 9) if is_avenue else rng.uniform(3, 5.5)
                chain = [int(node[i, j])]
                for frac, door in sorted(attach.get(key, [])):
                    p = xy[i, j] + frac * (xy[i + di, j + dj] - xy[i, j])
                    on = wb.node(*p)
                    wb.edge(on, door, 3.0)
                    doors.append(door)
                    chain.append(on)
                chain.append(int(node[i + di, j + dj]))
                for a, b in itertools.pairwise(chain):
                    wb.edge(a, b, width)
                main_edges.append((int(node[i, j]), int(node[i + di, j + dj]), width))
    world = wb.build()
    gates = [
        int(node[i, j]) for i in range(g) for j in range(g) if i in (0, g - 1) or j in (0, g - 1)
    ]
    entries = np.array(doors + gates, dtype=np.int64)
    weight = np.concatenate([np.ones(len(doors)), np.full(len(gates), 1.5)])

    planner = CameraPlanner(rng)
    while len(planner.rows) < n_cameras:
        a, b, width = main_edges[int(rng.integers(len(main_edges)))]
        p, q = world.nodes[a], world.nodes[b]
        kind = rng.random()
        if kind < 0.3:
            # Intersection camera: behind the node, looking over it along the walkway.
            start, end = (p, q) if rng.random() < 0.5 else (q, p)
            planner.along(start, end, width, float(rng.uniform(-0.12, -0.04)), back=False)
        elif kind < 0.6 and len(planner.rows) + 2 <= n_cameras:
            # A pair watching one stretch: overlapping footprints.
            frac = float(rng.uniform(0.2, 0.5))
            planner.along(p, q, width, frac, back=False)
            gap = float(rng.uniform(8, 30) / np.linalg.norm(q - p))
            planner.along(p, q, width, min(frac + gap, 0.95), back=rng.random() < 0.6)
        else:
            planner.along(p, q, width, float(rng.uniform(0.1, 0.9)), back=rng.random() < 0.5)
    cameras = planner.build(grid)
    profile = ArrivalProfile.random(rng)
    return Scenario(
        "campus",
        world,
        cameras,
        entries,
        weight,
        _people_rate(n_cameras, 0.020, profile.mean_factor()),
        profile,
    )


def corridor(n_cameras: int, seed: int, grid: Grid | None = None) -> Scenario:
    """Indoor floors: parallel corridors joined by some cross corridors; ceiling cameras in
    sequence, alternately close (overlapping neighbours) and far apart (blind stretches)."""
    grid = grid or Grid()
    rng = np.random.default_rng([seed, 11])
    k = max(2, round(np.sqrt(n_cameras / 12)))
    length = max(60.0, 20.0 * n_cameras / k)
    cross_every = 60.0
    xs = np.arange(0.0, length + 1e-9, cross_every)
    wb = WalkwayBuilder()
    rows: list[list[int]] = []
    widths = rng.uniform(2.2, 3.5, k)
    entries: list[int] = []
    weights: list[float] = []
    for r in range(k):
        y = r * 25.0
        # Chain nodes every ~20 m are room doors; the row's ends are stairwells.
        chain_x = np.unique(np.concatenate([xs, np.arange(10.0, length, 20.0)]))
        ids = [wb.node(x, y) for x in chain_x]
        for a, b in itertools.pairwise(ids):
            wb.edge(a, b, widths[r])
        rows.append(ids)
        for j in range(len(chain_x)):
            entries.append(ids[j])
            weights.append(3.0 if j in (0, len(ids) - 1) else 1.0)
        if r > 0:
            lo, hi = y - 25.0 + widths[r - 1] / 2 + 2, y - widths[r] / 2 - 2
            wb.buildings.append((0.0, lo, length, hi))
    for r in range(k - 1):
        for j, x in enumerate(xs):
            if j in (0, len(xs) - 1) or rng.random() < 0.3:
                a = rows[r][
                    int(np.flatnonzero(np.isclose([wb.nodes[i][0] for i in rows[r]], x))[0])
                ]
                b = rows[r + 1][
                    int(np.flatnonzero(np.isclose([wb.nodes[i][0] for i in rows[r + 1]], x))[0])
                ]
                wb.edge(a, b, 2.5)
    world = wb.build()
    planner = CameraPlanner(rng, height=(3.0, 3.5), far=(12.0, 20.0))
    r = 0
    while len(planner.rows) < n_cameras:
        p, q = np.array([0.0, r * 25.0]), np.array([length, r * 25.0])
        x = float(rng.uniform(0, 15))
        while x < length and len(planner.rows) < n_cameras:
            planner.along(p, q, widths[r], x / length, back=rng.random() < 0.3)
            # Half the neighbours overlap (closer than a camera's reach), half leave a gap.
            x += rng.uniform(6, 14) if rng.random() < 0.5 else rng.uniform(25, 50)
        r = (r + 1) % k
    cameras = planner.build(grid)
    profile = ArrivalProfile.random(rng, period_s=3000.0)
    return Scenario(
        "corridor",
        world,
        cameras,
        np.array(entries),
        np.array(weights),
        _people_rate(n_cameras, 0.02, profile.mean_factor()),
        profile,
        trip_radius_m=300.0,
    )


def plaza(n_cameras: int, seed: int, grid: Grid | None = None) -> Scenario:
    """Open squares (40-70 m) ringed by cameras looking in, joined by paths."""
    grid = grid or Grid()
    rng = np.random.default_rng([seed, 21])
    m = max(1, round(n_cameras / 12))
    g = int(np.ceil(np.sqrt(m)))
    wb = WalkwayBuilder()
    squares = []
    for idx in range(m):
        i, j = divmod(idx, g)
        side = float(rng.uniform(40, 70))
        o = np.array([i * 150.0, j * 150.0]) + rng.uniform(-10, 10, 2)
        h = side / 2
        corner = [[o + np.array([a * h, b * h]) for b in range(3)] for a in range(3)]
        ids = np.array([[wb.node(*xy) for xy in row] for row in corner])
        # A 3 x 3 lattice of edges as wide as half the square covers the whole square.
        for a in range(3):
            for b in range(3):
                if a < 2:
                    wb.edge(int(ids[a, b]), int(ids[a + 1, b]), h)
                if b < 2:
                    wb.edge(int(ids[a, b]), int(ids[a, b + 1]), h)
        squares.append((o, side, ids))
    for idx, (_, _, ids) in enumerate(squares):
        i, j = divmod(idx, g)
        for di, dj, mine, theirs in ((1, 0, (2, 1), (0, 1)), (0, 1, (1, 2), (1, 0))):
            other = (i + di) * g + (j + dj)
            if i + di < g and j + dj < g and other < m:
                wb.edge(int(ids[mine]), int(squares[other][2][theirs]), 4.0)
    world = wb.build()
    planner = CameraPlanner(rng, height=(5.0, 8.0), far=(25.0, 45.0))
    while len(planner.rows) < n_cameras:
        o, side, _ = squares[int(rng.integers(m))]
        centre = o + side / 2
        ang = rng.uniform(0, 2 * np.pi)
        rim = centre + np.array([np.cos(ang), np.sin(ang)]) * side * 0.72
        look = np.arctan2(*(centre - rim)[::-1]) + np.deg2rad(rng.uniform(-25, 25))
        planner.add(rim, float(look))
    cameras = planner.build(grid)
    entries = np.array(
        [
            int(ids[a, b])
            for _, _, ids in squares
            for a in range(3)
            for b in range(3)
            if (a, b) != (1, 1)
        ]
    )
    profile = ArrivalProfile.random(rng, period_s=1800.0)
    return Scenario(
        "plaza",
        world,
        cameras,
        entries,
        np.ones(len(entries)),
        _people_rate(n_cameras, 0.012, profile.mean_factor()),
        profile,
        trip_radius_m=400.0,
    )


def branching(n_cameras: int, seed: int, grid: Grid | None = None) -> Scenario:
    """Hubs fanning out to 3-4 others over 40-80 m unwatched walkways, about a third one-way."""
    grid = grid or Grid()
    rng = np.random.default_rng([seed, 31])
    g = max(3, int(np.ceil(np.sqrt(n_cameras / 1.6))))
    spacing = 85.0
    wb = WalkwayBuilder()
    hub = np.array(
        [
            [wb.node(*(np.array([i, j]) * spacing + rng.uniform(-8, 8, 2))) for j in range(g)]
            for i in range(g)
        ]
    )
    edges: list[tuple[int, int, float]] = []
    for i in range(g):
        for j in range(g):
            for di, dj, p_keep in ((1, 0, 0.8), (0, 1, 0.8), (1, 1, 0.15)):
                if i + di < g and j + dj < g and rng.random() < p_keep:
                    a, b = int(hub[i, j]), int(hub[i + di, j + dj])
                    if rng.random() < 0.5:
                        a, b = b, a
                    w = float(rng.uniform(3, 5))
                    wb.edge(a, b, w, one_way=rng.random() < 0.3)
                    edges.append((a, b, w))
    world = wb.build()
    planner = CameraPlanner(rng, height=(4.0, 7.0), far=(15.0, 22.0))
    out_edges: dict[int, list[tuple[int, int, float]]] = {}
    for a, b, w in edges:
        out_edges.setdefault(a, []).append((a, b, w))
        out_edges.setdefault(b, []).append((b, a, w))
    hubs = [h for h in hub.ravel().tolist() if h in out_edges]
    order = rng.permutation(len(hubs))
    k = 0
    while len(planner.rows) < n_cameras:
        h = hubs[int(order[k % len(order)])]
        k += 1
        if rng.random() < 0.12:
            a, b, w = out_edges[h][int(rng.integers(len(out_edges[h])))]
            planner.along(world.nodes[a], world.nodes[b], w, 0.5, back=False)
            continue
        # One or two cameras over the hub, looking along different branches.
        picks = rng.choice(
            len(out_edges[h]), min(len(out_edges[h]), int(rng.integers(1, 3))), replace=False
        )
        for e in picks:
            if len(planner.rows) >= n_cameras:
                break
            a, b, w = out_edges[h][int(e)]
            planner.along(
                world.nodes[b], world.nodes[a], w, float(rng.uniform(0.8, 0.9)), back=True
            )
    cameras = planner.build(grid)
    entries = np.array(hubs, dtype=np.int64)
    profile = ArrivalProfile.random(rng, period_s=1800.0)
    return Scenario(
        "branching",
        world,
        cameras,
        entries,
        np.ones(len(entries)),
        _people_rate(n_cameras, 0.02, profile.mean_factor()),
        profile,
        trip_radius_m=350.0,
    )


BUILDERS: dict[str, Callable[..., Scenario]] = {
    "campus": campus,
    "corridor": corridor,
    "plaza": plaza,
    "branching": branching,
}


def build_scenario(name: str, n_cameras: int, seed: int, grid: Grid | None = None) -> Scenario:
    """Build scenario ``name`` with ``n_cameras`` cameras, deterministic from ``seed``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {sorted(BUILDERS)}")
    if n_cameras < 2:
        raise ValueError(f"a scenario needs at least 2 cameras, got {n_cameras}")
    return BUILDERS[name](n_cameras, seed, grid)


def remount(
    scenario: Scenario, camera: int, seed: int, min_move_m: float = 80.0, shared_m: float = 8.0
) -> Cameras:
    """The scenario's cameras with ``camera`` re-mounted elsewhere (a moved camera).

    Same hardware (height, focal length, tilt, reach), a new mount beside another walkway at
    least ``min_move_m`` from the old one, looking along it, where at least ``shared_m`` of
    the walkway's centre line is in view of both it and another camera: the moved view has
    overlap links to learn as well as links to lose.
    """
    cams = scenario.cameras
    world = scenario.world
    rng = np.random.default_rng([seed, 41, camera])
    old = cams.position[camera]
    others = np.delete(np.arange(cams.n), camera)
    planner = CameraPlanner(rng)
    long_edges = np.flatnonzero((world.lengths >= 20.0) & (world.width > 3.0))
    for _ in range(2000):
        e = int(long_edges[rng.integers(len(long_edges))])
        p, q = world.nodes[world.edge_a[e]], world.nodes[world.edge_b[e]]
        planner.rows.clear()
        planner.along(p, q, float(world.width[e]), float(rng.uniform(0.1, 0.9)), rng.random() < 0.5)
        x, y, heading = planner.rows[0]
        if np.hypot(x - old[0], y - old[1]) < min_move_m:
            continue
        position, head = cams.position.copy(), cams.heading.copy()
        position[camera], head[camera] = (x, y), heading
        moved = Cameras(
            ids=cams.ids,
            position=position,
            height=cams.height,
            heading=head,
            tilt=cams.tilt,
            focal=cams.focal,
            max_range=cams.max_range,
            grid=cams.grid,
        )
        step = 0.5
        line = p + np.linspace(0, 1, int(np.linalg.norm(q - p) / step))[:, None] * (q - p)
        seen = moved.project(camera, line)[1]
        if seen.sum() * step < shared_m:
            continue
        pts = line[seen]
        both = np.zeros(len(pts), dtype=bool)
        for c in others:
            both |= moved.project(int(c), pts)[1]
        if both.sum() * step >= shared_m:
            return moved
    raise ValueError(f"no mount {min_move_m} m from camera {camera}'s sharing a view")
