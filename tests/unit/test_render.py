"""Drawing a topology: tiles laid out so related cameras sit together, nothing overlapping."""

from __future__ import annotations

import numpy as np

from camtopo.core.grid import Network
from camtopo.evaluation.render import TILE_W, render_html, render_png, spring_layout


def test_linked_cameras_sit_closer_than_unlinked_and_tiles_never_overlap():
    edges = [(0, 1, 1.0), (1, 2, 1.0), (3, 4, 1.0)]
    pos = spring_layout(8, edges)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    off_diagonal = dist[~np.eye(8, dtype=bool)]
    assert off_diagonal.min() >= TILE_W  # no two tiles on top of each other
    linked = np.mean([dist[a, b] for a, b, _ in edges])
    unlinked = np.mean([dist[a, b] for a in range(8) for b in range(a + 1, 8)
                        if (a, b, 1.0) not in edges])  # fmt: skip
    assert linked < unlinked


def test_png_and_self_contained_html_are_written(tmp_path):
    network = Network.uniform(["cam0", "cam1", "cam2"])
    topology = {
        "network": network.to_json(),
        "observed_s": 600,
        "camera_edges": [{"a": "cam0", "b": "cam1", "kind": "overlap", "weight": 0.97}],
        "window_edges": [
            {"a": "cam0:17", "b": "cam1:52", "c_ab": 0.97, "c_ba": 0.98, "o_ab": 80, "o_ba": 90}
        ],
    }
    render_png(topology, tmp_path / "t.png")
    render_html(topology, tmp_path / "t.html")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "t.html").read_text()
    assert all(f'data-cam="{c}"' in page for c in network.cameras)
    assert "cam0:17 – cam1:52" in page and "http" not in page.replace("http://www.w3.org", "")
