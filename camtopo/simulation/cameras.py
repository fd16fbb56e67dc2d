"""Pinhole cameras over the ground plane: homographies, visibility and window lookup.

Each camera stands at ground position (x, y) at ``height`` metres, looks along ``heading``
(radians from +x, counter-clockwise), pitched down by ``tilt`` radians, with focal length
``focal`` in pixels and the principal point at the image centre. Ground (z = 0) maps to the
image by the homography H = K [r1 r2 t]. A person whose feet stand at ground point p is seen
when H(p) falls inside the image, in front of the camera and within ``max_range`` metres
(beyond it a person is too small to detect); the occupied window is the one holding the feet,
i.e. the paper's midpoint of the lower edge of the blob's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from camtopo.core.grid import Grid

PERSON_HEIGHT_M = 1.7


@dataclass
class Cameras:
    """All cameras of a scenario as arrays, shape (n,) unless noted."""

    ids: tuple[str, ...]
    position: np.ndarray  # float64 (n, 2) ground position of the mount
    height: np.ndarray  # metres above ground
    heading: np.ndarray  # radians
    tilt: np.ndarray  # radians below horizontal
    focal: np.ndarray  # pixels
    max_range: np.ndarray  # metres of ground distance
    grid: Grid

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.position = np.asarray(self.position, dtype=np.float64).reshape(n, 2)
        for name in ("height", "heading", "tilt", "focal", "max_range"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(n)
            setattr(self, name, arr)
        if n and (self.height.min() <= 0 or self.focal.min() <= 0):
            raise ValueError("camera heights and focal lengths must be positive")

    @property
    def n(self) -> int:
        return len(self.ids)

    # --- geometry ---------------------------------------------------------------------------
    @cached_property
    def rotation(self) -> np.ndarray:
        """float64 (n, 3, 3): rows are the camera's right, down, forward axes in world frame."""
        ch, sh = np.cos(self.heading), np.sin(self.heading)
        ct, st = np.cos(self.tilt), np.sin(self.tilt)
        forward = np.stack([ct * ch, ct * sh, -st], axis=1)
        right = np.stack([sh, -ch, np.zeros_like(ch)], axis=1)
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    @cached_property
    def intrinsics(self) -> np.ndarray:
        """float64 (n, 3, 3): K with principal point at the image centre."""
        k = np.zeros((self.n, 3, 3))
        k[:, 0, 0] = self.focal
        k[:, 1, 1] = self.focal
        k[:, 0, 2] = self.grid.width / 2
        k[:, 1, 2] = self.grid.height / 2
        k[:, 2, 2] = 1.0
        return k

    @cached_property
    def projection(self) -> np.ndarray:
        """float64 (n, 3, 4): P = K [R | -R C] mapping world (x, y, z, 1) to the image."""
        centre = np.concatenate([self.position, self.height[:, None]], axis=1)
        t = -np.einsum("nij,nj->ni", self.rotation, centre)
        rt = np.concatenate([self.rotation, t[:, :, None]], axis=2)
        proj: np.ndarray = np.einsum("nij,njk->nik", self.intrinsics, rt)
        return proj

    @cached_property
    def homography(self) -> np.ndarray:
        """float64 (n, 3, 3): ground (x, y, 1) -> image; the third row gives depth."""
        return self.projection[:, :, [0, 1, 3]]

    @cached_property
    def inverse_homography(self) -> np.ndarray:
        """float64 (n, 3, 3): image (u, v, 1) -> ground (homogeneous)."""
        return np.linalg.inv(self.homography)

    def project_pairs(
        self, cam: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project ground points (m, 2) each in its own camera ``cam`` (m,): (u, v, depth)."""
        h = self.homography.reshape(self.n, 9)[cam]
        x, y = points[:, 0], points[:, 1]
        w = h[:, 6] * x + h[:, 7] * y + h[:, 8]
        safe = np.where(np.abs(w) > 1e-9, w, 1e-9)
        u = (h[:, 0] * x + h[:, 1] * y + h[:, 2]) / safe
        v = (h[:, 3] * x + h[:, 4] * y + h[:, 5]) / safe
        return u, v, w

    def visible_pairs(
        self, cam: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask, u, v): which feet at ``points`` (m, 2) are seen by cameras ``cam`` (m,)."""
        u, v, w = self.project_pairs(cam, points)
        dist2 = ((points - self.position[cam]) ** 2).sum(axis=1)
        mask = (
            (w > 0)
            & (u >= 0)
            & (u < self.grid.width)
            & (v >= 0)
            & (v < self.grid.height)
            & (dist2 <= self.max_range[cam] ** 2)
        )
        return mask, u, v

    def project(self, camera: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground points (m, 2) in one camera: image points (m, 2) and a visibility mask (m,)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        cam = np.full(len(points), camera, dtype=np.int64)
        mask, u, v = self.visible_pairs(cam, points)
        return np.stack([u, v], axis=1), mask

    def image_to_ground(self, camera: int, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image points (m, 2) -> ground points (m, 2), and a mask of rays hitting ground ahead."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        hom = (
            np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ self.inverse_homography[camera].T
        )
        w = hom[:, 2]
        ground = hom[:, :2] / np.where(np.abs(w) > 1e-12, w, 1e-12)[:, None]
        # A ray above the horizon "hits" the ground behind the camera: mark it invalid.
        _, _, depth = self.project_pairs(np.full(len(uv), camera), ground)
        return ground, depth > 0

    def person_height_px(
        self, camera: int, points: np.ndarray, height_m: float = PERSON_HEIGHT_M
    ) -> np.ndarray:
        """float64 (m,): image height in pixels of an upright person whose feet are at points."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        p = self.projection[camera]
        feet = np.concatenate([points, np.zeros((len(points), 1)), np.ones((len(points), 1))], 1)
        head = feet.copy()
        head[:, 2] = height_m
        f = feet @ p.T
        h = head @ p.T
        px: np.ndarray = f[:, 1] / f[:, 2] - h[:, 1] / h[:, 2]
        return px

    def windows(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """int32: window of each in-image point, the same rule as :meth:`Grid.window_at`."""
        g = self.grid
        col = np.clip((u * g.cols / g.width).astype(np.int64), 0, g.cols - 1)
        row = np.clip((v * g.rows / g.height).astype(np.int64), 0, g.rows - 1)
        return (row * g.cols + col).astype(np.int32)

    def footprint_polygon(self, camera: int, samples: int = 24) -> np.ndarray:
        """float64 (k, 2): ground outline of what ``camera`` sees (image border, cut at range)."""
        g = self.grid
        t = np.linspace(0, 1, samples, endpoint=False)
        border = np.concatenate(
            [
                np.stack([t * g.width, np.zeros_like(t)], 1),
                np.stack([np.full_like(t, g.width), t * g.height], 1),
                np.stack([(1 - t) * g.width, np.full_like(t, g.height)], 1),
                np.stack([np.zeros_like(t), (1 - t) * g.height], 1),
            ]
        )
        ground, ok = self.image_to_ground(camera, border)
        pos = self.position[camera]
        rays = ground - pos
        dist = np.linalg.norm(rays, axis=1)
        # Rays above the horizon or beyond range are cut at max_range along their bearing.
        bearing = np.where(ok[:, None], rays, -rays)
        bearing /= np.maximum(np.linalg.norm(bearing, axis=1), 1e-9)[:, None]
        reach = np.where(ok, np.minimum(dist, self.max_range[camera]), self.max_range[camera])
        ends: np.ndarray = pos + bearing * reach[:, None]
        return ends

    @cached_property
    def footprint_bounds(self) -> np.ndarray:
        """float64 (n, 4): (xmin, ymin, xmax, ymax) of each camera's visible ground."""
        out = np.zeros((self.n, 4))
        for c in range(self.n):
            poly = self.footprint_polygon(c)
            out[c, :2] = poly.min(axis=0)
            out[c, 2:] = poly.max(axis=0)
        return out


def tilt_for_far_edge(
    height: np.ndarray, focal: np.ndarray, far_m: np.ndarray, rows_px: int
) -> np.ndarray:
    """Tilt (radians) putting the top image edge on the ground ``far_m`` metres away."""
    half_vfov = np.arctan((rows_px / 2) / focal)
    tilt: np.ndarray = np.arctan(height / far_m) + half_vfov
    return tilt


@dataclass
class CameraIndex:
    """Spatial bucketing: square cells of ``cell`` metres -> cameras whose footprint may reach.

    Lets a tick find each person's candidate cameras in O(1), so the per-tick cost is
    O(people + cameras) rather than O(people x cameras).
    """

    origin: np.ndarray
    cell: float
    shape: tuple[int, int]
    ptr: np.ndarray  # int64 (cells + 1,)
    cams: np.ndarray  # int32

    @classmethod
    def build(
        cls, cameras: Cameras, bounds: tuple[float, float, float, float], cell: float = 8.0
    ) -> CameraIndex:
        fb = cameras.footprint_bounds
        lo = np.minimum(np.array(bounds[:2]), fb[:, :2].min(axis=0) if cameras.n else 0) - cell
        hi = np.maximum(np.array(bounds[2:]), fb[:, 2:].max(axis=0) if cameras.n else 0) + cell
        nx, ny = (np.ceil((hi - lo) / cell).astype(int) + 1).tolist()
        cells: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for c in range(cameras.n):
            x0, y0 = np.floor((fb[c, :2] - lo) / cell).astype(int)
            x1, y1 = np.floor((fb[c, 2:] - lo) / cell).astype(int)
            ix, iy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
            ids = (iy * nx + ix).ravel()
            cells.append(ids)
            owners.append(np.full(len(ids), c, dtype=np.int32))
        cell_ids = np.concatenate(cells) if cells else np.zeros(0, np.int64)
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int32)
        order = np.argsort(cell_ids, kind="stable")
        counts = np.bincount(cell_ids, minlength=nx * ny)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(lo, cell, (nx, ny), ptr, owner[order])

    def cell_of(self, points: np.ndarray) -> np.ndarray:
        nx, ny = self.shape
        ij = np.floor((points - self.origin) / self.cell).astype(np.int64)
        ij[:, 0] = np.clip(ij[:, 0], 0, nx - 1)
        ij[:, 1] = np.clip(ij[:, 1], 0, ny - 1)
        cell: np.ndarray = ij[:, 1] * nx + ij[:, 0]
        return cell

    def candidates(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point_idx int64, cam int32): every (point, camera) pair worth projecting."""
        cell = self.cell_of(points)
        start = self.ptr[cell]
        counts = self.ptr[cell + 1] - start
        total = int(counts.sum())
        point_idx = np.repeat(np.arange(len(points)), counts)
        # Position of each pair inside its cell's run: arange minus the run's start offset.
        run_start = np.repeat(np.cumsum(counts) - counts, counts)
        flat = np.repeat(start, counts) + (np.arange(total) - run_start)
        return point_idx, self.cams[flat]
