"""The tick loop: crowd -> true sightings -> noisy occupancy, without any JSON.

``Simulation.ticks()`` is the in-memory API for load tests and benchmarks; the writer
streams the same ticks to the contract's files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from camtopo.core.grid import Network
from camtopo.simulation.appearance import AppearanceConfig, Looks
from camtopo.simulation.cameras import CameraIndex
from camtopo.simulation.noise import Noise, NoiseConfig
from camtopo.simulation.people import Crowd, Routes
from camtopo.simulation.scenarios import Scenario, build_scenario, remount
from camtopo.simulation.truth import StaticTruth, TransitRecorder, static_truth, truth_json


@dataclass(frozen=True)
class CameraMove:
    """Camera ``camera`` (index) is re-mounted elsewhere at ``at_s`` simulated seconds
    (:func:`camtopo.simulation.scenarios.remount`, drawn from ``seed``)."""

    camera: int
    at_s: float
    seed: int = 0


@dataclass(frozen=True)
class Tick:
    """One frame of the whole network (a dataclass: a NamedTuple's ``index`` field would hide
    tuple.index)."""

    index: int
    t_ms: np.ndarray  # int64 (n_cameras,): each camera's own (skewed) clock
    available: np.ndarray  # bool (n_cameras,): False = offline (or, at mixed rates, no frame due)
    cam: np.ndarray  # int32 (k,): camera of each occupied window, sorted with window
    window: np.ndarray  # int32 (k,): local window index (row * cols + col)
    blobs: Blobs | None = None  # with appearance on: every blob, several per window possible


@dataclass(frozen=True)
class Blobs:
    """Detected blobs with what their camera reports of them (the appearance contract)."""

    cam: np.ndarray  # int32 (m,)
    window: np.ndarray  # int32 (m,): the window of the blob's feet
    hue: np.ndarray  # float64 (m, 8): hue histogram, sum 1 (all 0: nothing coloured)
    value: np.ndarray  # float64 (m,): mean brightness in [0, 1]


class Simulation:
    """A scenario run with people and detection noise, deterministic from ``seed``."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        noise: NoiseConfig | None = None,
        fps: int = 10,
        start_ms: int = 1000,
        warmup_s: float = 300.0,
        density: float = 1.0,
        moves: Sequence[CameraMove] = (),
        camera_fps: Sequence[int] | None = None,
        appearance: AppearanceConfig | None = None,
    ) -> None:
        """``fps``: the network's tick rate (network.json's ``fps``); ``camera_fps``: each
        camera's own frame rate (None: all at ``fps``). With mixed rates the world steps at the
        fastest rate (``self.fps``) and a camera sends a frame at the step nearest each of its
        frame times, stamped with that frame time: its cadence stays regular, and the world
        it shows is at most half a step (17 ms at 30 fps) from it. ``appearance``: blobs also
        carry hue and brightness (:mod:`camtopo.simulation.appearance`); the occupancy is the
        same with or without."""
        self.scenario = scenario
        self.seed = seed
        cams = scenario.cameras
        rates = tuple(camera_fps) if camera_fps is not None else ()
        if rates and len(rates) != cams.n:
            raise ValueError(f"camera_fps needs {cams.n} rates, got {len(rates)}")
        self.network = Network(cams.ids, tuple(cams.grid for _ in cams.ids), fps, rates)
        mixed = self.network.mixed_rates
        self.fps = max((fps, *rates)) if mixed else fps  # steps per second
        self._rates = np.asarray(rates, dtype=np.int64) if mixed else None
        self.dt = 1.0 / self.fps
        self.start_ms = start_ms
        self.cameras = cams
        self.index = CameraIndex.build(cams, scenario.world.bounds)
        rng = np.random.default_rng([seed, 2])
        routes = Routes.plan(
            scenario.world, scenario.entries, rng, trip_radius_m=scenario.trip_radius_m
        )
        self.crowd = Crowd(
            routes,
            scenario.entries,
            scenario.entry_weight,
            scenario.rate_per_s * density,
            scenario.profile,
            np.random.default_rng([seed, 3]),
        )
        self.noise = Noise(
            noise or NoiseConfig(), cams.n, self.fps, np.random.default_rng([seed, 4])
        )
        self.transits = TransitRecorder(self.dt, np.random.default_rng([seed, 5]))
        self.looks = (
            Looks(appearance, cams.n, np.random.default_rng([seed, 7])) if appearance else None
        )
        self.tick_index = 0
        # Each layout: (first tick, scenario with those camera mounts, its camera index).
        self.layouts: list[tuple[int, Scenario, CameraIndex]] = [(0, scenario, self.index)]
        self.moves = sorted(moves, key=lambda m: m.at_s)
        for m in self.moves:
            if not 0 <= m.camera < cams.n or m.at_s <= 0:
                raise ValueError(f"bad camera move {m}: camera 0..{cams.n - 1}, at_s > 0")
            last = self.layouts[-1][1]
            moved = replace(last, cameras=remount(last, m.camera, m.seed))
            index = CameraIndex.build(moved.cameras, moved.world.bounds)
            self.layouts.append((round(m.at_s * self.fps), moved, index))
        self._next_layout = 1
        # Warm up in 1 s steps so the first frame already shows a steady-state crowd.
        for k in range(int(warmup_s)):
            self.crowd.step(1.0)
            self.crowd.spawn(-warmup_s + k, 1.0)

    @classmethod
    def from_name(cls, scenario: str, n_cameras: int, seed: int = 0, **kwargs: Any) -> Simulation:
        return cls(build_scenario(scenario, n_cameras, seed), seed=seed, **kwargs)

    def sightings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """True (person slot, camera, u, v) of everybody seen by some camera right now."""
        pts = self.crowd.positions()
        slot, cam = self.index.candidates(pts)
        mask, u, v = self.cameras.visible_pairs(cam, pts[slot])
        return slot[mask], cam[mask], u[mask], v[mask]

    def step(self) -> Tick:
        """Advance one frame and return its (noisy) occupancy."""
        t = self.tick_index
        while self._next_layout < len(self.layouts) and self.layouts[self._next_layout][0] <= t:
            _, self.scenario, self.index = self.layouts[self._next_layout]
            self.cameras = self.scenario.cameras
            self.__dict__.pop("static_truth", None)  # the truth of the new layout
            self._next_layout += 1
        self.crowd.step(self.dt)
        self.crowd.spawn(t * self.dt, self.dt)
        slot, cam, u, v = self.sightings()
        self.transits.update(self.crowd, t, slot, cam)
        available = self.noise.step_outages().copy()
        dcam, du, dv, kept, blob = self.noise.detections(cam, u, v)
        win = self.cameras.windows(du, dv)
        fcam, fwin = self.noise.false_blobs(self.network.max_windows_per_camera)
        blobs = self._blobs(slot[kept], blob, dcam, win, fcam, fwin) if self.looks else None
        nw = self.network.max_windows_per_camera
        key = np.unique(
            np.concatenate([dcam.astype(np.int64) * nw + win, fcam.astype(np.int64) * nw + fwin])
        )
        if self._rates is None:
            t_ms = np.rint(self.start_ms + t * 1000.0 / self.fps + self.noise.skew_ms)
        else:
            frame, due = self._frames_due(t)
            available &= due
            t_ms = np.rint(self.start_ms + frame * 1000.0 / self._rates + self.noise.skew_ms)
        t_ms = t_ms.astype(np.int64)
        self.tick_index += 1
        cams, windows = (key // nw).astype(np.int32), (key % nw).astype(np.int32)
        return Tick(t, t_ms, available, cams, windows, blobs)

    def _blobs(
        self,
        slot: np.ndarray,  # person slot of each detected foot
        blob: np.ndarray,  # its blob
        cam: np.ndarray,  # camera of each blob
        window: np.ndarray,
        false_cam: np.ndarray,
        false_window: np.ndarray,
    ) -> Blobs:
        """What the cameras report of this tick's blobs: a merged blob shows its people's mean
        look, a false blob somebody's; then each camera's transfer and noise."""
        assert self.looks is not None
        hue, value = self.looks.of(self.crowd.pid[slot])
        n = len(cam)
        size = np.maximum(np.bincount(blob, minlength=n), 1)[:, None]
        mean_hue = np.zeros((n, hue.shape[1]))
        np.add.at(mean_hue, blob, hue)
        mean_value = np.bincount(blob, value, minlength=n) / size[:, 0]
        false_hue, false_value = self.looks.random(len(false_cam))
        all_cam = np.concatenate([cam, false_cam]).astype(np.int32)
        seen_hue, seen_value = self.looks.seen(
            all_cam,
            np.concatenate([mean_hue / size, false_hue]),
            np.concatenate([mean_value, false_value]),
        )
        return Blobs(all_cam, np.concatenate([window, false_window]).astype(np.int32),
                     seen_hue, seen_value)  # fmt: skip

    def _frames_due(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Each camera's frame number nearest step ``step`` and whether it is sent at this
        step: frame n (at n / rate s) is sent at the step nearest it, halves up, so a camera at
        the step rate sends at every step and a slower one at most once a step."""
        assert self._rates is not None
        rates, steps = self._rates, self.fps
        # n / rate in [(step - 1/2) / steps, (step + 1/2) / steps), in whole numbers
        frame = -(-((2 * step - 1) * rates) // (2 * steps))
        return frame, 2 * frame * steps < (2 * step + 1) * rates

    def ticks(self, n_ticks: int | None = None) -> Iterator[Tick]:
        """Yield ``n_ticks`` successive frames (forever if None)."""
        k = 0
        while n_ticks is None or k < n_ticks:
            yield self.step()
            k += 1

    @cached_property
    def static_truth(self) -> StaticTruth:
        return static_truth(self.scenario, self.index)

    def truth(self) -> dict[str, Any]:
        """The contract's truth.json content, with transit times from the walkers so far.

        With camera moves it is the truth of the layout now, plus ``moves`` and ``before``
        (the window overlaps and camera links of the layout before the first move)."""
        out = truth_json(self.network, self.static_truth, self.transits)
        if self.moves:
            _, first, index = self.layouts[0]
            before = truth_json(self.network, static_truth(first, index), self.transits)
            out["moves"] = [
                {"camera": self.network.cameras[m.camera], "at_s": m.at_s} for m in self.moves
            ]
            out["before"] = {k: before[k] for k in ("window_overlaps", "camera_links")}
        return out
