"""Moved cameras: notice that a camera's view changed, so its evidence can be forgotten.

A camera that is re-aimed or re-mounted keeps its id, so the counts keep the evidence of
its old view: its old links fade only as their ratio P/O decays, and its new links must climb
over long histories of refuted (or pruned) pairs (17 minutes or more on the simulated campus,
benchmarks/moved_camera.py). Forgetting the camera's rows and columns (and its transit
evidence) makes it a new camera, learnt from scratch like any other.

The detector tests, at every check (``check_ticks``), two kinds of evidence over the last
``recent_checks`` checks:

1. **Exclusion contradicts the learnt topology.** Each window pair linked at a check (with
   O >= ``min_pair_opportunities`` both ways) is tracked, and for ``recent_checks`` checks
   after it leaves the topology (a moved camera's links drop out within a minute or two).
   Under the learnt topology P grows by ``r * dO`` (r: the ratio P/O when last linked). A
   camera is *contradicted* when its pairs fall short: P grew by less than ``max_ratio`` of
   that over all its pairs, and by less than ``(1 + max_ratio) / 2`` of it each way, over at
   least ``min_opportunities / 2`` opportunities where its windows were occupied and as many
   where its partners' were, on at least ``min_windows`` of its windows. A moved camera
   fails both ways; a camera that stopped detecting people (or sees ghosts) fails one way
   only. A pair's shortfall cannot say which end moved.
2. **Its occupancy moved within the view.** The Hellinger distance between the camera's
   recent profile (occupied ticks per zone of ``zones`` x ``zones`` windows) and its
   long-run profile (older checks, decaying) is at least ``min_shift`` and ``shift_z``
   deviations above the camera's usual distance (a running mean over checks, after
   ``shift_samples`` of them). A re-aimed view sees people elsewhere in the image; its
   partners' views do not change, nor does a crowd surge (more people, same walkways).

A camera is declared moved only when both hold, and it still sees people (``min_recent``
occupied ticks in the window): an outage gives no opportunities, a camera gone blind no
occupancy. An operator can declare a move too (:meth:`TopologyEstimator.camera_moved
<camtopo.core.topology.TopologyEstimator.camera_moved>`).

Memory: per window a float64 and ``recent_checks`` float32 rows of 6; per zone a few floats;
the tracked pairs (the topology's window edges, recent ones included).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from camtopo.core.evidence import ExclusionCounts
from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock


@dataclass(frozen=True)
class MoveParams:
    """Thresholds of the moved-camera test (ticks; the caller converts from seconds)."""

    check_ticks: int = 600  # one check a minute at 10 fps
    recent_checks: int = 2  # evidence window: the last 2 checks
    min_opportunities: float = 100.0  # dO over a camera's linked pairs in the window
    max_ratio: float = 0.5  # P grew by less than this share of r * dO: contradicted
    min_windows: int = 2  # windows of the camera with contradicted links
    min_shift: float = 0.2  # Hellinger distance of recent vs long-run occupancy profile ...
    shift_z: float = 4.0  # ... and this many deviations above the camera's usual distance
    shift_sd_floor: float = 0.03  # (deviation at least this: a steady view varies too)
    shift_samples: int = 10  # checks of usual distance needed before a camera is tested
    min_recent: float = 200.0  # occupied ticks of the camera in the window
    min_history: float = 1000.0  # occupied ticks in the long-run profile
    history_halflife_checks: float = 30.0  # the long-run profile's memory
    min_pair_opportunities: int = 50  # a linked pair is tested once its O is this large
    zones: int = 3  # the profile is taken over zones x zones blocks of windows

    def __post_init__(self) -> None:
        if self.check_ticks < 1 or self.recent_checks < 1 or self.min_windows < 1:
            raise ValueError("check_ticks, recent_checks and min_windows must be >= 1")
        if not 0 < self.max_ratio < 1 or not 0 < self.min_shift <= 1 or self.shift_z <= 0:
            raise ValueError("need 0 < max_ratio < 1, 0 < min_shift <= 1 and shift_z > 0")


@dataclass(frozen=True)
class CameraCheck:
    """One camera's figures at a check (for logs and benchmarks)."""

    camera: int
    opportunities: float  # dO over its linked pairs, both ways, in the window
    ratio: float  # P growth / expected P growth (1 = as learnt)
    contradicted_windows: int
    shift: float  # Hellinger distance, recent vs long-run profile (nan: too little data)
    usual_shift: float  # its usual distance (running mean over checks)
    moved: bool


class MoveDetector:
    """Feeds on the padded blocks and, at each check, on the learnt pairs and their counts."""

    def __init__(self, network: Network, params: MoveParams | None = None) -> None:
        self.network = network
        self.params = p = params or MoveParams()
        n = network.n_windows
        # Profiles over coarse zones, not windows: per-window counts are too sparse (a person
        # crosses a window in a few ticks), so a still camera's window profile wanders.
        self.window_zone = _zones(network, p.zones)
        self.n_zones = network.n_cameras * p.zones * p.zones
        self.zone_camera = np.repeat(np.arange(network.n_cameras), p.zones * p.zones)
        self._occ = np.zeros(n, dtype=np.float64)  # occupied ticks this check
        self._recent: deque[np.ndarray] = deque(maxlen=p.recent_checks)  # per check, per zone
        self._history = np.zeros(self.n_zones)  # long-run zone profile, checks before recent
        self._decay = 0.5 ** (1.0 / p.history_halflife_checks)
        # Per check: per window, opportunities, P growth and expected P growth of linked pairs.
        self._evidence: deque[np.ndarray] = deque(maxlen=p.recent_checks)
        # Tracked pairs (linked now or in the last checks): windows, counts both ways at the
        # last check, ratios when last linked, and checks since then.
        ints = ("i", "j", "o_ij", "p_ij", "o_ji", "p_ji", "age")
        self._track: dict[str, np.ndarray] = {k: np.zeros(0, np.int64) for k in ints}
        self._track.update(r_ij=np.zeros(0), r_ji=np.zeros(0))
        # Per camera: running mean and deviation of its profile distance, and samples.
        self._usual = np.zeros((3, network.n_cameras))
        self._alpha = 1 - 0.5 ** (1.0 / p.history_halflife_checks)
        self.next_check: int | None = None
        self.checks = 0
        self.last: list[CameraCheck] = []  # the cameras tested at the last check

    def observe(self, block: PaddedBlock) -> None:
        """Add a block's occupancy to the current check's profile."""
        if block.occ_windows.size:
            np.add.at(self._occ, block.occ_windows, np.bitwise_count(block.occ_bits))

    def due(self, end_tick: int) -> bool:
        """Whether a check falls due once counting reached ``end_tick`` (fixed tick positions)."""
        step = self.params.check_ticks
        if self.next_check is None:
            self.next_check = (end_tick // step + 1) * step
            return False
        return end_tick >= self.next_check

    def check(
        self, end_tick: int, pairs: tuple[np.ndarray, np.ndarray], counts: ExclusionCounts
    ) -> list[int]:
        """Close the check due at ``end_tick``: ``pairs`` (i, j) are the adjacent window pairs
        now and ``counts`` has ``pair_counts(i, j)``. Returns the cameras found moved (not yet
        forgotten: the caller calls :meth:`forget` with the rest of the evidence)."""
        p = self.params
        n = self.network.n_windows
        # Per window: opportunities, P growth (capped at expected) and expected P growth,
        # rows 0-2 of pairs going out (the window occupied, the partner padded?), rows 3-5 in.
        ev = np.zeros((6, n), dtype=np.float64)
        tr = self._track
        i, j = tr["i"], tr["j"]
        o_ij, p_ij = counts.pair_counts(i, j)
        o_ji, p_ji = counts.pair_counts(j, i)
        for src, dst, o0, p0, o1, p1, r in (
            (i, j, tr["o_ij"], tr["p_ij"], o_ij, p_ij, tr["r_ij"]),
            (j, i, tr["o_ji"], tr["p_ji"], o_ji, p_ji, tr["r_ji"]),
        ):
            d_o, d_p = _growth(o0, p0, o1, p1)
            expected = r * d_o  # as learnt: the ratio when the pair was last linked
            got = np.minimum(d_p, expected)
            for w, rows in ((src, 0), (dst, 3)):  # a shortfall cannot say which end moved
                np.add.at(ev[rows], w, d_o)
                np.add.at(ev[rows + 1], w, got)
                np.add.at(ev[rows + 2], w, expected)
        self._evidence.append(ev.astype(np.float32))
        if len(self._recent) == self._recent.maxlen:
            self._history = self._history * self._decay + self._recent[0]
        zone_occ = np.bincount(self.window_zone, self._occ, self.n_zones)
        self._recent.append(zone_occ.astype(np.float32))
        self._occ = np.zeros(n, dtype=np.float64)
        moved = self._decide()
        self._retrack(pairs, counts, (o_ij, p_ij, o_ji, p_ji))
        self.next_check = (end_tick // p.check_ticks + 1) * p.check_ticks
        self.checks += 1
        return moved

    def _retrack(
        self,
        pairs: tuple[np.ndarray, np.ndarray],
        counts: ExclusionCounts,
        now: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Track the pairs linked now, and for ``recent_checks`` more checks those that were:
        a moved camera's links drop out of the topology within a minute or two (their ratio
        falls below C*), and their collapse must stay in view until the test can decide."""
        p = self.params
        tr = self._track
        i, j = (np.asarray(a, dtype=np.int64) for a in pairs)
        o_ij, p_ij = counts.pair_counts(i, j)
        o_ji, p_ji = counts.pair_counts(j, i)
        # Only pairs with established evidence both ways are tracked: a link learnt from a
        # few dozen opportunities may be chance, and its collapse says nothing.
        sure = (o_ij >= p.min_pair_opportunities) & (o_ji >= p.min_pair_opportunities)
        fresh = {
            "i": i[sure], "j": j[sure], "o_ij": o_ij[sure], "p_ij": p_ij[sure],
            "o_ji": o_ji[sure], "p_ji": p_ji[sure], "r_ij": p_ij[sure] / o_ij[sure],
            "r_ji": p_ji[sure] / o_ji[sure], "age": np.zeros(int(sure.sum()), np.int64),
        }  # fmt: skip
        n = self.network.n_windows
        linked = np.isin(tr["i"] * n + tr["j"], fresh["i"] * n + fresh["j"])
        keep = ~linked & (tr["age"] + 1 <= p.recent_checks)
        old = {k: v[keep] for k, v in tr.items()}
        old["o_ij"], old["p_ij"], old["o_ji"], old["p_ji"] = (a[keep] for a in now)
        old["age"] = old["age"] + 1
        self._track = {k: np.concatenate([fresh[k], old[k]]) for k in fresh}

    def _decide(self) -> list[int]:
        p = self.params
        net = self.network
        ev = np.sum(self._evidence, axis=0)
        recent = np.sum(self._recent, axis=0)
        cam = net.window_camera
        nc = net.n_cameras
        per_cam = np.stack([np.bincount(cam, row, nc) for row in ev])
        # Both ways: out = when the camera sees someone, do its partners?; in = the reverse.
        opp, got, expected = per_cam[0:3] + per_cam[3:6]
        both = ev[0:3] + ev[3:6]
        short = (both[2] > 0) & (both[1] < p.max_ratio * both[2])
        short_windows = np.bincount(cam, short, nc)
        k2 = p.zones * p.zones
        rec = recent.reshape(nc, k2)
        seen = rec.sum(axis=1)
        shifts = _shifts(rec, self._history.reshape(nc, k2), p.min_recent, p.min_history)
        self.last = []
        moved: list[int] = []
        for c in np.flatnonzero(opp >= p.min_opportunities).tolist():
            ratio = float(got[c] / expected[c]) if expected[c] > 0 else 1.0
            # A moved camera fails both ways: its people are not where its partners look, and
            # theirs are not in its view. A camera that stopped detecting (or sees ghosts)
            # fails one way only. Each way is held to a looser bound than the whole: a busy
            # far-field partner window is padded-occupied half the time by chance alone.
            each = (1 + p.max_ratio) / 2
            ways = [
                per_cam[k, c] >= p.min_opportunities / 2
                and per_cam[k + 1, c] < each * per_cam[k + 2, c]
                for k in (0, 3)
            ]
            contradicted = ratio < p.max_ratio and all(ways) and short_windows[c] >= p.min_windows
            shift = float(shifts[c])
            seeing = seen[c] >= p.min_recent  # a camera gone blind did not move
            usual, sd, samples = self._usual[:, c]
            shifted = (
                samples >= p.shift_samples
                and shift >= p.min_shift
                and shift >= usual + p.shift_z * max(sd, p.shift_sd_floor)
            )
            is_moved = contradicted and seeing and shifted
            self.last.append(
                CameraCheck(
                    c, float(opp[c]), ratio, int(short_windows[c]), shift,
                    float(self._usual[0, c]), bool(is_moved),
                )
            )  # fmt: skip
            if is_moved:
                moved.append(c)
        self._learn_usual(shifts)
        return moved

    def _learn_usual(self, shifts: np.ndarray) -> None:
        """Running mean and deviation of each camera's profile distance (a busy, steady view
        stays near 0.05; a quiet one wanders more, and needs a larger jump)."""
        ok = ~np.isnan(shifts)
        mean, sd, n = self._usual
        a = np.where(n < self.params.shift_samples, 1 / (n + 1), self._alpha)[ok]
        d = shifts[ok] - mean[ok]
        mean[ok] += a * d
        sd[ok] = np.sqrt((1 - a) * (sd[ok] ** 2 + a * d * d))
        n[ok] += 1

    def forget(self, camera: int) -> None:
        """Drop a camera's profile and the linked pairs it is part of (it starts afresh)."""
        lo, hi = self.network.offsets[camera], self.network.offsets[camera + 1]
        zones = self.zone_camera == camera
        self._history[zones] = 0
        self._usual[:, camera] = 0
        self._occ[lo:hi] = 0
        for arr in self._recent:
            arr[zones] = 0
        for arr in self._evidence:
            arr[:, lo:hi] = 0
        cam = self.network.window_camera
        tr = self._track
        keep = (cam[tr["i"]] != camera) & (cam[tr["j"]] != camera)
        self._track = {k: v[keep] for k, v in tr.items()}

    @property
    def nbytes(self) -> int:
        arrays = (self._occ, self._history, *self._track.values(), *self._recent, *self._evidence)
        return sum(a.nbytes for a in arrays)


def _zones(network: Network, k: int) -> np.ndarray:
    """int64 (n_windows,): global zone (camera * k * k + zone) of each window."""
    out = np.empty(network.n_windows, dtype=np.int64)
    for c, g in enumerate(network.grids):
        w = np.arange(g.n_windows)
        row, col = w // g.cols, w % g.cols
        local = (row * k // g.rows) * k + col * k // g.cols
        lo = network.offsets[c]
        out[lo : lo + g.n_windows] = c * k * k + local
    return out


def _growth(
    o0: np.ndarray, p0: np.ndarray, o1: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(dO, dP) since the last check; O below its old value was halved at the count limit
    (or forgotten), so growth is counted from half the old counts, never negative."""
    halved = o1 < o0
    base_o = np.where(halved, o0 // 2, o0)
    base_p = np.where(halved, p0 // 2, p0)
    return np.maximum(o1 - base_o, 0).astype(np.float64), np.maximum(p1 - base_p, 0).astype(
        np.float64
    )


def _shifts(
    recent: np.ndarray, history: np.ndarray, min_recent: float, min_history: float
) -> np.ndarray:
    """float64 (n_cameras,): Hellinger distance between each camera's recent and long-run
    zone profiles (rows); nan where either holds too little."""
    r = recent.sum(axis=1, keepdims=True)
    h = history.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bc = np.sqrt(recent / r * history / h).sum(axis=1)  # Bhattacharyya coefficient
    out: np.ndarray = np.sqrt(np.clip(1.0 - bc, 0.0, None))
    out[(r[:, 0] < min_recent) | (h[:, 0] < min_history)] = np.nan
    return out
