"""Network simulator with ground truth: walkways, cameras, people, noise and the contract's files.

Quick use::

    from camtopo.simulation import Simulation
    sim = Simulation.from_name("campus", 100, seed=1)
    for tick in sim.ticks(100):
        ...  # tick.cam, tick.window: occupied (camera, window) pairs of this frame
    truth = sim.truth()
"""

from camtopo.simulation.engine import CameraMove, Simulation, Tick
from camtopo.simulation.noise import NoiseConfig
from camtopo.simulation.scenarios import Scenario, build_scenario
from camtopo.simulation.writer import write_scenario

__all__ = [
    "CameraMove",
    "NoiseConfig",
    "Scenario",
    "Simulation",
    "Tick",
    "build_scenario",
    "write_scenario",
]
