"""A PNG map of a simulated world: walkways, buildings, camera footprints and true links."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camtopo.simulation.engine import Simulation


def render_map(path: str | Path, sim: Simulation, links: bool = True, dpi: int = 150) -> Path:
    """Draw the world of ``sim`` to ``path``; overlap links blue, transit links orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.patches import Rectangle

    world, cams = sim.scenario.world, sim.cameras
    xmin, ymin, xmax, ymax = world.bounds
    size = 10.0
    aspect = (ymax - ymin) / max(xmax - xmin, 1e-9)
    fig, ax = plt.subplots(figsize=(size, max(size * aspect, 3.0)))
    for x0, y0, x1, y1 in world.buildings:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.8", zorder=0))
    # Walkways as filled capsules approximated by thick quads in data units.
    p, q = world.nodes[world.edge_a], world.nodes[world.edge_b]
    d = (q - p) / world.lengths[:, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) * (world.width[:, None] / 2)
    quads = np.stack([p + nrm, q + nrm, q - nrm, p - nrm], axis=1)
    colours = np.where(world.one_way[:, None], [[0.95, 0.85, 0.6]], [[0.75, 0.75, 0.65]])
    # A list of (4, 2) quads: matplotlib's stubs take a Sequence, which an array is not.
    ax.add_collection(PolyCollection(list(quads), facecolors=colours, edgecolors="none", zorder=1))
    rng = np.random.default_rng(0)
    polys = [cams.footprint_polygon(c) for c in range(cams.n)]
    ax.add_collection(
        PolyCollection(
            polys,
            facecolors=rng.random((cams.n, 3)),
            alpha=0.25,
            edgecolors="k",
            linewidths=0.2,
            zorder=2,
        )
    )
    ax.scatter(cams.position[:, 0], cams.position[:, 1], s=6, c="k", zorder=4)
    if cams.n <= 200:
        for c in range(cams.n):
            ax.annotate(cams.ids[c][3:], cams.position[c], fontsize=4, zorder=5)
    if links:
        truth = sim.truth()
        idx = {c: i for i, c in enumerate(cams.ids)}
        for kind, colour in (("transit", "tab:orange"), ("overlap", "tab:blue")):
            segs = [
                (cams.position[idx[lk["a"]]], cams.position[idx[lk["b"]]])
                for lk in truth["camera_links"]
                if lk["kind"] == kind
            ]
            if segs:
                ax.add_collection(
                    LineCollection(
                        segs,
                        colors=colour,
                        linewidths=0.6,
                        alpha=0.7,
                        zorder=3,
                        label=f"{kind} ({len(segs)})",
                    )
                )
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_title(f"{sim.scenario.name}: {cams.n} cameras")
    ax.set_xlabel("m")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
