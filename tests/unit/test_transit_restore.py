"""Transit evidence across a restore: a block's earlier ticks can be cut off, and an estimator
restored from a transit state taken later than its counts feeds it only the ticks it lacks."""

from __future__ import annotations

import numpy as np

from camtopo.core.grid import Grid, Network
from camtopo.core.ticks import OccupancyBuffer
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors.trace import tick_frames


def test_since_drops_the_earlier_ticks_of_a_block() -> None:
    net = Network.uniform(["a", "b"], Grid(cols=3, rows=2, width=30, height=20))
    buf = OccupancyBuffer(net, 1, 1)
    for t in range(64):
        buf.add(0, t, [t % 6] if t % 3 else [])
        buf.add(1, t, [0] if t >= 50 else [])
    (block,) = list(buf.flush())
    cut = block.since(40)
    assert (cut.start_tick, cut.n_ticks) == (40, 24)
    for w, bits in zip(cut.occ_windows.tolist(), cut.occ_bits.tolist(), strict=True):
        k = int(np.flatnonzero(block.occ_windows == w)[0])
        assert bits == int(block.occ_bits[k]) >> 40
    gone = set(block.occ_windows.tolist()) - set(cut.occ_windows.tolist())
    for w in gone:  # windows only occupied before tick 40 are dropped, not kept empty
        k = int(np.flatnonzero(block.occ_windows == w)[0])
        assert int(block.occ_bits[k]) >> 40 == 0
    assert block.since(0) is block
    assert block.since(64).n_ticks == 0 and block.since(64).occ_windows.size == 0


def test_restored_transit_state_skips_the_ticks_it_already_has() -> None:
    settings = Settings()
    sim = Simulation.from_name("branching", 20, seed=3)
    ticks = [(tk.index, tick_frames(tk)) for tk in sim.ticks(3000)]

    def feed(est: TopologyEstimator, part: list, until: int) -> None:
        for index, frames in part:
            for cam, occ in frames.items():
                est.buffer.add(cam, index, occ)
        est.advance(until)

    whole = TopologyEstimator(sim.network, settings.estimator_parameters())
    feed(whole, ticks, ticks[-1][0])
    # A first run stops at tick 2000; its transit state is saved at tick 2000 but (as with a
    # spread checkpoint) its counts only at tick 1500: the restored run re-feeds 1500..2000.
    first = TopologyEstimator(sim.network, settings.estimator_parameters())
    feed(first, ticks[:2000], ticks[2000][0])
    assert first.transit is not None
    state, through = first.transit.state(), first.transit_through
    restored = TopologyEstimator(sim.network, settings.estimator_parameters())
    assert restored.transit is not None
    restored.transit.load_state(state)
    restored.transit_through = through
    feed(restored, ticks[1500:], ticks[-1][0])
    a, b = whole.transit, restored.transit
    assert whole.transit is not None and a is not None
    assert a.stats[1] > 50, "too few arrivals for the comparison to mean anything"
    for name in ("hist", "wide", "stats", "dep_t", "arr_t", "slot_dst"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    # Without the skip, the re-fed ticks would have been counted twice.
    naive = TopologyEstimator(sim.network, settings.estimator_parameters())
    assert naive.transit is not None
    naive.transit.load_state(state)
    feed(naive, ticks[1500:], ticks[-1][0])
    assert not np.array_equal(naive.transit.stats, a.stats)


def test_transit_state_does_not_depend_on_how_ticks_were_batched() -> None:
    """Streaming closes ranges one by one or many at once (catch-up): same state either way,
    slot maintenance included."""
    settings = Settings()
    sim = Simulation.from_name("branching", 20, seed=5)
    ticks = [(tk.index, tick_frames(tk)) for tk in sim.ticks(2400)]
    states = []
    for step in (20, 140):
        est = TopologyEstimator(sim.network, settings.estimator_parameters())
        for k in range(0, len(ticks), step):
            for index, frames in ticks[k : k + step]:
                for cam, occ in frames.items():
                    est.buffer.add(cam, index, occ)
            est.advance(ticks[min(k + step, len(ticks) - 1)][0])
        assert est.transit is not None
        states.append(est.transit.state())
    a, b = states
    assert a["stats"][1] > 50
    assert not [k for k in a if not np.array_equal(a[k], b[k])]
