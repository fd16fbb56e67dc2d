"""A small random network run through the real estimator: fills a store for tests, the query
benchmark and the viewer's demo mode without the simulator or Kafka.

*Places* are spots people stand on; each is seen by one window of one camera, and linked
places by a window in each of two cameras (an overlap). Each tick every place is occupied
with probability ``rate``, so windows of linked places always co-occur and the exclusion
counts find exactly those pairs (given enough ticks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camtopo.core.grid import Network
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings


@dataclass(frozen=True)
class SyntheticNetwork:
    network: Network
    places: list[list[tuple[int, int]]]  # each place: (camera index, local window) seen from
    links: set[tuple[str, str]]  # camera pairs (a, b), a before b, that share a place


def make_network(n_cameras: int, seed: int = 0, link_chain: bool = True) -> SyntheticNetwork:
    """Cameras ``cam000..``; consecutive cameras overlap in a few windows (a corridor), plus
    a few random cross links, plus many single-camera places."""
    rng = np.random.default_rng(seed)
    network = Network.uniform([f"cam{i:03d}" for i in range(n_cameras)])
    n_win = network.grids[0].n_windows
    places: list[list[tuple[int, int]]] = []
    links: set[tuple[int, int]] = set()
    pairs = [(c, c + 1) for c in range(n_cameras - 1)] if link_chain else []
    for _ in range(max(n_cameras // 5, 1)):
        a, b = sorted(rng.choice(n_cameras, size=2, replace=False).tolist())
        pairs.append((a, b))
    for a, b in pairs:
        links.add((a, b))
        for _ in range(2):
            places.append([(a, int(rng.integers(n_win))), (b, int(rng.integers(n_win)))])
    for c in range(n_cameras):
        for _ in range(4):
            places.append([(c, int(rng.integers(n_win)))])
    named = {(network.cameras[a], network.cameras[b]) for a, b in links}
    return SyntheticNetwork(network, places, named)


def run(
    synthetic: SyntheticNetwork,
    settings: Settings,
    ticks: int,
    *,
    start_tick: int = 0,
    rate: float = 0.03,
    seed: int = 1,
    estimator: TopologyEstimator | None = None,
    engine: str = "exact",
) -> TopologyEstimator:
    """Feed ``ticks`` ticks of random occupancy (every camera sends every frame) and count them."""
    net = synthetic.network
    est = estimator or TopologyEstimator(net, settings.estimator_parameters(), engine=engine)
    cams = np.array([c for place in synthetic.places for c, _ in place], dtype=np.int64)
    wins = np.array([w for place in synthetic.places for _, w in place], dtype=np.int64)
    owner = np.repeat(np.arange(len(synthetic.places)), [len(p) for p in synthetic.places])
    available = np.ones(net.n_cameras, dtype=np.bool_)
    for t in range(start_tick, start_tick + ticks):
        # Seeded per tick, so a run split anywhere equals the run in one go.
        on = np.random.default_rng([seed, t]).random(len(synthetic.places)) < rate
        sel = on[owner]
        pairs = np.unique(np.stack([cams[sel], wins[sel]]), axis=1)
        est.buffer.add_tick(t, available, pairs[0], pairs[1])
    # Count every tick whose temporal padding has all its data.
    est.advance(start_tick + ticks)
    return est
