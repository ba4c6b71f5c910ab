"""Configuration of the simulated bimanual robot, its task and its camera, and its joint layout."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from rtc_ros.sim.kinematics import ARM_JOINTS, ArmLinks

ARMS = ("left", "right")
ARM_JOINT_SUFFIXES = (
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
    "gripper",
)
JOINTS_PER_ARM = len(ARM_JOINT_SUFFIXES)
GRIPPER_INDEX = ARM_JOINTS
"""Index of the gripper within one arm's 7 joints; its position is the finger opening in m."""

_ARM_LOWER = (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158, 0.0)
_ARM_UPPER = (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158, 0.074)
_ARM_VELOCITY = (3.14159, 3.14159, 3.14159, 3.14159, 3.14159, 3.14159, 0.15)
_ARM_ACCELERATION = (12.0, 12.0, 12.0, 12.0, 12.0, 12.0, 1.5)
_ARM_HOME = (0.0, -0.45, 0.55, 0.0, 1.45, 0.0, 0.074)
_ARM_PROCESS_NOISE = (0.02,) * 6 + (0.001,)
_ARM_POSITION_NOISE = (0.001,) * 6 + (0.0002,)
_ARM_VELOCITY_NOISE = (0.01,) * 6 + (0.001,)


def _both(values: tuple) -> tuple:
    return tuple(values) * 2


@dataclass(frozen=True)
class BimanualConfig:
    """Robot, task and camera of the bimanual simulation; flat fields so ROS params can hold it.

    Per-joint tuples have 14 entries: the 7 left joints then the 7 right joints, in
    ``joint_names`` order. Revolute joints in rad, grippers in m of finger opening.
    """

    joint_names: tuple[str, ...] = tuple(
        f"{arm}_{suffix}" for arm in ARMS for suffix in ARM_JOINT_SUFFIXES
    )
    position_lower: tuple[float, ...] = _both(_ARM_LOWER)
    position_upper: tuple[float, ...] = _both(_ARM_UPPER)
    velocity_limits: tuple[float, ...] = _both(_ARM_VELOCITY)
    """Per joint, rad/s or m/s."""
    acceleration_limits: tuple[float, ...] = _both(_ARM_ACCELERATION)
    """Per joint, rad/s^2 or m/s^2."""
    home_positions: tuple[float, ...] = _both(_ARM_HOME)
    """Where each reset starts the joints (plus ``reset_noise_std``)."""
    reset_noise_std: float = 0.05
    """Std of the random offset on the start pose of arm joints, rad."""
    # The arm's links, flat for ROS parameters; :class:`ArmLinks` holds their defaults and meaning.
    shoulder_height_m: float = ArmLinks.shoulder_height_m
    upper_arm_length_m: float = ArmLinks.upper_arm_length_m
    upper_arm_offset_m: float = ArmLinks.upper_arm_offset_m
    forearm_length_m: float = ArmLinks.forearm_length_m
    wrist_length_m: float = ArmLinks.wrist_length_m
    gripper_length_m: float = ArmLinks.gripper_length_m
    left_base_xyz_m: tuple[float, float, float] = (-0.469, 0.0, 0.0)
    right_base_xyz_m: tuple[float, float, float] = (0.469, 0.0, 0.0)
    left_base_yaw_rad: float = 0.0
    right_base_yaw_rad: float = math.pi
    """The arms face each other across the table."""
    physics_step_s: float = 0.002
    tracking_time_constant_s: float = 0.03
    """Servo position loop: close to the goal a joint moves at error / time constant."""
    command_latency_s: float = 0.004
    """Bus delay between ``set_command`` and the servos acting on it."""
    process_noise_std: tuple[float, ...] = _both(_ARM_PROCESS_NOISE)
    """Random velocity disturbance per joint, (rad or m)/s per sqrt(s)."""
    position_noise_std: tuple[float, ...] = _both(_ARM_POSITION_NOISE)
    """Measurement noise on reported positions."""
    velocity_noise_std: tuple[float, ...] = _both(_ARM_VELOCITY_NOISE)
    """Measurement noise on reported velocities."""
    table_xy_m: tuple[float, float, float, float] = (-0.6, 0.6, -0.4, 0.4)
    """Table top extent: x_min, x_max, y_min, y_max (z = 0)."""
    cube_size_m: float = 0.04
    left_target_region_m: tuple[float, float, float, float] = (-0.22, -0.06, -0.18, 0.18)
    """Where the left (red) cube's centre is drawn: x_min, x_max, y_min, y_max."""
    right_target_region_m: tuple[float, float, float, float] = (0.06, 0.22, -0.18, 0.18)
    """Where the right (blue) cube's centre is drawn: x_min, x_max, y_min, y_max."""
    target_jump_probability: float = 0.35
    """Per cube and episode: probability that it moves once, if not yet grasped."""
    target_jump_window_s: tuple[float, float] = (0.5, 1.5)
    """The move happens at a time drawn uniformly in this window."""
    target_jump_min_distance_m: float = 0.1
    success_distance_m: float = 0.025
    """Fingertip centre to cube centre distance within which a closing gripper holds the cube."""
    episode_duration_s: float = 6.0
    camera_position_m: tuple[float, float, float] = (0.0, -0.3, 1.5)
    camera_look_at_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    camera_vertical_fov_deg: float = 38.0
    image_height: int = 96
    image_width: int = 96
    image_noise_std: float = 2.0
    """Gaussian pixel noise, in 0..255 intensity units."""

    def __post_init__(self) -> None:
        n = len(ARMS) * JOINTS_PER_ARM
        if len(self.joint_names) != n or len(set(self.joint_names)) != n:
            raise ValueError(
                f"joint_names must be {n} distinct names (left arm then right arm), got "
                f"{self.joint_names}"
            )
        for name in (
            "position_lower",
            "position_upper",
            "velocity_limits",
            "acceleration_limits",
            "home_positions",
            "process_noise_std",
            "position_noise_std",
            "velocity_noise_std",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} needs one value per joint ({n}), got {len(getattr(self, name))}"
                )
        lower, upper = np.array(self.position_lower), np.array(self.position_upper)
        if np.any(lower >= upper):
            raise ValueError(
                f"position_lower must be below position_upper for every joint, got {lower} / "
                f"{upper}"
            )
        if np.any(np.array(self.velocity_limits) <= 0) or np.any(
            np.array(self.acceleration_limits) <= 0
        ):
            raise ValueError("velocity_limits and acceleration_limits must be positive")
        home = np.array(self.home_positions)
        if np.any(home < lower) or np.any(home > upper):
            raise ValueError(f"home_positions must lie within the position limits, got {home}")
        if self.physics_step_s <= 0 or self.tracking_time_constant_s < self.physics_step_s:
            raise ValueError(
                f"need 0 < physics_step_s <= tracking_time_constant_s, got {self.physics_step_s}, "
                f"{self.tracking_time_constant_s}"
            )
        if self.command_latency_s < 0:
            raise ValueError(f"command_latency_s must be >= 0, got {self.command_latency_s}")
        if not 0.0 <= self.target_jump_probability <= 1.0:
            raise ValueError(
                f"target_jump_probability must be in [0, 1], got {self.target_jump_probability}"
            )
        if self.target_jump_window_s[0] > self.target_jump_window_s[1]:
            raise ValueError(
                f"target_jump_window_s must be (earliest, latest), got {self.target_jump_window_s}"
            )
        gripper_open = min(self.position_upper[GRIPPER_INDEX::JOINTS_PER_ARM])
        if not 0 < self.cube_size_m < gripper_open:
            raise ValueError(
                f"cube_size_m must be in (0, gripper opening {gripper_open}), got "
                f"{self.cube_size_m}"
            )

    @property
    def links(self) -> ArmLinks:
        return ArmLinks(**{f.name: getattr(self, f.name) for f in fields(ArmLinks)})

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def base_pose(self, arm: int) -> tuple[np.ndarray, float]:
        """World position (3,) and yaw of arm 0 (left) or 1 (right)."""
        if arm == 0:
            return np.array(self.left_base_xyz_m), self.left_base_yaw_rad
        return np.array(self.right_base_xyz_m), self.right_base_yaw_rad

    def target_region(self, arm: int) -> tuple[float, float, float, float]:
        return self.left_target_region_m if arm == 0 else self.right_target_region_m

    def to_dict(self) -> dict:
        """Plain lists and scalars, ready for a ROS parameter YAML."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> BimanualConfig:
        """Inverse of :meth:`to_dict`; missing keys keep their
        defaults, unknown keys are errors.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BimanualConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(
            **{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
        )


def arm_slice(arm: int) -> slice:
    """The 7 entries of arm 0 (left) or 1 (right) in a 14-vector."""
    return slice(arm * JOINTS_PER_ARM, (arm + 1) * JOINTS_PER_ARM)
