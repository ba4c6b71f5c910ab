"""The overhead camera's view of the bimanual scene: table, both arms and the cubes.

Arms are drawn as capsules and cubes as shaded boxes, far ones first (painter's algorithm),
with Gaussian pixel noise; the floor and table, which never move, are drawn once per size.
"""

from __future__ import annotations

import numpy as np

from rtc_ros.sim.config import ARMS, GRIPPER_INDEX, JOINTS_PER_ARM, BimanualConfig, arm_slice
from rtc_ros.sim.cubes import Cube
from rtc_ros.sim.kinematics import forward_kinematics
from rtc_ros.sim.render import PinholeCamera, convex_hull, draw_capsule, draw_convex_polygon

_TABLE_COLOR = np.array([150.0, 132.0, 110.0], dtype=np.float32)
_FLOOR_COLOR = np.array([45.0, 45.0, 52.0], dtype=np.float32)
_CUBE_COLORS = (  # left red, right blue
    np.array([200.0, 30.0, 30.0], dtype=np.float32),
    np.array([30.0, 60.0, 210.0], dtype=np.float32),
)
_CUBE_SIDE_COLORS = tuple(color * np.float32(0.7) for color in _CUBE_COLORS)
_LINK_COLORS = (
    np.array([95.0, 95.0, 100.0], dtype=np.float32),  # base column
    np.array([205.0, 205.0, 205.0], dtype=np.float32),  # upper arm
    np.array([170.0, 170.0, 175.0], dtype=np.float32),  # forearm
    np.array([120.0, 120.0, 125.0], dtype=np.float32),  # wrist
    np.array([70.0, 70.0, 75.0], dtype=np.float32),  # gripper body
)
_LINK_RADII_M = (0.045, 0.03, 0.025, 0.022, 0.02)
_FINGER_COLOR = np.array([20.0, 20.0, 20.0], dtype=np.float32)
_FINGER_RADIUS_M = 0.007
_FINGER_LENGTH_M = 0.045
_SEGMENT_RADII_M = np.array([*_LINK_RADII_M, _FINGER_RADIUS_M, _FINGER_RADIUS_M] * len(ARMS))
_SEGMENT_COLORS = [*_LINK_COLORS, _FINGER_COLOR, _FINGER_COLOR] * len(ARMS)


class SceneRenderer:
    """Renders the scene for one configuration; caches a camera and a background per image size."""

    def __init__(self, config: BimanualConfig) -> None:
        self.config = config
        self._links = config.links
        self._bases = [config.base_pose(arm) for arm in range(len(ARMS))]
        self._cameras: dict[tuple[int, int], PinholeCamera] = {}
        self._backgrounds: dict[tuple[int, int], np.ndarray] = {}

    def camera(self, height: int | None = None, width: int | None = None) -> PinholeCamera:
        c = self.config
        key = (height or c.image_height, width or c.image_width)
        if key not in self._cameras:
            self._cameras[key] = PinholeCamera(
                c.camera_position_m, c.camera_look_at_m, c.camera_vertical_fov_deg, *key
            )
        return self._cameras[key]

    def render(
        self,
        q: np.ndarray,
        cubes: list[Cube],
        noise_rng: np.random.Generator,
        height: int | None = None,
        width: int | None = None,
    ) -> np.ndarray:
        """The image of joints ``q`` and ``cubes``, uint8 (height, width, 3) RGB."""
        c = self.config
        camera = self.camera(height, width)
        canvas = self._background(camera).copy()
        segments = []
        for arm in range(len(ARMS)):
            base, yaw = self._bases[arm]
            points, rotation = forward_kinematics(self._links, base, yaw, q[arm_slice(arm)])
            palm = points[-1] - rotation[:, 0] * _FINGER_LENGTH_M
            chain = np.vstack([points[:5], palm])
            half_open = 0.5 * q[arm * JOINTS_PER_ARM + GRIPPER_INDEX] + _FINGER_RADIUS_M
            finger_offsets = np.outer([-half_open, half_open], rotation[:, 1])
            segments.append(np.stack([chain[:-1], chain[1:]], axis=1))
            segments.append(np.stack([palm + finger_offsets, points[-1] + finger_offsets], axis=1))
        segments = np.concatenate(segments)  # (arms * 7, 2, 3): links, then two fingers, per arm
        n_seg = len(segments)
        cube_corners = np.concatenate([cube.corners(c.cube_size_m) for cube in cubes])  # (16, 3)
        px, depth = camera.project(np.concatenate([segments.reshape(-1, 3), cube_corners]))
        seg_px = px[: 2 * n_seg].reshape(n_seg, 2, 2)
        seg_depth = depth[: 2 * n_seg].reshape(n_seg, 2).mean(axis=1)
        radii_px = _SEGMENT_RADII_M * camera.focal_px / np.maximum(seg_depth, 1e-3)
        primitives = []  # (depth, draw function, args): painter's algorithm, far first
        for i in range(n_seg):
            capsule = (seg_px[i, 0], seg_px[i, 1], radii_px[i], _SEGMENT_COLORS[i])
            primitives.append((seg_depth[i], draw_capsule, capsule))
        for arm in range(len(cubes)):
            corners = slice(2 * n_seg + 8 * arm, 2 * n_seg + 8 * arm + 8)
            cube_px, cube_depth = px[corners], depth[corners]
            # The whole silhouette in a darker shade (sides), then the top face over it.
            silhouette, top = (
                (convex_hull(cube_px), _CUBE_SIDE_COLORS[arm]),
                (cube_px[4:], _CUBE_COLORS[arm]),
            )
            primitives.append((cube_depth.mean(), draw_convex_polygon, silhouette))
            primitives.append((cube_depth[4:].mean() - 1e-3, draw_convex_polygon, top))
        for _, draw, args in sorted(primitives, key=lambda item: -item[0]):
            draw(canvas, *args)
        if c.image_noise_std > 0:
            noise = noise_rng.standard_normal(canvas.shape, dtype=np.float32)
            canvas += noise * np.float32(c.image_noise_std)
        return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)

    def _background(self, camera: PinholeCamera) -> np.ndarray:
        """Floor and table, which never move: drawn once per image size."""
        key = (camera.height, camera.width)
        if key not in self._backgrounds:
            canvas = np.empty((camera.height, camera.width, 3), dtype=np.float32)
            canvas[:] = _FLOOR_COLOR
            x0, x1, y0, y1 = self.config.table_xy_m
            corners = np.array([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]])
            draw_convex_polygon(canvas, camera.project(corners)[0], _TABLE_COLOR)
            self._backgrounds[key] = canvas
        return self._backgrounds[key]
