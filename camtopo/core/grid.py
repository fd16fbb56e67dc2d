"""Window grids and the network's global window numbering.

A camera's view is cut into a grid of windows (the paper's 40 x 40 pixel windows: 12 x 9 on
320 x 240). Window index = row * cols + col. Across the network every window also has a
*global* index: the camera's offset plus its local index, so that count matrices are indexed
by one integer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np


class NetworkError(ValueError):
    """A network description is malformed or a camera / window is not part of it."""


@dataclass(frozen=True)
class Grid:
    """A camera's window grid: ``cols`` x ``rows`` windows over a ``width`` x ``height`` image."""

    cols: int = 12
    rows: int = 9
    width: int = 320
    height: int = 240

    def __post_init__(self) -> None:
        if min(self.cols, self.rows, self.width, self.height) <= 0:
            raise NetworkError(f"grid dimensions must be positive: {self}")

    @property
    def n_windows(self) -> int:
        return self.cols * self.rows

    def window_at(self, x: float, y: float) -> int:
        """Window holding image point (x, y); points on or past the border clamp inside."""
        col = min(max(int(x * self.cols / self.width), 0), self.cols - 1)
        row = min(max(int(y * self.rows / self.height), 0), self.rows - 1)
        return row * self.cols + col

    def window_centre(self, window: int) -> tuple[float, float]:
        row, col = divmod(window, self.cols)
        return ((col + 0.5) * self.width / self.cols, (row + 0.5) * self.height / self.rows)

    def neighbourhood(self, window: int, radius: int) -> list[int]:
        """Windows within Chebyshev distance ``radius`` of ``window`` (itself included).

        radius 1 is the paper's "it or any of its adjacent windows" (the 8-neighbourhood).
        """
        row, col = divmod(window, self.cols)
        return [
            r * self.cols + c
            for r in range(max(row - radius, 0), min(row + radius, self.rows - 1) + 1)
            for c in range(max(col - radius, 0), min(col + radius, self.cols - 1) + 1)
        ]

    def to_json(self) -> dict[str, int]:
        return {"cols": self.cols, "rows": self.rows, "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, data: object, where: str = "grid") -> Grid:
        """A grid as network.json writes it; every field is required (``where`` names it)."""
        fields = _object(data, f"{where!r}")
        cols, rows, width, height = (
            _positive_int(_field(fields, key, where), f"{where}.{key}")
            for key in ("cols", "rows", "width", "height")
        )
        return cls(cols, rows, width, height)


@dataclass(frozen=True)
class Network:
    """The cameras of a network, their grids and frame rates, and global window numbering.

    ``fps`` is the network's tick: one tick is one frame at ``fps``, and padding, ranges and
    counts are in ticks. ``camera_fps`` gives each camera's own rate (empty: all at ``fps``);
    a camera at another rate has its frames mapped onto the ticks by capture time
    (core/ticks.py ``frame_ticks``).
    """

    cameras: tuple[str, ...]
    grids: tuple[Grid, ...]
    fps: int = 10
    camera_fps: tuple[int, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.cameras) != len(self.grids):
            raise NetworkError("one grid per camera is required")
        if len(set(self.cameras)) != len(self.cameras):
            raise NetworkError("camera ids must be unique")
        if self.fps <= 0:
            raise NetworkError(f"fps must be positive, got {self.fps}")
        rates = tuple(self.camera_fps)
        if rates and len(rates) != len(self.cameras):
            raise NetworkError("camera_fps needs one rate per camera (or none)")
        if any(r <= 0 for r in rates):
            raise NetworkError(f"camera frame rates must be positive, got {rates}")
        # One form for "every camera at fps", so equal networks compare equal.
        object.__setattr__(self, "camera_fps", () if all(r == self.fps for r in rates) else rates)
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.cameras)})

    @classmethod
    def uniform(cls, cameras: Sequence[str], grid: Grid | None = None, fps: int = 10) -> Network:
        grid = grid or Grid()
        return cls(tuple(cameras), tuple(grid for _ in cameras), fps)

    # --- numbering -------------------------------------------------------------------------
    @property
    def n_cameras(self) -> int:
        return len(self.cameras)

    @property
    def mixed_rates(self) -> bool:
        """Some camera's frame rate is not the network's tick rate ``fps``."""
        return bool(self.camera_fps)

    def rate(self, camera: int) -> int:
        """Frames per second of camera ``camera`` (index)."""
        return self.camera_fps[camera] if self.camera_fps else self.fps

    @cached_property
    def offsets(self) -> np.ndarray:
        """int64 (n_cameras + 1,): global index of each camera's window 0; last = n_windows."""
        sizes = np.array([g.n_windows for g in self.grids], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(sizes)])

    @property
    def n_windows(self) -> int:
        return int(self.offsets[-1])

    @cached_property
    def max_windows_per_camera(self) -> int:
        return max((g.n_windows for g in self.grids), default=0)

    @cached_property
    def window_camera(self) -> np.ndarray:
        """int32 (n_windows,): camera index of each global window."""
        sizes = np.diff(self.offsets)
        return np.repeat(np.arange(self.n_cameras, dtype=np.int32), sizes)

    def camera_index(self, camera: str) -> int:
        try:
            return self._index[camera]
        except KeyError:
            raise NetworkError(f"unknown camera {camera!r}") from None

    def global_window(self, camera: int, window: int) -> int:
        if not 0 <= window < self.grids[camera].n_windows:
            raise NetworkError(
                f"window {window} is outside the {self.grids[camera].n_windows}-window grid "
                f"of camera {self.cameras[camera]!r}"
            )
        return int(self.offsets[camera]) + window

    def local_window(self, global_window: int) -> tuple[int, int]:
        cam = int(self.window_camera[global_window])
        return cam, int(global_window - self.offsets[cam])

    def label(self, global_window: int) -> str:
        """The contract's window name, ``"cam007:17"``."""
        cam, w = self.local_window(global_window)
        return f"{self.cameras[cam]}:{w}"

    def parse_label(self, label: str) -> int:
        camera, _, window = label.rpartition(":")
        if not camera or not window.isdigit():
            raise NetworkError(f"bad window label {label!r}; expected 'camera:index'")
        return self.global_window(self.camera_index(camera), int(window))

    @cached_property
    def spatial_neighbours(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Cache of CSR neighbour tables keyed by radius (filled by :meth:`neighbour_table`)."""
        return {}

    def neighbour_table(self, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR table (ptr int64 (W+1,), idx int32) of each global window's padding neighbours."""
        if radius not in self.spatial_neighbours:
            ptr = [0]
            idx: list[int] = []
            for cam, grid in enumerate(self.grids):
                base = int(self.offsets[cam])
                per_window = [grid.neighbourhood(w, radius) for w in range(grid.n_windows)]
                for nbrs in per_window:
                    idx.extend(base + n for n in nbrs)
                    ptr.append(len(idx))
            self.spatial_neighbours[radius] = (
                np.asarray(ptr, dtype=np.int64),
                np.asarray(idx, dtype=np.int32),
            )
        return self.spatial_neighbours[radius]

    # --- the contract's network.json ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        base = self.grids[0] if self.grids else Grid()
        overrides = {
            c: g.to_json() for c, g in zip(self.cameras, self.grids, strict=True) if g != base
        }
        out: dict[str, Any] = {
            "grid": base.to_json(),
            "fps": self.fps,
            "cameras": list(self.cameras),
        }
        if overrides:
            out["camera_grids"] = overrides
        if self.camera_fps:
            out["camera_fps"] = {
                c: r for c, r in zip(self.cameras, self.camera_fps, strict=True) if r != self.fps
            }
        return out

    @classmethod
    def from_json(cls, data: object) -> Network:
        """The contract's network.json, checked field by field (docs/formats.md).

        ``grid`` and ``fps`` are required: a default frame rate would time a 25 fps camera
        wrong without a word, and a default grid would misread its window numbers.
        """
        fields = _object(data, "the network description")
        cameras = _camera_ids(_field(fields, "cameras", hint="the camera ids"))
        grid = Grid.from_json(_field(fields, "grid", hint="cols, rows, width and height"))
        fps = _positive_int(_field(fields, "fps", hint="the cameras' frames per second"), "fps")
        grids = _camera_grids(fields.get("camera_grids"), cameras)
        rates = _camera_fps(fields.get("camera_fps"), cameras)
        return cls(
            tuple(cameras),
            tuple(grids.get(c, grid) for c in cameras),
            fps,
            tuple(rates.get(c, fps) for c in cameras),
        )

    @classmethod
    def load(cls, path: str | Path) -> Network:
        path = Path(path)
        try:
            data = json.loads(path.read_bytes())
        # ValueError: not JSON, not UTF-8, or an integer of more than 4,300 digits;
        # RecursionError: arrays or objects nested thousands deep
        except (ValueError, RecursionError) as exc:
            raise NetworkError(f"{path}: not valid JSON: {exc}") from exc
        try:
            return cls.from_json(data)
        except NetworkError as exc:
            raise NetworkError(f"{path}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))


# --- checks of network.json's fields (each error names its field; load() adds the file) -------
def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise NetworkError(f"{what} must be a JSON object, got {_shown(value)}")
    return value


def _field(fields: Mapping[str, Any], key: str, where: str = "", hint: str = "") -> Any:
    if key not in fields:
        name = f"{where}.{key}" if where else key
        raise NetworkError(f"missing field {name!r}" + (f" ({hint})" if hint else ""))
    return fields[key]


def _positive_int(value: object, name: str) -> int:
    """A whole number >= 1; ``12.0`` is taken, as JSON Schema's "integer" takes it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NetworkError(f"{name!r} must be a whole number >= 1, got {_shown(value)}")
    return value


def _camera_ids(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise NetworkError(f"'cameras' must be a non-empty list of camera ids, got {_shown(value)}")
    # A list, not next(..., None): a null camera id was taken for "none bad" (then TypeError)
    bad = [c for c in value if not isinstance(c, str) or not c]
    if bad:
        raise NetworkError(f"'cameras' must hold non-empty strings, got {_shown(bad[0])}")
    twice = [c for c, n in Counter(value).items() if n > 1]
    if twice:
        raise NetworkError(f"'cameras' lists {twice[0]!r} more than once")
    return value


def _camera_grids(value: object, cameras: list[str]) -> dict[str, Grid]:
    if value is None:
        return {}
    overrides = _object(value, "'camera_grids'")
    _known(overrides, cameras, "camera_grids")
    return {c: Grid.from_json(g, f"camera_grids.{c}") for c, g in overrides.items()}


def _camera_fps(value: object, cameras: list[str]) -> dict[str, int]:
    """Per-camera frame rates; cameras not named run at the network's ``fps``."""
    if value is None:
        return {}
    rates = _object(value, "'camera_fps'")
    _known(rates, cameras, "camera_fps")
    return {c: _positive_int(r, f"camera_fps.{c}") for c, r in rates.items()}


def _known(per_camera: Mapping[str, Any], cameras: list[str], key: str) -> None:
    unknown = sorted(set(per_camera) - set(cameras))
    if unknown:
        raise NetworkError(f"{key!r} names cameras not in 'cameras': {unknown}")


def _shown(value: object) -> str:
    """A value for an error message, cut short: the field may hold a whole list."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
