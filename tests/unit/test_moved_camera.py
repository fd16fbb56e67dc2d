"""Moved-camera detection (camtopo/core/moved.py) and forgetting a camera's evidence.

A small synthetic world: people walk across two regions of 6 x 6 places; cameras A, B, C
watch region 1 (each with its own window numbering: overlapping views), D and E region 2.
At ``move`` A turns to region 2. Nothing here is tuned to the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from camtopo.core.engine import NONE, FastExclusion
from camtopo.core.grid import Grid, Network, NetworkError
from camtopo.core.moved import MoveDetector, MoveParams
from camtopo.core.padding import PaddedBlock
from camtopo.core.parameters import EstimatorParameters, ExclusionParameters
from camtopo.core.reference import DenseExclusion
from camtopo.core.topology import TopologyEstimator
from camtopo.core.transit import TransitParams

CAMERAS = ("A", "B", "C", "D", "E")
N = 6
GRID = Grid(N, N, 60, 60)
_PLACES = np.arange(N * N).reshape(N, N)
# Each camera's window of each place (views are mirrored: their numberings differ).
PERM = {
    "A": _PLACES.ravel(),
    "B": _PLACES[:, ::-1].ravel(),
    "C": _PLACES[::-1, :].ravel(),
    "D": _PLACES.ravel(),
    "E": _PLACES[::-1, ::-1].ravel(),
}
W = N * N  # windows per camera
ROWS = np.array([8, 4, 2, 1, 1, 1]) / 17  # people keep to some rows: walkways
# A moved: it looks at region 2 along another axis (rows of places become its columns).
MOVED = {"A": 1, "B": 0, "C": 0, "D": 1, "E": 1}
TURNED = {"A": _PLACES.T.ravel()}
PARAMS = MoveParams(check_ticks=300)  # a check every 30 s of 10-fps ticks


def estimator(moves: MoveParams | None = PARAMS, transit: bool = False) -> TopologyEstimator:
    network = Network.uniform(CAMERAS, GRID, fps=10)
    params = EstimatorParameters(
        tick_ms=100.0,
        exclusion=ExclusionParameters(
            tolerance_ticks=5, spatial_radius=1, count_limit=4096, o_ref=50.0, c_star=0.95,
            activity_gate=0, prune=True, prune_min_opportunities=16, prune_max_ratio=0.5,
            readmit_after=2048, max_pool_mb=64,
        ),
        transit=TransitParams(tick_s=0.1) if transit else None,
        transit_max_cameras=100,
    )  # fmt: skip
    return TopologyEstimator(network, params, moves=moves)


def run(
    est: TopologyEstimator,
    ticks: range,
    *,
    rng: np.random.Generator,
    region_of: dict[str, int] | None = None,
    rate: float = 0.05,
    offline: frozenset[str] = frozenset(),
    blind: frozenset[str] = frozenset(),
    people: list[list[int]] | None = None,
    perm: dict[str, np.ndarray] | None = None,
) -> list[list[int]]:
    """Feed ``ticks``: people (region, row, step) cross a row of their region's places, 3
    ticks per place; a camera sees its region's people in its own windows."""
    region_of = region_of or {"A": 0, "B": 0, "C": 0, "D": 1, "E": 1}
    perm = {**PERM, **(perm or {})}
    people = [] if people is None else people
    for t in ticks:
        for region in (0, 1):
            for _ in range(rng.poisson(rate)):
                people.append([region, int(rng.choice(N, p=ROWS)), 0])
        places = [(r, row * N + step // 3) for r, row, step in people]
        available = np.array([c not in offline for c in CAMERAS])
        cams, wins = [], []
        for k, c in enumerate(CAMERAS):
            if c in offline or c in blind:
                continue
            for r, place in places:
                if r == region_of[c]:
                    cams.append(k)
                    wins.append(int(perm[c][place]))
        est.buffer.add_tick(t, available, np.array(cams, np.int64), np.array(wins, np.int64))
        for person in people:
            person[2] += 1
        people[:] = [p for p in people if p[2] < 3 * N]
        if t % 64 == 0:
            est.advance(t - 10)
    return people


def links(est: TopologyEstimator) -> set[tuple[str, str]]:
    return {(e.a, e.b) for e in est.topology().camera_edges}


def test_a_moved_camera_is_detected_and_relearnt() -> None:
    rng = np.random.default_rng(1)
    est = estimator()
    people = run(est, range(0, 6000), rng=rng)
    assert links(est) == {("A", "B"), ("A", "C"), ("B", "C"), ("D", "E")}
    run(est, range(6000, 9000), rng=rng, region_of=MOVED, perm=TURNED, people=people)
    assert [(e.camera, e.cause) for e in est.move_events] == [("A", "detected")]
    # Found within the first checks after the move (B and C, whose other links hold, witness).
    assert 6000 < est.move_events[0].tick <= 6000 + 4 * PARAMS.check_ticks
    est.finish()
    assert links(est) == {("B", "C"), ("A", "D"), ("A", "E"), ("D", "E")}


def test_without_detection_the_stale_links_linger() -> None:
    """The same move, detection off: the old links are still reported (why detection exists)."""
    rng = np.random.default_rng(1)
    est = estimator(moves=None)
    people = run(est, range(0, 6000), rng=rng)
    run(est, range(6000, 9000), rng=rng, region_of=MOVED, perm=TURNED, people=people)
    est.finish()
    assert {("A", "D"), ("A", "E")}.isdisjoint(links(est))
    assert est.move_events == []


@pytest.mark.parametrize(
    "change",
    [
        {"rate": 0.6},  # a crowd surge: four times the people, on the same walkways
        {"offline": frozenset({"A"})},  # an outage: no frames at all
        {"blind": frozenset({"A"})},  # frames with nobody in them (lens covered, dark)
        {"offline": frozenset({"B", "C"})},  # A's partners down: A alone keeps its view
    ],
    ids=["surge", "outage", "blind", "partners-down"],
)
def test_no_false_alarm(change: dict) -> None:
    rng = np.random.default_rng(2)
    est = estimator()
    people = run(est, range(0, 6000), rng=rng)
    people = run(est, range(6000, 9000), rng=rng, people=people, **change)
    run(est, range(9000, 11000), rng=rng, people=people)
    est.finish()
    assert est.move_events == []
    if "blind" not in change:  # (5 blind minutes refute A's links: counts, not a move)
        assert links(est) == {("A", "B"), ("A", "C"), ("B", "C"), ("D", "E")}


def test_operator_move_forgets_at_the_given_tick() -> None:
    rng = np.random.default_rng(3)
    est = estimator(moves=None, transit=True)
    est.camera_moved("A", at_tick=6000)
    people = run(est, range(0, 6000), rng=rng)
    run(est, range(6000, 9000), rng=rng, region_of=MOVED, perm=TURNED, people=people)
    est.finish()
    assert [(e.camera, e.tick, e.cause) for e in est.move_events] == [("A", 6000, "operator")]
    assert links(est) >= {("A", "D"), ("A", "E")}
    assert {("A", "B"), ("A", "C")}.isdisjoint(links(est))
    with pytest.raises(NetworkError, match="unknown camera"):
        est.camera_moved("Z")


@pytest.mark.parametrize("engine", ["fast", "dense"])
def test_forget_camera_clears_rows_and_columns(engine: str) -> None:
    network = Network.uniform(CAMERAS, GRID, fps=10)
    counts = FastExclusion(network) if engine == "fast" else DenseExclusion(network, 256)
    est = estimator(moves=None)
    est.counts = counts
    est.adjacency = None
    run(est, range(0, 3000), rng=np.random.default_rng(4))
    a = np.arange(W)  # camera A's windows
    rest = np.arange(W, network.n_windows)
    ii, jj = np.meshgrid(a, rest)
    before = counts.pair_counts(ii.ravel(), jj.ravel())[0].sum()
    b_to_c = (np.repeat(np.arange(W, 2 * W), W), np.tile(np.arange(2 * W, 3 * W), W))
    other = counts.pair_counts(*b_to_c)[0].sum()
    assert before > 0 and other > 0
    counts.forget_camera(0)
    for i, j in ((ii.ravel(), jj.ravel()), (jj.ravel(), ii.ravel())):
        o, p = counts.pair_counts(i, j)
        assert o.sum() == 0 and p.sum() == 0
    assert counts.pair_counts(*b_to_c)[0].sum() == other
    if isinstance(counts, FastExclusion):
        assert (counts.slot[:W] == NONE).all() and (counts.slot[:, 0] == NONE).all()
        # the released segments are free again
        assert counts.pool.shape[0] - counts.n_free[0] == (counts.slot >= 0).sum()


class FakeCounts:
    """pair_counts from a dict: the detector's whole view of the counts."""

    def __init__(self) -> None:
        self.op: dict[tuple[int, int], tuple[int, int]] = {}

    def pair_counts(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = [self.op.get((int(a), int(b)), (0, 0)) for a, b in zip(i, j, strict=True)]
        arr = np.array(got, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def grow(self, i: int, j: int, d_o: int, ratio: float) -> None:
        o, p = self.op.get((i, j), (0, 0))
        self.op[(i, j)] = (o + d_o, p + round(d_o * ratio))


def block(start: int, windows: np.ndarray, n_cameras: int) -> PaddedBlock:
    """64 ticks in which ``windows`` are occupied throughout."""
    bits = np.full(windows.size, np.uint64(2**64 - 1))
    ok = np.full(n_cameras, np.uint64(2**64 - 1))
    w = windows.astype(np.int32)
    return PaddedBlock(start, 64, w, bits, w, bits, ok)


def test_only_the_camera_whose_view_shifted_is_blamed() -> None:
    """A (windows 0-35) and B (36-71) are linked only to each other; their links collapse,
    so both are contradicted. Nobody is declared moved while both views stay as they were;
    once A sees people in other parts of its image, A is, and B (unchanged) is not."""
    network = Network.uniform(CAMERAS, GRID, fps=10)
    det = MoveDetector(network, MoveParams(check_ticks=64))
    counts = FakeCounts()
    pairs = (np.array([0, 1, 2]), np.array([W, W + 1, W + 2]))
    top_a, bottom_a = np.arange(N), np.arange(W - N, W)  # A's top and bottom rows
    view_b = W + np.arange(N)

    def check(t: int, ratio: float, view_a: np.ndarray) -> list[int]:
        for i, j in zip(*pairs, strict=True):
            counts.grow(i, j, 300, ratio)
            counts.grow(j, i, 300, ratio)
        det.observe(block(t - 64, np.concatenate([view_a, view_b]), network.n_cameras))
        return det.check(t, pairs, counts)

    det.due(0)
    for t in range(64, 64 * 20, 64):
        assert check(t, 0.98, top_a) == []
    t = 64 * 20
    assert check(t, 0.05, top_a) == []
    assert check(t + 64, 0.05, top_a) == []
    last = {c.camera: c for c in det.last}
    assert last[0].ratio < 0.5 and last[1].ratio < 0.5  # both contradicted ...
    assert last[0].moved is False and last[1].moved is False  # ... neither shifted
    assert check(t + 128, 0.05, bottom_a) == [0]  # A's people are elsewhere in its image
    last = {c.camera: c for c in det.last}
    assert last[0].shift > 0.5 and last[1].shift < 0.1
    det.forget(0)
    assert check(t + 192, 0.05, bottom_a) == []  # forgotten: A starts afresh


def test_forgetting_a_camera_relearns_its_profile_before_testing_it_again() -> None:
    network = Network.uniform(CAMERAS, GRID, fps=10)
    det = MoveDetector(network, MoveParams(check_ticks=64))
    det.due(0)
    for t in range(64, 64 * 15, 64):
        det.observe(block(t - 64, np.arange(N), network.n_cameras))
        det.check(t, (np.zeros(0, np.int64), np.zeros(0, np.int64)), FakeCounts())
    det.forget(0)
    assert det._usual[2, 0] == 0  # its usual distance must be learnt anew
    assert det.nbytes < 100_000


def test_the_simulator_moves_a_camera_at_its_time_and_keeps_the_rest() -> None:
    """Until the move both runs are the same frame for frame; after it only the moved
    camera's view differs, and the truth holds the links before and after."""
    from camtopo.simulation import CameraMove, Simulation, build_scenario

    scenario = build_scenario("campus", 20, 3)
    still = Simulation(scenario, seed=3, warmup_s=30)
    moved = Simulation(scenario, seed=3, warmup_s=30, moves=[CameraMove(4, 5.0, 3)])
    assert not np.allclose(moved.layouts[1][1].cameras.position[4], scenario.cameras.position[4])
    differs = set()
    for a, b in zip(still.ticks(100), moved.ticks(100), strict=True):
        same = np.array_equal(a.cam, b.cam) and np.array_equal(a.window, b.window)
        if a.index < 50:
            assert same
        else:
            key = lambda t: set(zip(t.cam.tolist(), t.window.tolist(), strict=True))  # noqa: E731
            differs |= {c for c, _ in key(a) ^ key(b)}
    assert differs <= {4}
    truth = moved.truth()
    assert truth["moves"] == [{"camera": "cam004", "at_s": 5.0}]
    mine = lambda links: {(x["a"], x["b"]) for x in links if "cam004" in (x["a"], x["b"])}  # noqa: E731
    assert mine(truth["before"]["camera_links"]) != mine(truth["camera_links"])
    assert "moves" not in still.truth()


def test_moved_option_is_parsed_and_refused_clearly() -> None:
    from camtopo.estimate import parse_moved

    network = Network.uniform(CAMERAS, GRID, fps=10)
    assert parse_moved(["A@12.5", "E@0"], network) == [("A", 12500), ("E", 0)]
    with pytest.raises(ValueError, match="expected CAMERA@SECONDS"):
        parse_moved(["A"], network)
    with pytest.raises(ValueError, match="expected CAMERA@SECONDS"):
        parse_moved(["A@soon"], network)
    with pytest.raises(NetworkError, match="unknown camera 'Z'"):
        parse_moved(["Z@10"], network)
