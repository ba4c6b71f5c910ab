"""A pinhole camera and an anti-aliased numpy rasteriser for capsules and convex polygons.

Small images (tens of pixels a side) are the target: every primitive is drawn by evaluating a
distance function over its bounding box only, and coverage is a one-pixel ramp so that sub-pixel
motion of an object changes the image smoothly (a CNN can then localise it finer than a pixel).
Occlusion is the painter's algorithm: the caller draws far primitives first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """A camera at ``position_m`` looking at ``look_at_m``, world z up, square pixels."""

    position_m: tuple[float, float, float]
    look_at_m: tuple[float, float, float]
    vertical_fov_deg: float
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image must be at least 8x8 pixels, got {self.height}x{self.width}")
        if not 1.0 < self.vertical_fov_deg < 170.0:
            raise ValueError(f"vertical_fov_deg must be in (1, 170), got {self.vertical_fov_deg}")
        forward = np.subtract(self.look_at_m, self.position_m)
        if np.linalg.norm(forward[:2]) < 1e-6 and abs(forward[2]) > 0:
            # Straight down: image up is world +y.
            right = np.array([1.0, 0.0, 0.0])
        else:
            right = np.cross(forward, [0.0, 0.0, 1.0])
        forward = forward / np.linalg.norm(forward)
        right = right / np.linalg.norm(right)
        down = np.cross(forward, right)
        object.__setattr__(self, "_world_to_camera", np.stack([right, down, forward]))
        focal = 0.5 * self.height / math.tan(math.radians(self.vertical_fov_deg) / 2.0)
        object.__setattr__(self, "focal_px", focal)

    def project(self, points_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) to pixel coordinates (..., 2) as (column, row), and depth (m)."""
        cam = (np.asarray(points_m, dtype=float) - self.position_m) @ self._world_to_camera.T
        depth = cam[..., 2]
        safe = np.maximum(depth, 1e-6)
        cols = self.focal_px * cam[..., 0] / safe + 0.5 * self.width - 0.5
        rows = self.focal_px * cam[..., 1] / safe + 0.5 * self.height - 0.5
        return np.stack([cols, rows], axis=-1), depth


def _box(
    canvas: np.ndarray, c_lo: float, r_lo: float, c_hi: float, r_hi: float
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    height, width = canvas.shape[:2]
    c0, r0 = max(math.floor(c_lo), 0), max(math.floor(r_lo), 0)
    c1, r1 = min(math.ceil(c_hi) + 1, width), min(math.ceil(r_hi) + 1, height)
    if c0 >= c1 or r0 >= r1:
        return None
    cols = np.arange(c0, c1, dtype=np.float32)[None, :]
    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    return slice(r0, r1), slice(c0, c1), cols, rows


def _blend(
    canvas: np.ndarray, rows: slice, cols: slice, coverage: np.ndarray, color: np.ndarray
) -> None:
    region = canvas[rows, cols]
    region += coverage[..., None] * (color - region)


def draw_capsule(
    canvas: np.ndarray,
    start_px: np.ndarray,
    end_px: np.ndarray,
    radius_px: float,
    color: np.ndarray,
) -> None:
    """A thick line with round caps (all points within ``radius_px`` of the segment)."""
    radius = max(float(radius_px), 0.5)
    c0, r0, c1, r1 = float(start_px[0]), float(start_px[1]), float(end_px[0]), float(end_px[1])
    pad = radius + 1.0
    box = _box(canvas, min(c0, c1) - pad, min(r0, r1) - pad, max(c0, c1) + pad, max(r0, r1) + pad)
    if box is None:
        return
    rows, cols, col_grid, row_grid = box
    seg_c, seg_r = c1 - c0, r1 - r0
    rel_c, rel_r = col_grid - c0, row_grid - r0
    seg_len2 = seg_c * seg_c + seg_r * seg_r
    if seg_len2 > 1e-12:
        t = np.clip((rel_c * seg_c + rel_r * seg_r) * (1.0 / seg_len2), 0.0, 1.0)
        dist = np.hypot(rel_c - t * seg_c, rel_r - t * seg_r)
    else:
        dist = np.hypot(rel_c, rel_r)
    coverage = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    _blend(canvas, rows, cols, coverage, color)


def draw_convex_polygon(canvas: np.ndarray, vertices_px: np.ndarray, color: np.ndarray) -> None:
    """A filled convex polygon (vertices in either winding order)."""
    vertices = np.asarray(vertices_px, dtype=np.float64)
    (c_lo, r_lo), (c_hi, r_hi) = vertices.min(axis=0) - 1.0, vertices.max(axis=0) + 1.0
    box = _box(canvas, c_lo, r_lo, c_hi, r_hi)
    if box is None:
        return
    rows, cols, col_grid, row_grid = box
    following = np.concatenate([vertices[1:], vertices[:1]])
    edges = following - vertices
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    keep = lengths > 1e-9
    area2 = np.sum(vertices[:, 0] * following[:, 1] - following[:, 0] * vertices[:, 1])
    # Outward unit normals; the signed distance to the polygon ~ the largest signed distance
    # to its edge lines.
    scale = np.where(area2 > 0, 1.0, -1.0) / lengths[keep]
    normal_c, normal_r = edges[keep, 1] * scale, -edges[keep, 0] * scale
    offset = -(normal_c * vertices[keep, 0] + normal_r * vertices[keep, 1])
    sdf = (
        normal_c[:, None, None] * col_grid
        + normal_r[:, None, None] * row_grid
        + offset[:, None, None]
    ).max(axis=0)
    coverage = np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)
    _blend(canvas, rows, cols, coverage, color)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of 2-D points, counter-clockwise (monotone chain)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=float)))

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])
