"""``camtopo baseline``: a peer baseline in the style of Makris, Ellis & Black (CVPR 2004),
"Bridging the gaps between cameras" — departure/arrival cross-correlation, no tracking.

From the occupancy trace alone:

1. per camera per tick, the number of occupied windows (all windows, or with
   ``events="border"`` only the grid's border windows — the entry/exit zones where people
   enter and leave a view); ticks without a line are missing data;
2. *arrivals* are increases of that number between two consecutive ticks that both have
   data, *departures* are decreases; both are summed into bins of ``bin_s``;
3. each binned signal is high-passed (its ``detrend_s`` moving average removed) so that the
   slow rise and fall of the crowd over the day does not correlate every pair;
4. departures of every camera A are cross-correlated with arrivals of every camera B with
   the FFT, for lags in ``[-background_lag_s, +background_lag_s]``;
5. a direction A -> B is a link when the correlation's peak within
   ``[min_lag_s, max_lag_s]`` stands out from the whole lag range (Makris' "significant
   peak"): robust z = (peak - median) / (1.4826 MAD) > ``z_threshold``;
6. a camera pair is linked when either direction is; its kind is ``overlap`` when the peak
   lag is at most ``overlap_lag_s`` (a person who crosses common ground appears in B before
   or as they leave A: lag <= 0), else ``transit`` with ``transit_s`` = the peak lag.

Cost: reading is one pass with O(cameras x ticks) bytes held (int8 counts); the
correlation is O(cameras² x bins x log bins), done in blocks of source cameras so memory
stays O(block x cameras x bins). The baseline has no window level: ``window_edges`` is
empty in its ``topology.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camtopo.core.grid import Network, NetworkError
from camtopo.core.ticks import frame_ticks
from camtopo.formats.traces import FrameLine, Progress, TraceError, read_trace

FORMAT = "camtopo-topology/1"
_CHUNK_TICKS = 6000  # occupancy is stored in chunks of 10 min at 10 FPS
_EARLY_TICKS = 100  # frames up to this many ticks before the first one are accepted


@dataclass(frozen=True)
class BaselineParams:
    """Knobs of the cross-correlation baseline (defaults: see the module doc)."""

    bin_s: float = 1.0
    max_lag_s: float = 60.0
    min_lag_s: float = -10.0  # overlapping views: B's arrival precedes A's departure
    background_lag_s: float = 180.0
    z_threshold: float = 6.0  # above the largest null-pair z seen on a 100-camera hour (5.8)
    overlap_lag_s: float = 1.0
    detrend_s: float = 60.0
    events: str = "all"  # "all" windows or "border" windows (entry/exit zones)
    block: int = 8  # source cameras per FFT block (memory: block x cameras x bins)

    def __post_init__(self) -> None:
        if self.bin_s <= 0:
            raise ValueError(f"bin_s must be positive, got {self.bin_s}")
        if not self.min_lag_s < self.max_lag_s <= self.background_lag_s:
            raise ValueError(
                f"need min_lag_s < max_lag_s <= background_lag_s, got {self.min_lag_s}, "
                f"{self.max_lag_s}, {self.background_lag_s}"
            )
        if -self.min_lag_s > self.background_lag_s:
            raise ValueError("min_lag_s must lie within the background lag range")
        if self.events not in ("all", "border"):
            raise ValueError(f"events must be 'all' or 'border', got {self.events!r}")
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block}")


# --- reading ---------------------------------------------------------------------------------


@dataclass
class OccupancyCounts:
    """int8 (n_cameras, n_ticks): occupied windows per camera and tick; -1 = no data."""

    counts: np.ndarray
    first_tick: int  # absolute tick (t_ms / tick_ms) of column 0
    frames: int
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)


def _border_masks(network: Network) -> list[np.ndarray]:
    masks = []
    for grid in network.grids:
        m = np.zeros(grid.n_windows, dtype=bool)
        m[: grid.cols] = m[-grid.cols :] = True
        m[:: grid.cols] = m[grid.cols - 1 :: grid.cols] = True
        masks.append(m)
    return masks


def read_counts(
    trace: str | Path,
    network: Network,
    events: str = "all",
    *,
    skip_bad: bool = False,
    progress: bool = True,
) -> OccupancyCounts:
    """One pass over a trace: occupied-window counts per camera and tick (see module doc)."""
    trace = Path(trace)
    tick_ms = 1000.0 / network.fps
    border = _border_masks(network) if events == "border" else None
    n_cam = network.n_cameras
    chunks: list[np.ndarray] = []
    base: int | None = None  # absolute tick of column 0
    frames = 0
    skipped: dict[str, int] = {}
    examples: dict[str, str] = {}
    position = Progress()
    bar = None
    size = trace.stat().st_size
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="baseline read",
            file=sys.stderr,
        )

    def reject(error: TraceError) -> None:
        if not skip_bad:
            raise error
        skipped[error.reason] = skipped.get(error.reason, 0) + 1
        examples.setdefault(error.reason, str(error))

    for n, item in enumerate(read_trace(trace, position), start=1):
        if bar is not None and n % 8192 == 0:
            bar.update(position.bytes - bar.n)
        if isinstance(item, TraceError):
            reject(item)
            continue
        line: FrameLine = item
        try:
            cam = network.camera_index(line.camera)
        except NetworkError as exc:
            reject(TraceError(line.where, "unknown_camera", str(exc)))
            continue
        n_windows = network.grids[cam].n_windows
        if line.occupied and not 0 <= line.occupied[0] <= line.occupied[-1] < n_windows:
            reject(
                TraceError(
                    line.where,
                    "window_outside_grid",
                    f"window outside the {n_windows}-window grid of {line.camera!r}: "
                    f"{line.occupied}",
                )
            )
            continue
        tick = int(line.t_ms // tick_ms)
        stop = tick + 1
        merge = network.rate(cam) != network.fps
        if network.mixed_rates:
            # Cameras at their own rates: frames on the network's ticks as the estimator maps
            # them (a slower camera's frame held over its period); of a faster camera's
            # frames of one tick the first counts, as if sampled at the network's rate. The
            # events are count changes between ticks, and the busiest frame of each tick
            # smooths them away (campus-100 at 15/25/30 fps on 10 fps ticks: overlap recall
            # 0.04 with the busiest frame, 0.30 with the first).
            tick, stop = frame_ticks(line.t_ms, network.fps, network.rate(cam))
        if base is None:
            base = tick - _EARLY_TICKS
        col = tick - base
        if col < 0:
            reject(
                TraceError(
                    line.where,
                    "out_of_order",
                    f"t_ms {line.t_ms} is more than {_EARLY_TICKS} ticks before the "
                    f"trace's first frame",
                )
            )
            continue
        k, off = divmod(col, _CHUNK_TICKS)
        while len(chunks) <= (stop - 1 - base) // _CHUNK_TICKS:
            chunks.append(np.full((n_cam, _CHUNK_TICKS), -1, dtype=np.int8))
        if chunks[k][cam, off] >= 0 and not merge:
            reject(
                TraceError(
                    line.where,
                    "duplicate_frame",
                    f"camera {line.camera!r} already has a frame at tick {tick}",
                )
            )
            continue
        if border is not None:
            value = int(border[cam][line.occupied].sum()) if line.occupied else 0
        else:
            value = len(line.occupied)
        for c in range(col, stop - base):
            k, off = divmod(c, _CHUNK_TICKS)
            if chunks[k][cam, off] < 0:
                chunks[k][cam, off] = min(value, 127)
        frames += 1
    if bar is not None:
        bar.update(size - bar.n)
        bar.close()
    if base is None:
        raise ValueError(f"{trace}: no frames in the trace")
    counts = np.concatenate(chunks, axis=1)
    # Trim the unused columns at both ends (the early allowance and the last chunk's tail).
    present = np.flatnonzero((counts >= 0).any(axis=0))  # not empty: base is set
    lo, hi = int(present[0]), int(present[-1]) + 1
    return OccupancyCounts(counts[:, lo:hi], base + lo, frames, skipped, examples)


# --- events and correlation ------------------------------------------------------------------


def event_signals(counts: np.ndarray, bin_ticks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(departures, arrivals, covered): float64 (n_cameras, n_bins) each.

    Events are count changes between consecutive ticks that both have data; ``covered`` is
    the fraction of each bin's ticks with data (0 = camera offline for the whole bin).
    """
    n_cam, n_ticks = counts.shape
    n_bins = -(-n_ticks // bin_ticks)
    pad = n_bins * bin_ticks - n_ticks
    c = np.pad(counts.astype(np.int16), ((0, 0), (0, pad)), constant_values=-1)
    valid = (c[:, 1:] >= 0) & (c[:, :-1] >= 0)
    d = np.where(valid, c[:, 1:] - c[:, :-1], 0)
    d = np.pad(d, ((0, 0), (1, 0)))  # event at the later tick
    arr = np.maximum(d, 0).reshape(n_cam, n_bins, bin_ticks).sum(axis=2)
    dep = np.maximum(-d, 0).reshape(n_cam, n_bins, bin_ticks).sum(axis=2)
    covered = (c >= 0).reshape(n_cam, n_bins, bin_ticks).mean(axis=2)
    return dep.astype(np.float64), arr.astype(np.float64), covered


def high_pass(signal: np.ndarray, covered: np.ndarray, width: int) -> np.ndarray:
    """Remove each row's moving average over ``width`` bins (only over covered bins), and
    zero the bins without data so that outages add nothing to the correlation."""
    if width <= 1:
        out = signal - signal.mean(axis=1, keepdims=True)
        return np.where(covered > 0, out, 0.0)
    has = (covered > 0).astype(np.float64)

    def smooth(x: np.ndarray) -> np.ndarray:
        cs = np.cumsum(np.pad(x, ((0, 0), (width // 2 + 1, width - width // 2 - 1))), axis=1)
        window_sums: np.ndarray = cs[:, width:] - cs[:, :-width]
        return window_sums

    mean = smooth(signal * has) / np.maximum(smooth(has), 1.0)
    return np.where(has > 0, signal - mean, 0.0)


@dataclass
class PairStats:
    """Per ordered pair (A departs -> B arrives): float64 (n, n) each; diagonal NaN."""

    z: np.ndarray
    lag_s: np.ndarray
    rho: np.ndarray  # correlation coefficient at the peak


def cross_correlate(
    dep: np.ndarray,
    arr: np.ndarray,
    params: BaselineParams,
    progress: bool = False,
) -> PairStats:
    """Departure x arrival cross-correlation of all ordered camera pairs, in FFT blocks."""
    n, n_bins = dep.shape
    bg = round(params.background_lag_s / params.bin_s)
    lo = round(params.min_lag_s / params.bin_s)
    hi = round(params.max_lag_s / params.bin_s)
    size = _fast_length(n_bins + bg + 1)
    f_dep = np.conj(np.fft.rfft(dep, size, axis=1))
    f_arr = np.fft.rfft(arr, size, axis=1)
    norm = np.sqrt(np.outer((dep**2).sum(axis=1), (arr**2).sum(axis=1)))
    lags = np.arange(-bg, bg + 1)
    search = (lags >= lo) & (lags <= hi)
    z = np.full((n, n), np.nan)
    lag = np.full((n, n), np.nan)
    rho = np.full((n, n), np.nan)
    blocks: Iterable[int] = range(0, n, params.block)
    if progress:
        from tqdm import tqdm

        blocks = tqdm(blocks, desc="baseline xcorr", unit="block", file=sys.stderr)
    for s in blocks:
        e = min(s + params.block, n)
        r = np.fft.irfft(f_dep[s:e, None, :] * f_arr[None, :, :], size, axis=2)
        # Circular lags: index l for l >= 0, size + l for l < 0.
        r = np.concatenate([r[:, :, size - bg :], r[:, :, : bg + 1]], axis=2)
        med = np.median(r, axis=2)
        mad = np.median(np.abs(r - med[:, :, None]), axis=2) * 1.4826
        window = r[:, :, search]
        k = np.argmax(window, axis=2)
        peak = np.take_along_axis(window, k[:, :, None], axis=2)[:, :, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            z[s:e] = (peak - med) / mad
            rho[s:e] = peak / norm[s:e]
        lag[s:e] = lags[search][k] * params.bin_s
    np.fill_diagonal(z, np.nan)
    z[~np.isfinite(z)] = np.nan
    return PairStats(z, lag, rho)


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (pocketfft is fastest on those)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


@dataclass
class BaselineEdge:
    a: str
    b: str
    kind: str
    weight: float  # correlation coefficient at the peak of the stronger direction
    z: float
    lag_s: float  # peak lag of the stronger direction (a departs -> b arrives)
    transit_s: float | None
    directions: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "kind": self.kind,
            "weight": round(self.weight, 4),
            "transit_s": self.transit_s,
            "z": round(self.z, 2),
            "lag_s": self.lag_s,
            "directions": self.directions,
        }


def links(network: Network, stats: PairStats, params: BaselineParams) -> list[BaselineEdge]:
    """Camera pairs with a significant peak in either direction (see module doc)."""
    z = np.nan_to_num(stats.z, nan=-np.inf)
    sig = z > params.z_threshold
    out: list[BaselineEdge] = []
    ids = network.cameras
    for a, b in zip(*np.nonzero(np.triu(sig | sig.T, k=1)), strict=True):
        a, b = int(a), int(b)
        # Name the stronger direction's source first.
        src, dst = (a, b) if z[a, b] >= z[b, a] else (b, a)
        lag = float(stats.lag_s[src, dst])
        kind = "overlap" if lag <= params.overlap_lag_s else "transit"
        directions = {
            f"{ids[s]}->{ids[t]}": {
                "z": round(float(stats.z[s, t]), 2),
                "lag_s": float(stats.lag_s[s, t]),
                "significant": bool(sig[s, t]),
            }
            for s, t in ((src, dst), (dst, src))
            if np.isfinite(stats.z[s, t])
        }
        out.append(
            BaselineEdge(
                a=ids[src],
                b=ids[dst],
                kind=kind,
                weight=float(stats.rho[src, dst]),
                z=float(z[src, dst]),
                lag_s=lag,
                transit_s=lag if kind == "transit" else None,
                directions=directions,
            )
        )
    return out


# --- the whole run ---------------------------------------------------------------------------


@dataclass
class BaselineResult:
    edges: list[BaselineEdge]
    history: list[dict[str, Any]]
    observed_s: float
    frames: int
    skipped: dict[str, int]
    examples: dict[str, str]
    elapsed_s: float
    params: BaselineParams


def estimate_links(
    counts: np.ndarray, network: Network, params: BaselineParams, progress: bool = False
) -> list[BaselineEdge]:
    """Links from int8 (n_cameras, n_ticks) occupancy counts (-1 = no data)."""
    bin_ticks = max(1, round(params.bin_s * network.fps))
    dep, arr, covered = event_signals(counts, bin_ticks)
    width = max(1, round(params.detrend_s / params.bin_s))
    dep, arr = high_pass(dep, covered, width), high_pass(arr, covered, width)
    return links(network, cross_correlate(dep, arr, params, progress), params)


def baseline_trace(
    trace: str | Path,
    network: Network,
    params: BaselineParams | None = None,
    *,
    skip_bad: bool = False,
    snapshot_every_s: float = 0.0,
    progress: bool = True,
) -> BaselineResult:
    """Run the baseline over a trace; with ``snapshot_every_s`` also over each prefix of that
    many simulated seconds, so that accuracy can be scored against observed time."""
    params = params or BaselineParams()
    started = time.perf_counter()
    occ = read_counts(trace, network, params.events, skip_bad=skip_bad, progress=progress)
    n_ticks = occ.counts.shape[1]
    observed_s = n_ticks / network.fps
    history: list[dict[str, Any]] = []
    if snapshot_every_s:
        cuts = np.arange(snapshot_every_s, observed_s, snapshot_every_s)
        for t_s in cuts:
            # A prefix too short for the background lag range cannot be scored.
            prefix = occ.counts[:, : round(t_s * network.fps)]
            edges = (
                estimate_links(prefix, network, params) if t_s > 2 * params.background_lag_s else []
            )
            history.append(
                {
                    "t_s": float(t_s),
                    "window_pairs": [],
                    "camera_links": [[e.a, e.b, e.kind] for e in edges],
                }
            )
    edges = estimate_links(occ.counts, network, params, progress)
    if snapshot_every_s:
        history.append(
            {
                "t_s": observed_s,
                "window_pairs": [],
                "camera_links": [[e.a, e.b, e.kind] for e in edges],
            }
        )
    return BaselineResult(
        edges,
        history,
        observed_s,
        occ.frames,
        occ.skipped,
        occ.examples,
        time.perf_counter() - started,
        params,
    )


def topology_json(network: Network, result: BaselineResult) -> dict[str, Any]:
    """The same shape as ``camtopo estimate``'s topology.json (no window level)."""
    return {
        "format": FORMAT,
        "estimator": "baseline-xcorr",
        "network": network.to_json(),
        "settings": asdict(result.params),
        "observed_s": result.observed_s,
        "input": {"frames": result.frames, "skipped": result.skipped, "examples": result.examples},
        "window_edges": [],
        "camera_edges": [e.to_json() for e in result.edges],
        "history": result.history,
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = BaselineParams()
    p = sub.add_parser(
        "baseline",
        help="peer baseline: departure/arrival cross-correlation (Makris et al. 2004)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("trace", type=Path, help="occupancy.jsonl (contract) or .avro container file")
    p.add_argument("--network", help="network.json (default: next to the trace)")
    p.add_argument("-o", "--out", type=Path, default=Path("topology.json"))
    p.add_argument("--bin", type=float, default=d.bin_s, help="event bin width, s")
    p.add_argument("--max-lag", type=float, default=d.max_lag_s, help="largest transit lag, s")
    p.add_argument("--min-lag", type=float, default=d.min_lag_s, help="most negative lag, s")
    p.add_argument(
        "--background-lag",
        type=float,
        default=d.background_lag_s,
        help="lag range (±s) of the correlation's background",
    )
    p.add_argument("--z", type=float, default=d.z_threshold, help="significance threshold")
    p.add_argument(
        "--overlap-lag",
        type=float,
        default=d.overlap_lag_s,
        help="peak lags up to this (s) mean overlap",
    )
    p.add_argument("--detrend", type=float, default=d.detrend_s, help="high-pass window, s")
    p.add_argument(
        "--events",
        choices=["all", "border"],
        default=d.events,
        help="count all windows, or only border windows (entry/exit zones)",
    )
    p.add_argument("--skip-bad", action="store_true", help="count and skip bad input")
    p.add_argument(
        "--snapshot-every",
        type=float,
        default=0.0,
        metavar="S",
        help="also estimate every S simulated s (accuracy curves)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from camtopo.estimate import find_network

    network = find_network(args.trace, args.network)
    params = BaselineParams(
        bin_s=args.bin,
        max_lag_s=args.max_lag,
        min_lag_s=args.min_lag,
        background_lag_s=args.background_lag,
        z_threshold=args.z,
        overlap_lag_s=args.overlap_lag,
        detrend_s=args.detrend,
        events=args.events,
    )
    result = baseline_trace(
        args.trace,
        network,
        params,
        skip_bad=args.skip_bad,
        snapshot_every_s=args.snapshot_every,
        progress=not args.quiet,
    )
    args.out.write_text(json.dumps(topology_json(network, result)))
    kinds = {k: sum(e.kind == k for e in result.edges) for k in ("overlap", "transit")}
    print(
        f"{result.frames} frames, {result.observed_s / 3600:.2f} h observed in "
        f"{result.elapsed_s:.1f} s: {len(result.edges)} camera edges "
        f"({kinds['overlap']} overlap, {kinds['transit']} transit) -> {args.out}"
    )
    if result.skipped:
        print("skipped bad input: " + ", ".join(f"{k}={v}" for k, v in result.skipped.items()))
    return 0
