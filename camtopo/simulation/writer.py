"""Streams a simulation to the contract's files: network.json, occupancy.jsonl, truth.json.

Lines are ordered by time only roughly: each line gets a sort key of its tick time plus a
random delay of up to ``jitter_ms`` and lines are released in key order from a small
buffer, so neighbouring frames of different cameras interleave as they would arrive from a
real network. Memory stays bounded by the buffer, however long the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from camtopo.simulation.engine import Simulation, Tick


class _ReorderBuffer:
    def __init__(self, fh: TextIO, rng: np.random.Generator, jitter_ms: float) -> None:
        self.fh = fh
        self.rng = rng
        self.jitter_ms = jitter_ms
        self.keys: list[np.ndarray] = []
        self.lines: list[list[str]] = []
        self.n_lines = 0

    def add(self, tick_ms: float, lines: list[str]) -> None:
        self.keys.append(tick_ms + self.rng.uniform(0, self.jitter_ms, len(lines)))
        self.lines.append(lines)

    def release(self, before_ms: float) -> None:
        if not self.keys:
            return
        keys = np.concatenate(self.keys)
        lines = [x for chunk in self.lines for x in chunk]
        order = np.argsort(keys, kind="stable")
        cut = int(np.searchsorted(keys[order], before_ms))
        out = [lines[i] for i in order[:cut]]
        if out:
            self.fh.write("\n".join(out) + "\n")
            self.n_lines += len(out)
        rest = order[cut:]
        self.keys = [keys[rest]]
        self.lines = [[lines[i] for i in rest]]


def tick_lines(sim: Simulation, tick: Tick) -> list[str]:
    """One JSON line per available camera: {"camera","t_ms","occupied"}, occupied sorted."""
    cams = sim.network.cameras
    up = np.flatnonzero(tick.available)
    # Group this tick's occupied windows by camera (cam/window arrive sorted by camera).
    bounds = np.searchsorted(tick.cam, np.concatenate([up, up + 1]))
    starts, ends = bounds[: len(up)], bounds[len(up) :]
    win = tick.window.tolist()
    t_ms = tick.t_ms.tolist()
    blobs = _blob_json(tick) if tick.blobs is not None else None
    lines = []
    for c, s, e in zip(up.tolist(), starts.tolist(), ends.tolist(), strict=True):
        occ = ",".join(map(str, win[s:e])) if e > s else ""
        extra = f',"blobs":[{",".join(blobs.get(c, []))}]' if blobs is not None else ""
        lines.append(f'{{"camera":"{cams[c]}","t_ms":{t_ms[c]},"occupied":[{occ}]{extra}}}')
    return lines


def _blob_json(tick: Tick) -> dict[int, list[str]]:
    """Each camera's blobs as the appearance contract's JSON objects."""
    assert tick.blobs is not None
    b = tick.blobs
    out: dict[int, list[str]] = {}
    for c, w, hue, v in zip(b.cam.tolist(), b.window.tolist(), b.hue.round(3).tolist(),
                            b.value.round(3).tolist(), strict=True):  # fmt: skip
        h = ",".join(f"{x:g}" for x in hue)
        out.setdefault(c, []).append(f'{{"window":{w},"hue":[{h}],"value":{v:g}}}')
    return out


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """truth.json with one list item per line: readable and diff-able, yet compact."""
    parts = []
    for key, value in truth.items():
        if isinstance(value, list):
            items = ",\n  ".join(json.dumps(v, separators=(",", ":")) for v in value)
            parts.append(f'"{key}": [\n  {items}\n ]' if value else f'"{key}": []')
        else:
            parts.append(f'"{key}": {json.dumps(value)}')
    path.write_text("{\n " + ",\n ".join(parts) + "\n}\n")


def write_scenario(
    out_dir: str | Path,
    sim: Simulation,
    duration_s: float,
    jitter_ms: float = 250.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``sim`` for ``duration_s`` and write the three files; returns summary figures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim.network.save(out / "network.json")
    n_ticks = round(duration_s * sim.fps)
    rng = np.random.default_rng([sim.seed, 6])
    occupied = 0
    frames = 0
    people = 0
    with (out / "occupancy.jsonl").open("w") as fh:
        buf = _ReorderBuffer(fh, rng, jitter_ms)
        for tick in tqdm(
            sim.ticks(n_ticks), total=n_ticks, unit="tick", disable=not progress, desc="simulate"
        ):
            lines = tick_lines(sim, tick)
            frames += len(lines)
            occupied += int(tick.available[tick.cam].sum())
            people += sim.crowd.n
            now = tick.index * 1000.0 / sim.fps
            buf.add(now, lines)
            if tick.index % 10 == 9:
                buf.release(now - jitter_ms)
        buf.release(np.inf)
    truth = sim.truth()
    write_truth(out / "truth.json", truth)
    n_links = {"overlap": 0, "transit": 0}
    for link in truth["camera_links"]:
        n_links[link["kind"]] += 1
    return {
        "ticks": n_ticks,
        "lines": buf.n_lines,
        "occupied_per_camera_frame": occupied / max(frames, 1),
        "people_mean": people / max(n_ticks, 1),
        "window_overlaps": len(truth["window_overlaps"]),
        "overlap_links": n_links["overlap"],
        "transit_links": n_links["transit"],
    }
