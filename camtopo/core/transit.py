"""Transit links between cameras that do not overlap: lag-resolved appearance evidence.

The paper links non-overlapping cameras with one temporal tolerance (section 4.2); issue 6
measured that no single tolerance separates walkways from chance. This module instead counts
*events*, not ticks (a person dwells many ticks in a window, so tick evidence is heavily
autocorrelated), and compares them with the base rate *at the same time* (crowd surges make
everything co-occur):

- Events follow *blob tracks*: a run of occupancy in a window (gaps up to ``gap`` ticks
  bridge missed detections) continues the track of a window within ``radius`` that was
  occupied in the last ``gap`` ticks, else a new track is born. **Arrival** at camera B,
  tick t: a track born at t that lasts ``min_track`` (false blobs last one frame).
  **Departure** from camera A, tick t: a run ends at t, no window within ``radius`` takes
  over in (t, t + gap], and its track lived ``min_track``. Both need the camera to have had
  data throughout, so outages do not fake events. Each event carries its *zone* (the grid
  cut into zone_cols x zone_rows), so entry/exit zones are found from the data; A and B
  below are zones, and a camera link is its best zone pair.
- For every arrival at B (t1) and departure from A (t0) with lag δ = t1 - t0:
  ``hist[A→B, δ // bin]`` counts δ in [0, max_lag); ``wide[A→B]`` counts δ in
  [-control, max_lag + control], a window centred on the signal range. The expected count per
  lag bin under "B's arrivals are unrelated to A's departures" is
  ``wide * bin / (max_lag + 2 control)``: B's arrival rate around the times A's departures
  happened, so surges raise the expectation as much as the counts.
- A direction A→B is a link when some lag band [δ(1 - f), δ(1 + f)] (at least ±1 bin) holds
  significantly more arrivals S than expected E: a Poisson likelihood-ratio z ≥ ``z_star``
  (a Bonferroni-style threshold for ~ bins × pairs tests), S / E ≥ ``min_ratio`` (the control is
  an estimate; huge counts would make tiny biases significant), S - E ≥ ``min_excess``.
  The peak band is the "consistent lag"; transit times are quantiles of the excess
  (hist - expected, clipped at 0) around it.
- Appearance (optional): where records carry each blob's hue and brightness, every track
  carries the mean of its blobs' descriptors, and a departure and an arrival count as a pair
  (signal, control and screen alike) only if they could be one person (:func:`_alike`).
- Indirect links: a walker A→X→B also makes B's arrivals follow A's departures, later and
  more spread. A→B is dropped when legs A→X and X→B (weaker evidence suffices, or an overlap
  found by the exclusion counts) have median lags adding up to at most A→B's (X's dwell time
  comes on top). Lags down to ``-overlap_lag`` are binned too: overlapping views make arrivals
  in one precede departures from the other, so an excess there is an overlap leg even where
  the exclusion counts missed the overlap. Pairs that overlap are left to the exclusion counts.

Memory is bounded: a ring of recent departures (max_lag + 2 control), a queue of arrivals
waiting for their control window to complete (control + gap ticks), and at most ``max_dest``
tracked destination zones per source zone, each with ``max_lag / bin`` lag bins. A dense
(n_zones, n_zones) int32 slot map finds a pair's slot, and a dense *coarse screen* of
``coarse_bins`` uint8 lag bins per zone pair counts every pair, slot or not (both quadratic:
see docs/transit.md). Sources with all slots taken hand, once per ``maintain_every_s`` (a
group of sources at each block boundary, so the cost is spread), slots that showed no
evidence (z < ``release_z``) after ``min_slot_age`` ticks to the pairs the screen ranks best
(z >= ``promote_z``); without the screen a released slot went to whichever pair came next,
mostly chance. Counts are halved per pair when its control count reaches
``halve_at`` or a lag bin fills (the paper's ageing, ratios kept).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numba as nb
import numpy as np

from camtopo.core.appearance import HUE_BINS  # descriptors: 8 hue bins, then brightness rank
from camtopo.core.bits import MAX_BLOCK_TICKS
from camtopo.core.grid import Network
from camtopo.core.padding import PaddedBlock

NEVER = -(2**40)  # a tick long before any trace


@dataclass(frozen=True)
class TransitParams:
    """Knobs of the transit estimator; lags in seconds, converted with ``tick_s``."""

    tick_s: float = 0.1
    max_lag_s: float = 60.0
    bin_s: float = 1.0
    control_s: float = 120.0  # each side of the signal range for B's base rate
    gap_s: float = 0.5  # occupancy gaps this short do not end a run (missed detections)
    radius: int = 1  # windows this close (same camera) continue a blob, not (dis)appear
    min_track_s: float = 1.0  # blobs seen for less are not people (false blobs: one frame)
    # Entry/exit zones per camera: the grid cut into zone_cols x zone_rows. Cameras look along
    # walkways, so people enter and leave by the far (top) or near (bottom) edge; a left/right
    # split mostly halves one exit's evidence (docs/research/transit.md, round 1: 1 x 2 found 8
    # more true links than 2 x 2 over four simulated hours, 2 more false).
    zone_cols: int = 1
    zone_rows: int = 2
    band_frac: float = 0.2  # lag band half-width as a fraction of the lag (walking speeds vary)
    z_star: float = 5.0
    min_ratio: float = 1.5
    min_excess: float = 8.0
    max_dest: int = 256  # tracked destination zones per source zone
    min_slot_age_s: float = 600.0
    release_z: float = 3.0  # best-band z of chance alone is ~2-3 (max over the bands)
    # Every zone pair, slot or not, also has coarse_bins lag bins over [0, max_lag): the screen
    # that picks which pair gets a released slot (a full source would otherwise hand it to
    # whichever pair came next, mostly chance: at 1,000 cameras that lost half the true links).
    coarse_bins: int = 6
    promote_z: float = 2.0  # coarse evidence a pair needs to take a slot from a weak one
    # A slot reports a link only after this much evidence: a slot handed over mid-stream would
    # otherwise be tested on its first minutes alone, and a crowd surge in them (everyone's
    # arrivals follow everyone's departures) passes the test (docs/research/transit.md, round 3).
    min_report_age_s: float = 1200.0
    maintain_every_s: float = 60.0
    halve_at: int = 1 << 20
    ring_capacity: int = 1 << 18  # departures held (max_lag + 2 control of the whole network)
    indirect_slack: float = 1.1  # A→B indirect when m(A→X) + m(X→B) <= slack * m(A→B) + 1 bin
    weak_z: float = 3.0  # evidence enough for a leg that explains a longer link
    weak_ratio: float = 1.2
    # Lags in [-overlap_lag_s, 0) are also kept per bin: overlapping views make arrivals in one
    # precede departures from the other, so the exclusion counts' missed overlaps still show.
    overlap_lag_s: float = 10.0
    overlap_z: float = 4.0  # excess in lags [-overlap_lag, 1 bin) this strong: an overlap leg
    # Via an overlap leg the other leg must be this much shorter than the link (of two
    # overlapping cameras linked to A, only the farther one's link is dropped).
    overlap_margin_s: float = 0.5
    # Appearance, where occupancy records carry it (shared/contracts/appearance.md): a
    # departure and an arrival count as a pair only if they could be one person (see _alike).
    appearance: bool = True
    alike_hue: float = 0.5  # hue histogram intersection, either shifted by up to one bin
    alike_rank: float = 0.2  # difference of brightness ranks within each camera

    def __post_init__(self) -> None:
        if not 0 < self.bin_s <= self.max_lag_s:
            raise ValueError(f"need 0 < bin_s <= max_lag_s, got {self.bin_s}, {self.max_lag_s}")
        if self.control_s < 0 or self.gap_s < 0 or self.radius < 0:
            raise ValueError("control_s, gap_s and radius must be >= 0")
        if self.max_dest < 1 or self.ring_capacity < 16 or self.coarse_bins < 1:
            raise ValueError("max_dest, coarse_bins must be >= 1 and ring_capacity >= 16")

    def ticks(self, seconds: float) -> int:
        return round(seconds / self.tick_s)

    @property
    def n_bins(self) -> int:
        return int(np.ceil(self.max_lag_s / self.bin_s))


@dataclass(frozen=True)
class DirectedTransit:
    """Evidence that people walk from camera ``src`` to camera ``dst`` (indices)."""

    src: int
    dst: int
    z: float
    observed: float  # arrivals in the peak band
    expected: float  # of which expected by chance
    median_s: float
    p10_s: float
    p90_s: float
    indirect: bool = False

    @property
    def support(self) -> float:
        return self.observed - self.expected

    def to_json(self) -> dict[str, object]:
        return {
            "median_s": round(self.median_s, 2),
            "p10_s": round(self.p10_s, 2),
            "p90_s": round(self.p90_s, 2),
            "support": round(self.support, 1),
            "z": round(self.z, 2),
            "ratio": round(self.observed / max(self.expected, 1e-9), 2),
        }


# --- event extraction and counting (numba) ----------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _update(
    start: int,
    n_ticks: int,
    occ_windows: np.ndarray,  # int32 (n_occ,)
    occ_bits: np.ndarray,  # uint64 (n_occ,)
    cam_ok: np.ndarray,  # uint64 (n_cameras,)
    window_camera: np.ndarray,  # int32 (n_windows,)
    window_zone: np.ndarray,  # int32 (n_windows,) global zone of each window
    zone_camera: np.ndarray,  # int32 (n_zones,)
    nbr_ptr: np.ndarray,
    nbr_idx: np.ndarray,
    gap: int,
    min_track: int,
    lo_lag: int,  # -control
    hi_lag: int,  # max_lag + control (inclusive)
    n_lag: int,  # max_lag in ticks (signal lags 0 .. n_lag - 1)
    n_neg: int,  # negative lags -n_neg .. -1 also get bins (a multiple of bin_ticks)
    bin_ticks: int,
    max_dest: int,
    halve_at: int,
    # state
    last_occ: np.ndarray,  # int64 (n_windows,) last occupied tick
    born: np.ndarray,  # int64 (n_windows,) appearance tick of the blob track in the window
    origin: np.ndarray,  # int32 (n_windows,) zone where that track appeared (-1: not usable)
    emitted: np.ndarray,  # bool (n_windows,) the track's arrival was already emitted
    active: np.ndarray,  # int32 (n_windows,) windows with a run that may still end
    in_active: np.ndarray,  # bool (n_windows,)
    n_active: np.ndarray,  # int64 (1,)
    cam_gap: np.ndarray,  # int64 (n_cameras,) last tick without data
    dep_t: np.ndarray,  # int64 (R,) ring of departures
    dep_z: np.ndarray,  # int32 (R,) their zones
    dep_head: np.ndarray,  # int64 (2,): [0] departures ever added, [1] overwritten too early
    arr_t: np.ndarray,  # int64 (Q,) queue of arrivals waiting for their control window
    arr_z: np.ndarray,  # int32 (Q,)
    arr_q: np.ndarray,  # int64 (3,): [0] head, [1] tail (ever), [2] arrivals lost
    slot_of: np.ndarray,  # int32 (n_zones, n_zones) slot index or -1
    slot_dst: np.ndarray,  # int32 (n_zones * max_dest,) destination zone or -1
    slot_born: np.ndarray,  # int64 (n_zones * max_dest,)
    slot_free: np.ndarray,  # int32 (n_zones,) free slots of each source zone
    hist: np.ndarray,  # uint16 (n_slots, n_bins)
    wide: np.ndarray,  # uint32 (n_slots,)
    coarse: np.ndarray,  # uint8 (n_zones * n_zones, coarse_bins), row b * n_zones + a: lags
    coarse_wide: np.ndarray,  # uint16 (n_zones * n_zones,)  [0, max_lag) and control window
    stats: np.ndarray,  # int64 (4,): departures, arrivals, pair updates, untracked pairs
    # appearance (when use_app): each blob track's mean descriptor rides with its events,
    # and a departure-arrival pair that does not look alike is not counted at all
    use_app: bool,
    desc_idx: np.ndarray,  # int32 (n_occ, n_ticks): row of desc, -1 none
    desc: np.ndarray,  # float32 (m, D)
    trk: np.ndarray,  # float32 (n_windows, D) descriptor sums of each window's track
    trk_n: np.ndarray,  # int32 (n_windows,)
    dep_d: np.ndarray,  # float32 (R, D) departures' mean descriptors
    dep_n: np.ndarray,  # int32 (R,) 0: none
    arr_d: np.ndarray,  # float32 (Q, D)
    arr_n: np.ndarray,  # int32 (Q,)
    alike_hue: float,
    alike_rank: float,
) -> None:
    n_occ = occ_windows.shape[0]
    n_cams = cam_ok.shape[0]
    n_zones = zone_camera.shape[0]
    n_coarse = coarse.shape[1]
    R = dep_t.shape[0]
    Q = arr_t.shape[0]
    for k in range(n_ticks):
        t = start + k
        bit = np.uint64(1) << np.uint64(k)
        for c in range(n_cams):
            if not cam_ok[c] & bit:
                cam_gap[c] = t
        for e in range(n_occ):
            if not occ_bits[e] & bit:
                continue
            w = occ_windows[e]
            if last_occ[w] < t - gap:
                # A run starts: the blob came from a nearby window (inherit its track) or
                # appeared here.
                fresh = True
                for p in range(nbr_ptr[w], nbr_ptr[w + 1]):
                    n = nbr_idx[p]
                    if n != w and last_occ[n] >= t - gap:
                        if fresh or born[n] < born[w]:
                            born[w] = born[n]
                            origin[w] = origin[n]
                            emitted[w] = emitted[n]
                            if use_app:
                                trk[w, :] = trk[n, :]
                                trk_n[w] = trk_n[n]
                        fresh = False
                if fresh:
                    born[w] = t
                    # an appearance right after an outage may be a blob seen all along
                    origin[w] = window_zone[w] if cam_gap[window_camera[w]] < t - gap else -1
                    emitted[w] = False
                    if use_app:
                        trk[w, :] = 0.0
                        trk_n[w] = 0
            if use_app and desc_idx[e, k] >= 0:
                trk[w, :] += desc[desc_idx[e, k], :]
                trk_n[w] += 1
            last_occ[w] = t
            if not in_active[w]:
                in_active[w] = True
                active[n_active[0]] = w
                n_active[0] += 1
            # Arrival: a track that has lasted min_track ticks (false blobs do not).
            if not emitted[w] and t - born[w] >= min_track:
                emitted[w] = True
                for p in range(nbr_ptr[w], nbr_ptr[w + 1]):
                    n = nbr_idx[p]
                    if born[n] == born[w] and last_occ[n] >= t - gap:
                        emitted[n] = True
                if origin[w] >= 0:
                    if arr_q[1] - arr_q[0] < Q:
                        arr_t[arr_q[1] % Q] = born[w]
                        arr_z[arr_q[1] % Q] = origin[w]
                        if use_app:
                            arr_n[arr_q[1] % Q] = trk_n[w]
                            if trk_n[w] > 0:
                                arr_d[arr_q[1] % Q, :] = trk[w, :] / trk_n[w]
                        arr_q[1] += 1
                        stats[1] += 1
                    else:
                        arr_q[2] += 1
        # Run ends, known gap + 1 ticks later: departures when no nearby window took over.
        i = 0
        while i < n_active[0]:
            w = active[i]
            end = last_occ[w]
            if end < t - gap:
                leave = cam_gap[window_camera[w]] <= end and end - born[w] >= min_track
                if leave:
                    for p in range(nbr_ptr[w], nbr_ptr[w + 1]):
                        if last_occ[nbr_idx[p]] > end:
                            leave = False
                            break
                if leave:
                    h = dep_head[0]
                    if h >= R and dep_t[h % R] >= end + 2 * lo_lag - n_lag:
                        dep_head[1] += 1  # ring too small for the window: overwritten early
                    dep_t[h % R] = end
                    dep_z[h % R] = window_zone[w]
                    if use_app:
                        dep_n[h % R] = trk_n[w]
                        if trk_n[w] > 0:
                            dep_d[h % R, :] = trk[w, :] / trk_n[w]
                    dep_head[0] = h + 1
                    stats[0] += 1
                in_active[w] = False
                n_active[0] -= 1
                active[i] = active[n_active[0]]
            else:
                i += 1
        # Arrivals whose control window [t1 - max_lag - control, t1 + control] of departures
        # is complete (a departure at t0 is known at t0 + gap + 1).
        ready = t - gap - 1 + lo_lag  # t1 <= ready  <=>  t1 + control <= t - gap - 1
        while arr_q[0] < arr_q[1] and arr_t[arr_q[0] % Q] <= ready:
            t1 = arr_t[arr_q[0] % Q]
            b = arr_z[arr_q[0] % Q]
            qa = arr_q[0] % Q
            arr_q[0] += 1
            h = dep_head[0] - 1
            stop = max(dep_head[0] - R, 0)
            while h >= stop:
                t0 = dep_t[h % R]
                a = dep_z[h % R]
                h -= 1
                lag = t1 - t0
                if lag < lo_lag:
                    continue  # departure after the control window (newer ones come first)
                if lag > hi_lag:
                    break
                if zone_camera[a] == zone_camera[b]:
                    continue
                if (
                    use_app
                    and dep_n[(h + 1) % R] > 0
                    and arr_n[qa] > 0
                    and not _alike(dep_d[(h + 1) % R], arr_d[qa], alike_hue, alike_rank)
                ):
                    continue  # two people: neither the signal nor its control counts them
                # The coarse screen counts every pair, slot or not (see _maintain). Rows are
                # destinations: this arrival's pairs stay within one row, in cache.
                cp = b * n_zones + a
                coarse_wide[cp] += 1
                full = coarse_wide[cp] == 65535  # uint16
                if 0 <= lag < n_lag:
                    j = lag * n_coarse // n_lag
                    coarse[cp, j] += 1
                    full = full or coarse[cp, j] == 255  # uint8: the screen ages fast
                if full:
                    coarse_wide[cp] >>= 1
                    for j in range(n_coarse):
                        coarse[cp, j] >>= 1
                s = slot_of[a, b]
                if s < 0 and slot_free[a] == 0:
                    # A full source: no scan of its slots (at 1,000 cameras most pairs are
                    # untracked, and scanning max_dest slots for each was most of the cost).
                    stats[3] += 1
                    continue
                if s < 0:
                    slot_free[a] -= 1
                    base = a * max_dest
                    for q in range(max_dest):
                        if slot_dst[base + q] < 0:
                            s = base + q
                            slot_dst[s] = b
                            slot_born[s] = t
                            slot_of[a, b] = s
                            break
                stats[2] += 1
                wide[s] += 1
                full = wide[s] >= halve_at
                if -n_neg <= lag < n_lag:
                    j = (lag + n_neg) // bin_ticks
                    hist[s, j] += 1
                    full = full or hist[s, j] == 65535  # uint16 bins
                if full:
                    wide[s] >>= 1
                    for j in range(hist.shape[1]):
                        hist[s, j] >>= 1


@nb.njit(cache=True, nogil=True)
def _alike(x: np.ndarray, y: np.ndarray, min_hue: float, max_rank: float) -> bool:
    """Could two track descriptors (8 hue bins, then the brightness rank in its camera) be
    one person? Brightness ranks within max_rank (a camera's brightness curve is unknown but
    monotonic: ranks survive it); hue histograms intersecting by min_hue with either shifted
    by up to one bin (a camera's colour cast), or both mostly unsaturated."""
    if abs(x[HUE_BINS] - y[HUE_BINS]) > max_rank:
        return False
    sx = 0.0
    sy = 0.0
    for i in range(HUE_BINS):
        sx += x[i]
        sy += y[i]
    if sx < 0.5 or sy < 0.5:
        return sx < 0.5 and sy < 0.5
    best = 0.0
    for shift in range(-1, 2):
        inter = 0.0
        for i in range(HUE_BINS):
            inter += min(x[i], y[(i + shift) % HUE_BINS])
        best = max(best, inter)
    return best >= min_hue * min(sx, sy)


@nb.njit(cache=True, nogil=True)
def _poisson_z(obs: float, exp_: float) -> float:
    """Poisson likelihood-ratio z of ``obs`` against ``exp_`` (both > 0, obs > exp_)."""
    z: float = np.sqrt(2.0 * (obs * np.log(obs / exp_) - (obs - exp_)))
    return z


@nb.njit(cache=True, nogil=True)
def _best_band(
    hist: np.ndarray, s: int, first: int, e_bin: float, band_frac: float, cum: np.ndarray
) -> tuple[float, int, int, float, float]:
    """Best lag band of slot ``s`` over bins ``hist[s, first:]``: (z, centre bin, half-width,
    observed, expected); all zero when no band exceeds chance. ``cum``: scratch, n_bins + 1."""
    nb_ = hist.shape[1] - first
    for j in range(nb_):
        cum[j + 1] = cum[j] + hist[s, first + j]
    best = (0.0, 0, 0, 0.0, 0.0)
    for c in range(nb_):
        hw = max(1, round(band_frac * (c + 0.5)))
        lo = max(0, c - hw)
        hi = min(nb_, c + hw + 1)
        obs = cum[hi] - cum[lo]
        exp_ = e_bin * (hi - lo)
        if obs <= exp_ or exp_ <= 0:
            continue
        z = _poisson_z(obs, exp_)
        if z > best[0]:
            best = (z, c, hw, obs, exp_)
    return best


@nb.njit(cache=True, nogil=True)
def _band_scores(
    hist: np.ndarray,  # uint16 (n_slots, first + n_bins)
    first: int,  # the signal's first bin (lag 0)
    wide: np.ndarray,  # uint32 (n_slots,)
    per_bin: float,  # expected fraction of wide per bin
    band_frac: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best lag band per slot: (z, centre bin, half-width, observed, expected)."""
    n = hist.shape[0]
    z_out = np.zeros(n)
    c_out = np.zeros(n, dtype=np.int64)
    hw_out = np.zeros(n, dtype=np.int64)
    s_out = np.zeros(n)
    e_out = np.zeros(n)
    cum = np.zeros(hist.shape[1] - first + 1)
    for s in range(n):
        if wide[s] > 0:
            z_out[s], c_out[s], hw_out[s], s_out[s], e_out[s] = _best_band(
                hist, s, first, wide[s] * per_bin, band_frac, cum
            )
    return z_out, c_out, hw_out, s_out, e_out


@nb.njit(cache=True, nogil=True)
def _screen_z(coarse: np.ndarray, coarse_wide: np.ndarray, i: int, per_bin: float) -> float:
    """Screening z of pair row ``i``: the best single or two adjacent coarse lag bins against
    chance (Poisson likelihood ratio, as the fine test)."""
    e_bin = coarse_wide[i] * per_bin
    if e_bin <= 0:
        return 0.0
    # z grows with obs at a fixed expectation: only the fullest bin and pair count.
    one = 0.0
    two = 0.0
    k = coarse.shape[1]
    for j in range(k):
        one = max(one, float(coarse[i, j]))
        if j + 1 < k:
            two = max(two, float(coarse[i, j]) + float(coarse[i, j + 1]))
    out = 0.0
    for obs, exp_ in ((one, e_bin), (two, 2.0 * e_bin)):
        if obs > exp_:
            out = max(out, _poisson_z(obs, exp_))
    return out


@nb.njit(cache=True, nogil=True)
def _hand_over(
    sources: np.ndarray,  # int64: full source zones due for maintenance
    now: int,
    min_age: int,  # ticks a slot holds before it may be handed over
    release_z: float,
    hist: np.ndarray,
    first: int,
    wide: np.ndarray,
    per_bin: float,
    band_frac: float,
    coarse: np.ndarray,  # destination-major: row b * n_zones + a
    coarse_wide: np.ndarray,
    coarse_per_bin: float,
    promote_z: float,
    zone_camera: np.ndarray,
    max_dest: int,
    slot_of: np.ndarray,
    slot_dst: np.ndarray,
    slot_born: np.ndarray,
) -> int:
    """Give each source's weak slots (old enough, best-band z < ``release_z``; weakest first)
    to its untracked pairs of the best screening z >= ``promote_z``. Only these sources' slots
    are scored and their pairs screened, so a round costs what its sources hold. Returns the
    number of slots handed over."""
    n_zones = zone_camera.shape[0]
    row = np.zeros(n_zones)
    z = np.zeros(max_dest)
    weak = np.zeros(max_dest, dtype=np.bool_)
    cum = np.zeros(hist.shape[1] - first + 1)
    handed = 0
    for a in sources:
        base = a * max_dest
        for k in range(max_dest):
            s = base + k
            z[k] = 0.0
            # Only slots old enough can be weak: younger ones are not scored (in the first
            # min_slot_age every slot is young, and scoring them was most of a round's cost).
            old = now - slot_born[s] >= min_age
            if old and wide[s] > 0:
                z[k] = _best_band(hist, s, first, wide[s] * per_bin, band_frac, cum)[0]
            weak[k] = old and z[k] < release_z
        out = np.flatnonzero(weak)
        if len(out) == 0:
            continue
        for b in range(n_zones):
            tracked = slot_of[a, b] >= 0 or zone_camera[b] == zone_camera[a]
            row[b] = (
                0.0 if tracked else _screen_z(coarse, coarse_wide, b * n_zones + a, coarse_per_bin)
            )
        best = np.flatnonzero(row >= promote_z)
        n = min(len(out), len(best))
        if n == 0:
            continue
        out = out[np.argsort(z[out], kind="mergesort")[:n]]  # stable: slot order breaks ties
        best = best[np.argsort(-row[best], kind="mergesort")[:n]]
        for i in range(n):
            s = base + out[i]
            slot_of[a, slot_dst[s]] = -1
            slot_of[a, best[i]] = s
            slot_dst[s] = best[i]
            slot_born[s] = now
            hist[s, :] = 0
            wide[s] = 0
        handed += n
    return handed


def _lr_z(obs: np.ndarray, exp_: np.ndarray) -> np.ndarray:
    """Poisson likelihood-ratio z of ``obs`` against ``exp_`` (0 where obs <= exp)."""
    o = np.maximum(obs, 1e-12)
    e = np.maximum(exp_, 1e-12)
    z2 = 2.0 * (o * np.log(o / e) - (o - e))
    return np.where(obs > exp_, np.sqrt(np.maximum(z2, 0.0)), 0.0)


def _quantiles(excess: np.ndarray, centres: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Weighted quantiles of bin ``centres`` with weights ``excess`` (linear within bins)."""
    total = excess.sum()
    if total <= 0:
        return [float("nan")] * len(qs)
    cdf = np.concatenate([[0.0], np.cumsum(excess)]) / total
    width = centres[1] - centres[0] if len(centres) > 1 else 1.0
    edges = np.concatenate([centres - width / 2, [centres[-1] + width / 2]])
    return [float(np.interp(q, cdf, edges)) for q in qs]


# track sums and counts, departures' and arrivals' descriptors and counts (see _update)
_AppearanceState = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_NO_APPEARANCE: _AppearanceState = (
    np.zeros((1, HUE_BINS + 1), np.float32), np.zeros(1, np.int32),
    np.zeros((1, HUE_BINS + 1), np.float32), np.zeros(1, np.int32),
    np.zeros((1, HUE_BINS + 1), np.float32), np.zeros(1, np.int32),
)  # fmt: skip
_NO_DESCRIPTORS = np.zeros((1, HUE_BINS + 1), np.float32)


class TransitEstimator:
    """Incremental transit-link evidence, fed with the padded blocks of the exclusion core."""

    def __init__(self, network: Network, params: TransitParams | None = None) -> None:
        self.network = network
        self.params = p = params or TransitParams()
        n, nw = network.n_cameras, network.n_windows
        self.gap = p.ticks(p.gap_s)
        self.min_track = p.ticks(p.min_track_s)
        self.n_lag = p.ticks(p.max_lag_s)
        self.control = p.ticks(p.control_s)
        self.bin_ticks = max(1, p.ticks(p.bin_s))
        self.n_bins = -(-self.n_lag // self.bin_ticks)
        self.n_neg_bins = -(-p.ticks(p.overlap_lag_s) // self.bin_ticks)
        self._nbr = network.neighbour_table(p.radius)
        self._window_camera = network.window_camera.astype(np.int32)
        self.zones_per_camera = p.zone_cols * p.zone_rows
        self.window_zone = self._zones(network, p.zone_cols, p.zone_rows)
        self.n_zones = n * self.zones_per_camera
        self.zone_camera = (np.arange(self.n_zones) // self.zones_per_camera).astype(np.int32)
        self.last_occ = np.full(nw, NEVER, dtype=np.int64)
        self.born = np.full(nw, NEVER, dtype=np.int64)
        self.origin = np.full(nw, -1, dtype=np.int32)
        self.emitted = np.ones(nw, dtype=np.bool_)
        self.active = np.zeros(nw, dtype=np.int32)
        self.in_active = np.zeros(nw, dtype=np.bool_)
        self.n_active = np.zeros(1, dtype=np.int64)
        self.cam_gap = np.full(n, NEVER, dtype=np.int64)
        self.dep_t = np.zeros(p.ring_capacity, dtype=np.int64)
        self.dep_z = np.zeros(p.ring_capacity, dtype=np.int32)
        self.dep_head = np.zeros(2, dtype=np.int64)
        q = max(1024, p.ring_capacity // 4)
        self.arr_t = np.zeros(q, dtype=np.int64)
        self.arr_z = np.zeros(q, dtype=np.int32)
        self.arr_q = np.zeros(3, dtype=np.int64)
        self.slot_of = np.full((self.n_zones, self.n_zones), -1, dtype=np.int32)
        slots = self.n_zones * p.max_dest
        self.slot_dst = np.full(slots, -1, dtype=np.int32)
        self.slot_born = np.zeros(slots, dtype=np.int64)
        # bins of lags [-n_neg_bins, 0) then [0, n_bins) (see :attr:`signal`)
        self.hist = np.zeros((slots, self.n_neg_bins + self.n_bins), dtype=np.uint16)
        self.wide = np.zeros(slots, dtype=np.uint32)
        self.coarse = np.zeros((self.n_zones**2, p.coarse_bins), dtype=np.uint8)
        self.coarse_wide = np.zeros(self.n_zones**2, dtype=np.uint16)
        self.stats = np.zeros(4, dtype=np.int64)
        # Appearance state, allocated with the first block that brings descriptors
        self._app: _AppearanceState | None = None
        self.slot_free = self._free_slots()  # kept up to date by _update and _maintain
        self.released = 0  # slots released to make room for new candidates
        self.now = NEVER  # end tick of the last block fed
        self._next_maintain: int | None = None

    @staticmethod
    def _zones(network: Network, zc: int, zr: int) -> np.ndarray:
        """int32 (n_windows,): global zone (camera * zc * zr + zone) of every window."""
        out = np.zeros(network.n_windows, dtype=np.int32)
        for cam, grid in enumerate(network.grids):
            local = np.arange(grid.n_windows)
            row, col = local // grid.cols, local % grid.cols
            zone = (row * zr // grid.rows) * zc + col * zc // grid.cols
            out[network.offsets[cam] + local] = cam * zc * zr + zone
        return out

    # --- feeding ---

    def update(
        self, block: PaddedBlock, appearance: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        """Consume one padded block (blocks must come in tick order, as the buffer emits them).

        ``appearance``: (desc_idx, desc) of :meth:`camtopo.core.appearance.AppearanceTable.take`
        for this block; events of tracks with descriptors then count only with events that
        look alike (``params.appearance``)."""
        p = self.params
        if appearance is not None and p.appearance and self._app is None:
            nw, r, q, d = self.network.n_windows, self.dep_t.size, self.arr_t.size, HUE_BINS + 1
            self._app = (
                np.zeros((nw, d), np.float32), np.zeros(nw, np.int32),
                np.zeros((r, d), np.float32), np.zeros(r, np.int32),
                np.zeros((q, d), np.float32), np.zeros(q, np.int32),
            )  # fmt: skip
        # Once descriptors came, pairs are compared in every block: a block without any (a
        # quiet spell) still pairs arrivals of earlier blocks that have them.
        use_app = self._app is not None
        app = self._app if self._app is not None else _NO_APPEARANCE
        if appearance is None or not use_app:
            n_occ, n_ticks = block.occ_windows.size, max(block.n_ticks, 1)
            appearance = (np.full((n_occ, n_ticks), -1, np.int32), _NO_DESCRIPTORS)
        desc_idx, desc = appearance
        _update(
            block.start_tick, block.n_ticks, block.occ_windows, block.occ_bits, block.cam_ok,
            self._window_camera, self.window_zone, self.zone_camera, self._nbr[0], self._nbr[1],
            self.gap, self.min_track, -self.control, self.n_lag + self.control, self.n_lag,
            self.n_neg_bins * self.bin_ticks, self.bin_ticks, p.max_dest, p.halve_at,
            self.last_occ, self.born, self.origin, self.emitted, self.active, self.in_active,
            self.n_active, self.cam_gap, self.dep_t, self.dep_z, self.dep_head, self.arr_t,
            self.arr_z, self.arr_q, self.slot_of, self.slot_dst, self.slot_born, self.slot_free,
            self.hist, self.wide, self.coarse, self.coarse_wide, self.stats,
            use_app, desc_idx, desc, *app, p.alike_hue, p.alike_rank,
        )  # fmt: skip
        end = block.start_tick + block.n_ticks
        self.now = max(self.now, end)
        # Maintenance at every block boundary (multiples of the 64-tick block, which blocks never
        # straddle, so how ticks were batched into blocks never changes the result), each time
        # for one group of sources: every source is maintained once per maintain_every_s, and
        # the cost is spread over the blocks (one round of all sources took 0.4-0.6 s at 1,000
        # cameras, on the streaming leader's counting path).
        if self._next_maintain is None:
            self._next_maintain = (block.start_tick // MAX_BLOCK_TICKS + 1) * MAX_BLOCK_TICKS
        while end >= self._next_maintain:
            self._maintain(self._next_maintain)
            self._next_maintain += MAX_BLOCK_TICKS

    def _free_slots(self) -> np.ndarray:
        """int32 (n_zones,): unused slots per source zone (derived, so not in the state)."""
        used = (self.slot_dst.reshape(self.n_zones, -1) >= 0).sum(axis=1)
        free: np.ndarray = (self.params.max_dest - used).astype(np.int32)
        return free

    @property
    def maintain_groups(self) -> int:
        """Sources are maintained in this many groups, one per block boundary (zone a in group
        a % groups), so each once per ``maintain_every_s``."""
        p = self.params
        return max(1, -(-p.ticks(p.maintain_every_s) // MAX_BLOCK_TICKS))

    def _maintain(self, now: int) -> None:
        """Full sources of this boundary's group hand slots that showed no evidence to the
        pairs the coarse screen ranks best, so true destinations that found every slot taken
        still get one."""
        p = self.params
        groups = self.maintain_groups
        group = (now // MAX_BLOCK_TICKS) % groups
        sources = np.arange(group, self.n_zones, groups)
        sources = sources[self.slot_free[sources] == 0]
        if not len(sources):
            return
        self.released += _hand_over(
            sources, now, p.ticks(p.min_slot_age_s), p.release_z, self.hist, self.n_neg_bins,
            self.wide, self._per_bin, p.band_frac, self.coarse, self.coarse_wide,
            self._per_bin * self.n_bins / p.coarse_bins,  # coarse bin's share of wide
            p.promote_z, self.zone_camera, p.max_dest, self.slot_of, self.slot_dst,
            self.slot_born,
        )  # fmt: skip

    def _scores(self) -> tuple[np.ndarray, ...]:
        """Best lag band of every slot: (z, centre bin, half-width, observed, expected)."""
        return _band_scores(
            self.hist, self.n_neg_bins, self.wide, self._per_bin, self.params.band_frac
        )

    @property
    def signal(self) -> np.ndarray:
        """View of the lag bins [0, max_lag) of ``hist``."""
        return self.hist[:, self.n_neg_bins :]

    @property
    def _per_bin(self) -> float:
        return self.bin_ticks / (self.n_lag + 2 * self.control + 1)

    def snapshot(self) -> TransitEstimator:
        """A frozen copy to read links from (:meth:`directed`) in another thread while this
        one keeps updating: the evidence arrays are copied (~80 MB at 1,000 cameras)."""
        twin = copy.copy(self)
        for name in ("hist", "wide", "slot_dst", "slot_born"):  # hand-overs change them
            setattr(twin, name, getattr(self, name).copy())
        return twin

    def forget_camera(self, camera: int) -> int:
        """Forget the camera's transit evidence both ways (its zones as source and as
        destination: slots freed, coarse screens zeroed), for a camera whose view changed.
        Its open tracks are left to end. Returns the slots freed."""
        zones = np.flatnonzero(self.zone_camera == camera)
        mine = np.zeros(self.n_zones, dtype=np.bool_)
        mine[zones] = True
        src = np.arange(self.slot_dst.size) // self.params.max_dest
        used = self.slot_dst >= 0
        drop = used & (mine[src] | mine[np.where(used, self.slot_dst, 0)])
        for s in np.flatnonzero(drop).tolist():
            self.slot_of[src[s], self.slot_dst[s]] = -1
        self.slot_dst[drop] = -1
        self.hist[drop] = 0
        self.wide[drop] = 0
        coarse = self.coarse.reshape(self.n_zones, self.n_zones, -1)  # [b, a]: rows b*n + a
        coarse[zones, :, :] = 0
        coarse[:, zones, :] = 0
        cw = self.coarse_wide.reshape(self.n_zones, self.n_zones)
        cw[zones, :] = 0
        cw[:, zones] = 0
        self.slot_free = self._free_slots()
        return int(drop.sum())

    # --- checkpoints ---

    _STATE_ARRAYS = (
        "last_occ", "born", "origin", "emitted", "active", "in_active",
        "n_active", "cam_gap", "dep_t", "dep_z", "dep_head", "arr_t", "arr_z", "arr_q",
        "slot_of", "slot_dst", "slot_born", "hist", "wide", "coarse", "coarse_wide", "stats",
    )  # fmt: skip

    def state(self) -> dict[str, np.ndarray | int | float]:
        """Everything needed to continue exactly where this estimator is (copies), for
        streaming checkpoints. Restore with :meth:`from_state` (same network and params)."""
        out: dict[str, np.ndarray | int | float] = {
            name: getattr(self, name).copy() for name in self._STATE_ARRAYS
        }
        out["released"] = self.released
        out["now"] = self.now
        out["next_maintain"] = NEVER if self._next_maintain is None else self._next_maintain
        return out

    def load_state(self, state: dict[str, np.ndarray | int | float]) -> None:
        """Replace this estimator's state with ``state`` (from :meth:`state`); shapes and
        dtypes must match this network and these params."""
        scalars = ("released", "next_maintain", "now")
        missing = [k for k in (*self._STATE_ARRAYS, *scalars) if k not in state]
        if missing:
            raise ValueError(f"transit state lacks {missing}")
        arrays = {}
        for name in self._STATE_ARRAYS:
            mine, theirs = getattr(self, name), np.asarray(state[name])
            if theirs.shape != mine.shape:
                raise ValueError(
                    f"transit state {name!r} has shape {theirs.shape}, expected {mine.shape} "
                    "(other network or params?)"
                )
            arrays[name] = theirs.astype(mine.dtype, copy=True)
        for name, value in arrays.items():
            setattr(self, name, value)
        self.slot_free = self._free_slots()
        self.released = int(state["released"])
        self.now = int(state["now"])
        nxt = int(state["next_maintain"])
        self._next_maintain = None if nxt == NEVER else nxt

    @classmethod
    def from_state(
        cls,
        network: Network,
        params: TransitParams | None,
        state: dict[str, np.ndarray | int | float],
    ) -> TransitEstimator:
        est = cls(network, params)
        est.load_state(state)
        return est

    # --- reading ---

    def _passing(self, z: np.ndarray, obs: np.ndarray, exp_: np.ndarray) -> np.ndarray:
        """Slots whose best band passes the link test and that hold enough evidence."""
        p = self.params
        passing: np.ndarray = (
            (z >= p.z_star)
            & (obs >= p.min_ratio * exp_)
            & (obs - exp_ >= p.min_excess)
            & (self.slot_dst >= 0)
            & (self.now - self.slot_born >= p.ticks(p.min_report_age_s))
        )
        return passing

    def zone_links(self) -> tuple[np.ndarray, ...]:
        """Slots (zone pairs) passing the test: (slot, z, centre bin, half-width, obs, exp)."""
        z, c, hw, obs, exp_ = self._scores()
        s = np.flatnonzero(self._passing(z, obs, exp_))
        return s, z[s], c[s], hw[s], obs[s], exp_[s]

    def directed(
        self,
        include_indirect: bool = False,
        overlaps: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
    ) -> list[DirectedTransit]:
        """Directed camera links (the zone pair with the best z stands for each), with
        transit-time quantiles in seconds. ``overlaps``: camera pairs known to overlap (from
        the exclusion counts), used as zero-lag legs when looking for indirect links."""
        p = self.params
        z, c, hw, obs, exp_ = self._scores()
        strong = self._passing(z, obs, exp_)
        weak = (self.slot_dst >= 0) & (z >= p.weak_z) & (obs >= p.weak_ratio * exp_)
        bin_s = self.bin_ticks * p.tick_s
        centres = (np.arange(self.n_bins) + 0.5) * bin_s
        src = self.zone_camera[np.arange(len(self.slot_dst)) // p.max_dest]
        dst = self.zone_camera[np.maximum(self.slot_dst, 0)]

        def best_slots(mask: np.ndarray) -> dict[tuple[int, int], int]:
            best: dict[tuple[int, int], int] = {}
            for s in np.flatnonzero(mask).tolist():
                key = (int(src[s]), int(dst[s]))
                if key not in best or z[s] > z[best[key]]:
                    best[key] = s
            return best

        def quantiles(s: int) -> list[float]:
            lo = max(0, int(c[s] - 2 * hw[s]))
            hi = min(self.n_bins, int(c[s] + 2 * hw[s] + 1))
            excess = np.clip(self.signal[s, lo:hi] - self.wide[s] * self._per_bin, 0, None)
            return _quantiles(excess, centres[lo:hi], (0.1, 0.5, 0.9))

        out: list[DirectedTransit] = []
        for (a, b), s in sorted(best_slots(strong).items()):
            p10, med, p90 = quantiles(s)
            out.append(
                DirectedTransit(a, b, float(z[s]), float(obs[s]), float(exp_[s]), med, p10, p90)
            )
        # Only legs that start where a link starts or end where one ends can explain a link
        # (mark_indirect); at 1,000 cameras the other weak pairs were most of this call.
        starts = np.zeros(self.network.n_cameras, dtype=np.bool_)
        ends = np.zeros_like(starts)
        starts[[d.src for d in out]] = True
        ends[[d.dst for d in out]] = True
        weak &= starts[src] | ends[dst]
        legs = {key: quantiles(s)[1] for key, s in best_slots(weak).items()}
        overlaps = set(overlaps) | self.overlap_like()
        out = mark_indirect(out, legs, overlaps, p.indirect_slack, bin_s, p.overlap_margin_s)
        return out if include_indirect else [d for d in out if not d.indirect]

    def overlap_like(self) -> set[tuple[int, int]]:
        """Camera pairs (a < b) whose lags in [-overlap_lag, 1 bin) hold significantly more
        arrivals than chance, in some zone pair and direction: people seen in both views at
        once, i.e. an overlap (used as a leg of indirect links only, never as a link)."""
        k = self.n_neg_bins + 1
        obs = self.hist[:, :k].sum(axis=1, dtype=np.float64)
        exp_ = self.wide * (self._per_bin * k)
        z = _lr_z(obs, exp_)
        ok = (self.slot_dst >= 0) & (z >= self.params.overlap_z)
        src = self.zone_camera[np.flatnonzero(ok) // self.params.max_dest]
        dst = self.zone_camera[self.slot_dst[ok]]
        return {(int(min(a, b)), int(max(a, b))) for a, b in zip(src, dst, strict=True)}

    def memory_bytes(self) -> int:
        arrays = (
            self.last_occ, self.born, self.origin, self.emitted, self.active, self.in_active,
            self.cam_gap, self.dep_t, self.dep_z, self.arr_t, self.arr_z, self.slot_of,
            self.slot_dst, self.slot_born, self.hist, self.wide, self.coarse, self.coarse_wide,
        )  # fmt: skip
        return int(sum(a.nbytes for a in arrays))

    def counters(self) -> dict[str, int]:
        return {
            "departures": int(self.stats[0]),
            "arrivals": int(self.stats[1]),
            "pair_updates": int(self.stats[2]),
            "untracked_pair_updates": int(self.stats[3]),
            "departures_overwritten": int(self.dep_head[1]),
            "arrivals_lost": int(self.arr_q[2]),
            "slots_used": int((self.slot_dst >= 0).sum()),
            "slots_released": self.released,
        }


def mark_indirect(
    links: list[DirectedTransit],
    legs: dict[tuple[int, int], float],
    overlaps: set[tuple[int, int]] | frozenset[tuple[int, int]],
    slack: float,
    bin_s: float,
    margin_s: float | None = None,
) -> list[DirectedTransit]:
    """Flag A→B when a walk through another camera X explains it.

    ``legs`` (src, dst) -> median lag of weaker directed evidence (a leg need not pass the
    link test itself to explain a longer link), besides the links themselves. Through two
    transit legs: m(A→X) + m(X→B) <= slack * m(A→B) + bin (X's dwell adds to the direct lag).
    Through an overlap (``overlaps``: camera pairs, either order) of X with B or with A, the
    transit leg A→X or X→B (from ``legs`` or the links) must be shorter than
    A→B by ``margin_s`` (default one bin), so that of two overlapping cameras linked to A only
    the farther one's link is dropped; through two overlaps any lag >= margin is explained.
    """
    margin = bin_s if margin_s is None else margin_s
    lag = dict(legs)
    for d in links:
        lag.setdefault((d.src, d.dst), d.median_s)
    ov_of: dict[int, set[int]] = {}
    for a, b in overlaps:
        ov_of.setdefault(a, set()).add(b)
        ov_of.setdefault(b, set()).add(a)
    out_of: dict[int, list[tuple[int, float]]] = {}
    for (a, x), m in lag.items():
        out_of.setdefault(a, []).append((x, m))

    def explained(a: int, b: int, m: float) -> bool:
        for x, m1 in out_of.get(a, []):
            m2 = lag.get((x, b))
            if x != b and m2 is not None and m1 + m2 <= slack * m + bin_s:
                return True
        for x in ov_of.get(a, set()) - {b}:  # A overlaps X, X→B
            m2 = 0.0 if x in ov_of.get(b, set()) else lag.get((x, b))
            if m2 is not None and m2 <= m - margin:
                return True
        for x in ov_of.get(b, set()) - {a}:  # A→X, X overlaps B
            m_ax = lag.get((a, x))
            if m_ax is not None and m_ax <= m - margin:
                return True
        return False

    return [replace(d, indirect=explained(d.src, d.dst, d.median_s)) for d in links]
