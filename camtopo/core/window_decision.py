"""Window-pair decisions: which windows of two cameras see the same ground (issue 24).

The paper (section 5.1) calls windows i and j adjacent when C'_ij > C* and C'_ji > C*, with
C' = (P/O) * min(1, log O / log O_ref). That rule has two weaknesses at window level:

- **Opportunities are not independent.** One passer-by keeps a window occupied for several
  consecutive ticks (ticks per run: 2-8 on the simulated suite), so O counts correlated
  samples and a fixed threshold on C' means a different error rate for every window.
- **It ignores chance.** A far-field window is padded-occupied 30-70 % of the time whoever
  stands in i, so C_ij = 0.9 says much less about a busy j than about a quiet one; and a
  small near-field window inside a large far-field one (C high one way only) is never
  reported.

The ``test`` rule here replaces the threshold with a one-sided test per direction, on
effective counts and against j's base rate:

- effective counts: O and P divided by the design effect of row i, d_i = occupied ticks of i
  per run of consecutive occupied ticks (one passer-by counts about once);
- H0 for i => j: C_ij <= c_ij, where c_ij = max(c0, 1 - rho * (1 - r_j)) and r_j is the
  fraction of ticks j is padded-occupied (its base rate). The exclusion rate 1 - C_ij must be
  below ``rho`` times the exclusion rate chance alone would give (the lift), and C_ij above
  ``c0`` whatever the base rate;
- the statistic is the signed root of the binomial likelihood ratio,
  z = sign(c - c_ij) sqrt(2 n KL(c || c_ij)), on the effective counts; i => j when z >= z*.
  At a fixed ratio z grows as sqrt(n): with more data a pair whose C exceeds c_ij passes and
  one below it never does, whatever O_ref-style weighting would have said.

Relations reported:

- ``overlap`` (i, j), i < j: i => j and j => i;
- ``contained_in`` (i, j): i => j with the stricter ``rho_one_way`` but not j => i (i's
  ground inside j's; typically a near-field window inside a far-field one). Padding blurs
  j over its neighbourhood (every j' whose neighbourhood holds i's true partner passes the
  one-way test too), so among the windows of j's camera that pass, only those whose reverse
  lifted evidence y_ji = 1 - (1 - C_ji) / (1 - r_i) is the largest in their padding
  neighbourhood are kept (non-maximum suppression).

Scored against ground truth, both relations count as overlapping windows. ``paper`` and
``threshold`` (camtopo's re-measured O_ref 50, C* 0.95) keep the both-way C' rule for
comparison. Everything here is pure: arrays in, arrays out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from camtopo.core.evidence import c_prime
from camtopo.core.padding import PaddedBlock

RuleKind = Literal["paper", "threshold", "test"]


@dataclass(frozen=True)
class WindowRule:
    """How window pairs are decided. ``kind`` picks the rule; the other fields are its
    parameters (``o_ref``, ``c_star`` for the threshold rules; the rest for ``test``)."""

    kind: RuleKind = "test"
    o_ref: float = 50.0
    c_star: float = 0.95
    # Chosen on seed 1 of the simulated suite from a grid over c0, rho, rho_one_way / rho and
    # z* (mean window F1 0.525, the grid's best 0.529; its top is flat), checked on seed 2
    # (docs/research/window_level.md).
    c0: float = 0.5
    rho: float = 0.4
    rho_one_way: float = 0.2
    z_star: float = 2.33  # one-sided 1 %

    @classmethod
    def paper(cls) -> WindowRule:
        """The paper's rule: C' > 0.8 both ways, O_ref 20."""
        return cls(kind="paper", o_ref=20.0, c_star=0.8)

    @classmethod
    def threshold(cls, o_ref: float = 50.0, c_star: float = 0.95) -> WindowRule:
        """camtopo's camera-level rule (the settings' O_ref and C*)."""
        return cls(kind="threshold", o_ref=o_ref, c_star=c_star)


@dataclass(frozen=True)
class WindowActivity:
    """Per window, over the ticks counted so far (all int64 (n_windows,)):

    - ``occupied``: ticks at which the window was occupied (unpadded);
    - ``runs``: runs of consecutive occupied ticks (a run across blocks counts once);
    - ``padded``: ticks at which it was padded-occupied with its camera padding-available;
    - ``available``: ticks at which its camera was padding-available.
    """

    occupied: np.ndarray
    runs: np.ndarray
    padded: np.ndarray
    available: np.ndarray

    def design_effect(self) -> np.ndarray:
        """float64 (n_windows,): occupied ticks per run, >= 1 (1 where never occupied)."""
        effect: np.ndarray = np.maximum(self.occupied / np.maximum(self.runs, 1), 1.0)
        return effect

    def base_rate(self) -> np.ndarray:
        """float64 (n_windows,): fraction of available ticks the window is padded-occupied."""
        rate: np.ndarray = self.padded / np.maximum(self.available, 1)
        return rate


@dataclass
class ActivityCounter:
    """Accumulates :class:`WindowActivity` from padded blocks (ticks in increasing order)."""

    window_camera: np.ndarray  # int (n_windows,)
    occupied: np.ndarray = field(init=False)
    runs: np.ndarray = field(init=False)
    padded: np.ndarray = field(init=False)
    cam_available: np.ndarray = field(init=False)
    last_bit: np.ndarray = field(init=False)  # bool (n_windows,): occupied at tick end - 1
    end: int | None = None  # tick after the last block counted

    def __post_init__(self) -> None:
        n = self.window_camera.shape[0]
        n_cams = int(self.window_camera.max(initial=-1)) + 1
        self.occupied = np.zeros(n, np.int64)
        self.runs = np.zeros(n, np.int64)
        self.padded = np.zeros(n, np.int64)
        self.cam_available = np.zeros(n_cams, np.int64)
        self.last_bit = np.zeros(n, np.bool_)

    def update(self, block: PaddedBlock) -> None:
        w, bits = block.occ_windows, block.occ_bits
        carry = np.zeros(w.shape, np.uint64)
        if self.end == block.start_tick:
            carry = self.last_bit[w].astype(np.uint64)
        starts = bits & ~((bits << np.uint64(1)) | carry)
        self.occupied[w] += np.bitwise_count(bits)
        self.runs[w] += np.bitwise_count(starts)
        self.last_bit[:] = False
        top = np.uint64(block.n_ticks - 1)
        self.last_bit[w] = ((bits >> top) & np.uint64(1)).astype(np.bool_)
        self.padded[block.pad_windows] += np.bitwise_count(block.pad_bits)
        self.cam_available += np.bitwise_count(block.cam_ok)
        self.end = block.start_tick + block.n_ticks

    def activity(self) -> WindowActivity:
        return WindowActivity(
            self.occupied.copy(),
            self.runs.copy(),
            self.padded.copy(),
            self.cam_available[self.window_camera],
        )


def likelihood_z(k: np.ndarray, n: np.ndarray, c0: np.ndarray | float) -> np.ndarray:
    """float64 (m,): signed root of the binomial likelihood ratio of H0 "rate = c0" for k
    successes in n trials (float arrays: effective counts need not be integers);
    positive when k / n > c0. 0 where n = 0."""
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    c0 = np.clip(np.asarray(c0, np.float64), 1e-12, 1 - 1e-12)
    c = np.clip(k / np.maximum(n, 1e-12), 1e-12, 1 - 1e-12)
    kl = c * np.log(c / c0) + (1 - c) * np.log((1 - c) / (1 - c0))
    z = np.sign(c - c0) * np.sqrt(2 * n * np.maximum(kl, 0.0))
    return np.where(n > 0, z, 0.0)


def directed_z(
    o: np.ndarray,
    p: np.ndarray,
    design_i: np.ndarray,
    rate_j: np.ndarray,
    c0: float,
    rho: float,
) -> np.ndarray:
    """float64 (m,): z of i => j for each pair: counts O_ij, P_ij (m,), row i's design effect
    and j's base rate (m,). Tests C_ij > max(c0, 1 - rho (1 - r_j)) on O / d_i, P / d_i."""
    floor = np.maximum(c0, 1 - rho * (1 - np.asarray(rate_j, np.float64)))
    return likelihood_z(np.asarray(p) / design_i, np.asarray(o) / design_i, floor)


@dataclass(frozen=True)
class WindowRelations:
    """Decided window pairs (global indices, int64):

    - ``overlap_i``, ``overlap_j`` (k,), i < j: overlap, evidence both ways;
    - ``inside_i``, ``inside_j`` (m,): i ``contained_in`` j (i => j only)."""

    overlap_i: np.ndarray
    overlap_j: np.ndarray
    inside_i: np.ndarray
    inside_j: np.ndarray

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every unordered pair either relation reports, (lo, hi) sorted and unique: what is
        scored against the truth's window overlaps."""
        a = np.concatenate([self.overlap_i, self.inside_i])
        b = np.concatenate([self.overlap_j, self.inside_j])
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        key = np.unique(np.stack([lo, hi], axis=1), axis=0).reshape(-1, 2)
        return key[:, 0].astype(np.int64), key[:, 1].astype(np.int64)

    def __len__(self) -> int:
        return int(self.pairs()[0].size)


def empty_relations() -> WindowRelations:
    e = np.zeros(0, np.int64)
    return WindowRelations(e, e, e, e)


def decide(
    i: np.ndarray,
    j: np.ndarray,
    o_ij: np.ndarray,
    p_ij: np.ndarray,
    o_ji: np.ndarray,
    p_ji: np.ndarray,
    activity: WindowActivity | None,
    rule: WindowRule,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> WindowRelations:
    """Decide candidate pairs: i, j int (m,) directed candidates (cross-camera; a pair may
    appear in both directions), with O and P both ways (m,). ``activity`` is required by the
    ``test`` rule, and ``neighbours`` (the network's padding CSR table, ptr (W+1,),
    idx (nnz,)) by its ``contained_in`` relation (without it none is reported).
    """
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    o_ij, p_ij, o_ji, p_ji = (np.asarray(x, np.float64) for x in (o_ij, p_ij, o_ji, p_ji))
    if rule.kind in ("paper", "threshold"):
        both = (c_prime(p_ij, o_ij, rule.o_ref) > rule.c_star) & (
            c_prime(p_ji, o_ji, rule.o_ref) > rule.c_star
        )
        lo, hi = _unique_pairs(i[both], j[both])
        e = np.zeros(0, np.int64)
        return WindowRelations(lo, hi, e, e)
    if activity is None:
        raise ValueError("the test rule needs the windows' activity (design effect, base rate)")
    d = activity.design_effect()
    r = activity.base_rate()
    fwd = directed_z(o_ij, p_ij, d[i], r[j], rule.c0, rule.rho) >= rule.z_star
    rev = directed_z(o_ji, p_ji, d[j], r[i], rule.c0, rule.rho) >= rule.z_star
    both = fwd & rev
    lo, hi = _unique_pairs(i[both], j[both])
    if neighbours is None:
        e = np.zeros(0, np.int64)
        return WindowRelations(lo, hi, e, e)
    one = directed_z(o_ij, p_ij, d[i], r[j], rule.c0, rule.rho_one_way) >= rule.z_star
    # Reverse lifted evidence: how much more often than chance i is padded when j is occupied.
    # Overlapping pairs take part in the suppression (they outrank their blurred neighbours)
    # but are reported as overlap.
    y = 1 - (1 - p_ji / np.maximum(o_ji, 1)) / np.maximum(1 - r[i], 1e-6)
    keep = _local_max(i, j, one | both, y, neighbours) & one & ~both
    inside_i, inside_j = _unique_directed(i[keep], j[keep])
    return WindowRelations(lo, hi, inside_i, inside_j)


def _local_max(
    i: np.ndarray,
    j: np.ndarray,
    cand: np.ndarray,
    value: np.ndarray,
    neighbours: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """bool (m,): candidates (i, j) whose ``value`` is >= that of every candidate (i, j')
    with j' a padding neighbour of j (False where ``cand`` is False)."""
    ptr, idx = neighbours
    n = ptr.size - 1  # windows
    k = np.flatnonzero(cand)
    key = i[k] * n + j[k]
    order = np.argsort(key)
    key, val = key[order], value[k][order]
    counts = ptr[j[k] + 1] - ptr[j[k]]
    row = np.repeat(np.arange(k.size), counts)
    first = np.repeat(ptr[j[k]] - (np.cumsum(counts) - counts), counts)
    q = i[k][row] * n + idx[first + np.arange(row.size)]
    pos = np.minimum(np.searchsorted(key, q), max(key.size - 1, 0))
    hit = key[pos] == q if key.size else np.zeros(q.size, np.bool_)
    best = np.full(k.size, -np.inf)
    np.maximum.at(best, row[hit], val[pos[hit]])
    out = np.zeros(i.size, np.bool_)
    out[k] = value[k] >= best
    return out


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return _unique_directed(lo, hi)


def _unique_directed(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.size == 0:
        return a.astype(np.int64), b.astype(np.int64)
    u = np.unique(np.stack([a, b], axis=1), axis=0)
    return u[:, 0].astype(np.int64), u[:, 1].astype(np.int64)
