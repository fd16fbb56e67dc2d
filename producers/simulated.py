"""Adapter from the simulator (:mod:`camtopo.simulation`) to producer feeds.

One :class:`SimulatedNetwork` steps the shared simulation once per tick; each camera's feed
then reads its part of that tick: either the simulator's occupancy directly (``exact``) or
the camera's rendered JPEG frame through the full vision path (``render``). A camera the
simulator has offline yields ``MISSING`` -- a dark camera, never an empty frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from camtopo.core.grid import Grid
from camtopo.simulation.engine import Simulation, Tick
from camtopo.simulation.noise import NoiseConfig
from producers.camera import FeedFrame, VisionFeed
from producers.detection import DetectionParams
from producers.render import RenderConfig, SceneRenderer, figures_by_camera
from producers.sources import MISSING, OK, FrameRead, decode_jpeg

# Rendering makes its own detection errors: keep only the simulator's outages and skew.
RENDER_NOISE = NoiseConfig(miss_prob=0.0, false_blob_rate=0.0, merge_px=0.0)


class SimulatedNetwork:
    """Steps a :class:`Simulation` once per producer tick, renders frames on demand."""

    def __init__(
        self,
        sim: Simulation,
        epoch_ms: int,
        render: bool = False,
        render_config: RenderConfig | None = None,
        cameras: list[int] | None = None,
    ) -> None:
        self.sim = sim
        self.epoch_ms = epoch_ms  # simulator clocks start near 0: shift to wall-clock time
        self.cameras = list(range(sim.cameras.n)) if cameras is None else cameras
        self.renderer = (
            SceneRenderer(sim.cameras, seed=sim.seed, config=render_config) if render else None
        )
        self.tick: Tick | None = None
        self._occupied: dict[int, tuple[int, ...]] = {}
        self._jpegs: dict[int, bytes] = {}

    @classmethod
    def build(
        cls,
        scenario: str,
        n_cameras: int,
        seed: int,
        epoch_ms: int,
        render: bool = False,
        noise: bool = True,
        density: float = 1.0,
        grid: Grid | None = None,
        fps: int = 10,
    ) -> SimulatedNetwork:
        from camtopo.simulation.scenarios import build_scenario

        cfg = NoiseConfig.off() if not noise else RENDER_NOISE if render else NoiseConfig()
        sim = Simulation(
            build_scenario(scenario, n_cameras, seed, grid),
            seed=seed,
            noise=cfg,
            fps=fps,
            density=density,
        )
        return cls(sim, epoch_ms, render=render)

    def advance(self) -> None:
        """Step the simulation one frame (call once per producer tick, before the feeds)."""
        tick = self.sim.step()
        self.tick = tick
        occupied: dict[int, list[int]] = {}
        for c, w in zip(tick.cam.tolist(), tick.window.tolist(), strict=True):
            occupied.setdefault(c, []).append(w)
        self._occupied = {c: tuple(ws) for c, ws in occupied.items()}
        self._jpegs = {}
        if self.renderer is not None:
            t_s = tick.index / self.sim.fps
            figs = figures_by_camera(self.sim, self.cameras)
            for c in self.cameras:
                if bool(tick.available[c]):
                    self._jpegs[c] = self.renderer.render_jpeg(c, t_s, figs[c])

    def t_ms(self, camera: int) -> int:
        assert self.tick is not None, "advance() first"
        return self.epoch_ms + int(self.tick.t_ms[camera])

    def available(self, camera: int) -> bool:
        assert self.tick is not None, "advance() first"
        return bool(self.tick.available[camera])

    def exact_feed(self, camera: int) -> ExactFeed:
        return ExactFeed(self, camera)

    def render_feed(self, camera: int, params: DetectionParams | None = None) -> VisionFeed:
        if self.renderer is None:
            raise ValueError("render feeds need SimulatedNetwork(render=True)")
        return VisionFeed(
            self.sim.cameras.ids[camera],
            RenderedSource(self, camera),
            self.sim.cameras.grid,
            params,
            clock=lambda _k: self.t_ms(camera),
        )


@dataclass
class ExactFeed:
    """The simulator's occupancy of one camera, no vision involved."""

    network: SimulatedNetwork
    index: int
    live: bool = False

    @property
    def camera(self) -> str:
        return self.network.sim.cameras.ids[self.index]

    @property
    def grid(self) -> Grid:
        return self.network.sim.cameras.grid

    def next_frame(self, tick: int) -> FeedFrame:
        t_ms = self.network.t_ms(self.index)
        if not self.network.available(self.index):
            return FeedFrame(t_ms, MISSING, (), "simulated outage")
        return FeedFrame(t_ms, OK, self.network._occupied.get(self.index, ()))

    def close(self) -> None:
        pass


class RenderedSource:
    """The rendered JPEG frames of one simulated camera, as a frame source."""

    live = False

    def __init__(self, network: SimulatedNetwork, camera: int) -> None:
        self.network = network
        self.camera = camera
        self.name = f"rendered {network.sim.cameras.ids[camera]}"

    def read(self) -> FrameRead:
        jpeg = self.network._jpegs.get(self.camera)
        if jpeg is None:
            return FrameRead(MISSING, detail="simulated outage")
        return decode_jpeg(jpeg, self.name)

    def close(self) -> None:
        pass
