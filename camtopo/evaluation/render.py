"""``camtopo render``: draw a topology like the paper's Figure 2 — camera tiles laid out so that
related cameras sit near each other, adjacent windows joined by lines weighted by evidence —
as a PNG and as a self-contained HTML page (inline SVG, no network access needed)."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from camtopo.core.grid import Network

KIND_COLOURS = {"overlap": "#1f77b4", "transit": "#d62728"}
TILE_W, TILE_H = 1.0, 0.75  # a 320 x 240 view


def _force_layout(
    m: int, edges: list[tuple[int, int, float]], rng: np.random.Generator
) -> np.ndarray:
    """Fruchterman–Reingold positions (m, 2) of one connected group, tiles not overlapping."""
    if m == 1:
        return np.zeros((1, 2))
    side = max(1.0, np.sqrt(m)) * 2.5
    p = rng.uniform(0, side, size=(m, 2))
    adj = np.zeros((m, m))
    for a, b, w in edges:
        adj[a, b] = adj[b, a] = max(adj[a, b], 0.5 + w)
    k = 2.5  # ideal distance: a tile and a half of space between neighbours
    temp = side / 6
    for _ in range(400):
        delta = p[:, None, :] - p[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 0.05)
        force = (k * k / dist**2)[:, :, None] * delta - (adj * dist / k)[:, :, None] * delta
        disp = force.sum(axis=1)
        length = np.maximum(np.linalg.norm(disp, axis=1), 1e-9)
        p += disp / length[:, None] * np.minimum(length, temp)[:, None]
        temp = max(temp * 0.985, 0.01)
    dist = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(m) * 1e9
    p *= max(1.0, 1.4 / max(dist.min(), 1e-6))  # spread until no two tiles overlap
    placed: np.ndarray = p - p.min(axis=0)
    return placed


def spring_layout(n: int, edges: list[tuple[int, int, float]], seed: int = 0) -> np.ndarray:
    """Positions (n, 2) in tile units: each group of linked cameras laid out by forces, the
    groups packed in rows, largest first; cameras with no link last."""
    rng = np.random.default_rng(seed)
    parent = list(range(n))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b, _ in edges:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in range(n):
        groups.setdefault(root(c), []).append(c)
    pos = np.zeros((n, 2))
    x = y = row_h = 0.0
    width = max(12.0, 3.0 * np.sqrt(n))  # page width in tiles
    for members in sorted(groups.values(), key=lambda g: (-len(g), g[0])):
        local = {c: k for k, c in enumerate(members)}
        sub = [(local[a], local[b], w) for a, b, w in edges if a in local and b in local]
        p = _force_layout(len(members), sub, rng)
        w, h = p.max(axis=0) + np.array([1.4, 1.2])
        if x > 0 and x + w > width:
            x, y, row_h = 0.0, y + row_h, 0.0
        pos[members] = p + np.array([x, y])
        x, row_h = x + w, max(row_h, h)
    return pos


def layout(topology: dict[str, Any]) -> tuple[Network, np.ndarray]:
    network = Network.from_json(topology["network"])
    idx = {c: k for k, c in enumerate(network.cameras)}
    edges = [
        (idx[e["a"]], idx[e["b"]], float(e.get("weight", 1))) for e in topology["camera_edges"]
    ]
    return network, spring_layout(network.n_cameras, edges)


def _window_point(network: Network, pos: np.ndarray, label: str) -> tuple[float, float]:
    g = network.parse_label(label)
    cam, w = network.local_window(g)
    grid = network.grids[cam]
    cx, cy = grid.window_centre(w)
    return pos[cam, 0] + cx / grid.width * TILE_W, pos[cam, 1] + cy / grid.height * TILE_H


def render_png(topology: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    network, pos = layout(topology)
    span = pos.max(axis=0) + np.array([TILE_W, TILE_H]) if len(pos) else np.array([1.0, 1.0])
    # Inches per tile chosen so the figure has the layout's own aspect: nothing is cut off.
    scale = min(1.0, 18 / max(span))
    fig, ax = plt.subplots(figsize=(max(3.0, (span[0] + 0.4) * scale), (span[1] + 0.9) * scale))
    for k, cam in enumerate(network.cameras):
        ax.add_patch(Rectangle(pos[k], TILE_W, TILE_H, fc="#f2f2f2", ec="#555", lw=0.6))
        if network.n_cameras <= 200:
            ax.text(pos[k, 0] + 0.02, pos[k, 1] - 0.04, cam, fontsize=5, va="bottom")
    for e in topology["window_edges"]:
        (x1, y1), (x2, y2) = (_window_point(network, pos, e[s]) for s in ("a", "b"))
        w = min(e["c_ab"], e["c_ba"])
        ax.plot([x1, x2], [y1, y2], color=KIND_COLOURS["overlap"], lw=0.3 + 1.2 * w, alpha=0.5)
    ax.set_xlim(-0.2, span[0] + 0.2)
    ax.set_ylim(span[1] + 0.2, -0.3)  # image convention: y grows downwards
    ax.axis("off")
    ax.set_title(
        f"{network.n_cameras} cameras, {len(topology['camera_edges'])} camera links, "
        f"{len(topology['window_edges'])} window links, "
        f"{topology.get('observed_s', 0) / 60:.0f} min observed"
    )
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.5 / fig.get_figheight())
    fig.savefig(path, dpi=150)
    plt.close(fig)


def render_html(topology: dict[str, Any], path: Path) -> None:
    network, pos = layout(topology)
    unit = 80.0  # pixels per tile width
    span = (pos.max(axis=0) + [TILE_W, TILE_H] + 0.4) * unit if len(pos) else np.array([200, 200])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{span[0]:.0f}" height="{span[1]:.0f}">'
    ]
    for k, cam in enumerate(network.cameras):
        x, y = (pos[k] + 0.2) * unit
        parts.append(
            f'<g class="cam" data-cam="{html.escape(cam)}"><rect x="{x:.1f}" y="{y:.1f}" '
            f'width="{TILE_W * unit:.0f}" height="{TILE_H * unit:.0f}"/>'
            f'<text x="{x + 2:.1f}" y="{y - 2:.1f}">{html.escape(cam)}</text></g>'
        )
    for e in topology["window_edges"]:
        (x1, y1), (x2, y2) = (
            (np.array(_window_point(network, pos, e[s])) + 0.2) * unit for s in "ab"
        )
        w = min(e["c_ab"], e["c_ba"])
        a, b = e["a"].rsplit(":", 1)[0], e["b"].rsplit(":", 1)[0]
        title = (
            f"{e['a']} – {e['b']}: C'={e['c_ab']:.2f}/{e['c_ba']:.2f}, O={e['o_ab']}/{e['o_ba']}"
        )
        parts.append(
            f'<line data-a="{html.escape(a)}" data-b="{html.escape(b)}" x1="{x1:.1f}" '
            f'y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke-width="{0.5 + 2 * w:.2f}">'
            f"<title>{html.escape(title)}</title></line>"
        )
    parts.append("</svg>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>camtopo topology</title>
<style>body{{font-family:sans-serif;margin:1em}} rect{{fill:#f2f2f2;stroke:#555}}
text{{font-size:9px}} line{{stroke:{KIND_COLOURS["overlap"]};opacity:.55}}
line.dim{{opacity:.05}} g.cam{{cursor:pointer}} g.sel rect{{fill:#ffe9a8}}</style></head><body>
<h2>Activity topology</h2><p>{network.n_cameras} cameras, {len(topology["camera_edges"])} camera
links, {len(topology["window_edges"])} window links. Click a camera to show only its links.</p>
{"".join(parts)}
<script>
let sel=null;
document.querySelectorAll('g.cam').forEach(g=>g.addEventListener('click',()=>{{
  const c=g.dataset.cam; sel = sel===c?null:c;
  document.querySelectorAll('g.cam').forEach(x=>x.classList.toggle('sel',x.dataset.cam===sel));
  document.querySelectorAll('line').forEach(l=>l.classList.toggle('dim',
    sel!==null && l.dataset.a!==sel && l.dataset.b!==sel));
}}));
</script></body></html>"""
    path.write_text(page)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("render", help="draw topology.json as PNG and HTML (paper Figure 2)")
    p.add_argument("topology", type=Path)
    p.add_argument("--png", type=Path, help="default: next to the topology, .png")
    p.add_argument("--html", type=Path, help="default: next to the topology, .html")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    topology = json.loads(args.topology.read_text())
    png = args.png or args.topology.with_suffix(".png")
    page = args.html or args.topology.with_suffix(".html")
    render_png(topology, png)
    render_html(topology, page)
    print(f"wrote {png} and {page}")
    return 0
