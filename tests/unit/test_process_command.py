"""`camtopo process` and `camtopo store` tick at the network's frame rate, as `estimate` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from camtopo.core.grid import Network


def test_process_refuses_a_frame_rate_that_contradicts_the_network(tmp_path: Path) -> None:
    # A 25 fps network counted at CAMTOPO_FPS=10 would put two frames on one tick: refused in
    # one line, before any broker or Redis is reached.
    path = tmp_path / "network.json"
    Network.uniform(["a", "b"], fps=25).save(path)
    env = {**os.environ, "CAMTOPO_FPS": "10", "CAMTOPO_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    for command in (["process"], ["store", "show"]):
        done = subprocess.run(
            [sys.executable, "-m", "camtopo.cli", *command, "--network", str(path)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "'fps' is 25 but CAMTOPO_FPS is 10" in done.stderr
        assert "Traceback" not in done.stderr


def test_process_refuses_cameras_at_their_own_frame_rates(tmp_path: Path) -> None:
    # The streaming path takes one frame per tick (camtopo produce samples at CAMTOPO_FPS);
    # frames at a camera's own rate would be dead letters or no evidence: refused up front.
    path = tmp_path / "network.json"
    grid = Network.uniform(["a"]).grids[0]
    Network(("a", "b"), (grid, grid), 10, (10, 25)).save(path)
    env = {**os.environ, "CAMTOPO_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "process", "--network", str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "'camera_fps' gives cameras their own frame rates (b 25 fps)" in done.stderr
    assert "Traceback" not in done.stderr
