"""The task's cubes: where each is placed, how a closing gripper grasps it, how a held one follows.

Each arm must grasp its own cube (left: red, right: blue), placed at random on its half of the
table at every reset, and with some probability moved once early in the episode. A gripper
closing on air closes fully; closing with its fingertip centre within ``success_distance_m`` of
its cube stalls on the cube, which then follows the gripper until the gripper opens again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtc_ros.sim.config import ARMS, BimanualConfig, arm_slice
from rtc_ros.sim.kinematics import UnreachableError, top_down_ik

RELEASE_MARGIN_M = 0.002
"""A held cube is released once its gripper opens this much wider than the cube."""

EndEffector = Callable[[int], np.ndarray]
"""The fingertip centre (3,) of arm 0 (left) or 1 (right) in the world frame, now."""


@dataclass
class Cube:
    position: np.ndarray
    yaw: float
    jump_time_s: float = math.inf
    held_offset: np.ndarray | None = None
    """Cube centre minus fingertip centre while held, else None."""

    def corners(self, size_m: float) -> np.ndarray:
        """The 8 corners (8, 3): bottom face then top face, each counter-clockwise."""
        half = size_m / 2
        cos_y, sin_y = math.cos(self.yaw), math.sin(self.yaw)
        square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        xy = square @ np.array([[cos_y, sin_y], [-sin_y, cos_y]]) + self.position[:2]
        bottom = np.column_stack([xy, np.full(4, self.position[2] - half)])
        top = np.column_stack([xy, np.full(4, self.position[2] + half)])
        return np.concatenate([bottom, top])


class Cubes:
    """Both arms' cubes, drawn from the task's random stream."""

    def __init__(self, config: BimanualConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._rng = rng
        self._links = config.links
        self._bases = [config.base_pose(arm) for arm in range(len(ARMS))]
        self._lower, self._upper = np.array(config.position_lower), np.array(config.position_upper)
        self.cubes: list[Cube] = []
        self.moved = 0
        """How many cube moves have happened this episode."""

    def reset(self) -> None:
        """Place both cubes anew and draw whether and when each moves."""
        self.cubes = []
        for arm in range(len(ARMS)):
            cube = Cube(*self._sample_pose(arm))
            if self._rng.random() < self.config.target_jump_probability:
                cube.jump_time_s = float(self._rng.uniform(*self.config.target_jump_window_s))
            self.cubes.append(cube)
        self.moved = 0

    def grip(
        self,
        grippers_before: np.ndarray,
        q: np.ndarray,
        v: np.ndarray,
        gripper_indices: np.ndarray,
        end_effector: EndEffector,
    ) -> None:
        """Fingers closing across the cube's width with the cube between them stall on it.

        ``q`` and ``v`` (all joints) are changed in place: a gripper holding a cube stops at its
        width.
        """
        width = self.config.cube_size_m
        for arm, cube in enumerate(self.cubes):
            g = gripper_indices[arm]
            if cube.held_offset is None:
                if grippers_before[arm] >= width > q[g]:
                    ee = end_effector(arm)
                    if np.linalg.norm(ee - cube.position) <= self.config.success_distance_m:
                        cube.held_offset = cube.position - ee
            elif q[g] > width + RELEASE_MARGIN_M:
                cube.held_offset = None
                cube.position[2] = width / 2  # released: it drops back onto the table
            if cube.held_offset is not None and q[g] < width:
                q[g] = width
                v[g] = max(v[g], 0.0)

    def move_due(self, time_s: float) -> None:
        """Move each cube whose time has come, unless it is held."""
        for arm, cube in enumerate(self.cubes):
            if time_s >= cube.jump_time_s:
                cube.jump_time_s = math.inf
                if cube.held_offset is None:
                    cube.position, cube.yaw = self._sample_pose(arm, away_from=cube.position)
                    self.moved += 1

    def carry(self, end_effector: EndEffector) -> None:
        """Held cubes follow their fingertips, never below the table."""
        for arm, cube in enumerate(self.cubes):
            if cube.held_offset is not None:
                cube.position = end_effector(arm) + cube.held_offset
                cube.position[2] = max(cube.position[2], self.config.cube_size_m / 2)

    def _sample_pose(
        self, arm: int, away_from: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        c = self.config
        x0, x1, y0, y1 = c.target_region(arm)
        base, yaw = self._bases[arm]
        for _ in range(1000):
            x, y = self._rng.uniform(x0, x1), self._rng.uniform(y0, y1)
            xyz = np.array([x, y, c.cube_size_m / 2])
            min_distance_m = c.target_jump_min_distance_m
            if (
                away_from is not None
                and math.hypot(x - away_from[0], y - away_from[1]) < min_distance_m
            ):
                continue
            if self._graspable(arm, xyz):
                # The cube faces its arm, so either finger orientation of a top-down grasp fits it.
                return xyz, math.atan2(xyz[1] - base[1], xyz[0] - base[0])
        raise ValueError(
            f"no graspable cube position found in {c.target_region(arm)} for the {ARMS[arm]} arm"
        )

    def _graspable(self, arm: int, xyz: np.ndarray) -> bool:
        base, yaw = self._bases[arm]
        try:
            for lift_m in (0.0, 0.1):
                for wrist_rotate in (0.0, math.pi / 2):
                    top_down_ik(
                        self._links,
                        base,
                        yaw,
                        xyz + [0.0, 0.0, lift_m],
                        wrist_rotate,
                        self._lower[arm_slice(arm)],
                        self._upper[arm_slice(arm)],
                    )
        except UnreachableError:
            return False
        return True
