"""A ROS-free simulated bimanual robot (two ViperX-300-shaped arms, ALOHA style) and its task.

Interface as a real position-controlled arm presents it: joint position commands in, noisy
joint states and a camera image out. Each joint is a servo that tracks its latest command
with a velocity- and acceleration-limited profile (first order near the goal, time-optimal
braking farther out), after a bus latency. Commands are clamped to the position limits; a
NaN entry keeps that joint's previous command.

The task: each arm must grasp its own cube (left: red, right: blue), placed at random on its
half of the table at every reset, and with some probability moved once early in the episode.
The cube positions are not in the joint state; a policy has to find them in the image.
A gripper closing on air closes fully; closing with its fingertip centre within
``success_distance_m`` of its cube stalls on the cube, which then follows the gripper.
Not modelled: collisions (links pass through the table, each other and the cubes) and gravity.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from rtc_ros.sim.kinematics import ARM_JOINTS, ArmLinks, UnreachableError, forward_kinematics, top_down_ik
from rtc_ros.sim.render import PinholeCamera, convex_hull, draw_capsule, draw_convex_polygon

ARMS = ("left", "right")
ARM_JOINT_SUFFIXES = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
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

    joint_names: tuple[str, ...] = tuple(f"{arm}_{suffix}" for arm in ARMS for suffix in ARM_JOINT_SUFFIXES)
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
                f"joint_names must be {n} distinct names (left arm then right arm), got {self.joint_names}")
        for name in ("position_lower", "position_upper", "velocity_limits", "acceleration_limits",
                     "home_positions", "process_noise_std", "position_noise_std", "velocity_noise_std"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one value per joint ({n}), got {len(getattr(self, name))}")
        lower, upper = np.array(self.position_lower), np.array(self.position_upper)
        if np.any(lower >= upper):
            raise ValueError(
                f"position_lower must be below position_upper for every joint, got {lower} / {upper}")
        if np.any(np.array(self.velocity_limits) <= 0) or np.any(np.array(self.acceleration_limits) <= 0):
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
            raise ValueError(f"target_jump_probability must be in [0, 1], got {self.target_jump_probability}")
        if self.target_jump_window_s[0] > self.target_jump_window_s[1]:
            raise ValueError(
                f"target_jump_window_s must be (earliest, latest), got {self.target_jump_window_s}")
        gripper_open = min(self.position_upper[GRIPPER_INDEX::JOINTS_PER_ARM])
        if not 0 < self.cube_size_m < gripper_open:
            raise ValueError(
                f"cube_size_m must be in (0, gripper opening {gripper_open}), got {self.cube_size_m}")

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
    def from_dict(cls, values: dict) -> "BimanualConfig":
        """Inverse of :meth:`to_dict`; missing keys keep their defaults, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BimanualConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})


def arm_slice(arm: int) -> slice:
    """The 7 entries of arm 0 (left) or 1 (right) in a 14-vector."""
    return slice(arm * JOINTS_PER_ARM, (arm + 1) * JOINTS_PER_ARM)


@dataclass
class _Cube:
    position: np.ndarray
    yaw: float
    jump_time_s: float = math.inf
    held_offset: np.ndarray | None = None
    """Cube centre minus fingertip centre while held, else None."""


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
_RELEASE_MARGIN_M = 0.002
_SEGMENT_RADII_M = np.array([*_LINK_RADII_M, _FINGER_RADIUS_M, _FINGER_RADIUS_M] * len(ARMS))
_SEGMENT_COLORS = [*_LINK_COLORS, _FINGER_COLOR, _FINGER_COLOR] * len(ARMS)


class BimanualSim:
    """The simulated robot and task. Deterministic given the Generator it is built with.

    Physics, sensor noise, image noise and task sampling draw from separate child streams, so
    rendering more or less often does not change the robot's motion.
    """

    def __init__(self, config: BimanualConfig | None = None, rng: np.random.Generator | None = None) -> None:
        self.config = config or BimanualConfig()
        c = self.config
        rng = rng if rng is not None else np.random.default_rng()
        self._physics_rng, self._sensor_rng, self._camera_rng, self._task_rng = rng.spawn(4)
        self._lower = np.array(c.position_lower)
        self._upper = np.array(c.position_upper)
        self._vmax = np.array(c.velocity_limits)
        self._amax = np.array(c.acceleration_limits)
        self._process_std = np.array(c.process_noise_std) * math.sqrt(c.physics_step_s)
        self._inv_time_constant = 1.0 / c.tracking_time_constant_s
        self._two_amax = 2.0 * self._amax
        self._amax_dt = self._amax * c.physics_step_s
        self._links = c.links
        self._bases = [c.base_pose(arm) for arm in range(len(ARMS))]
        self._gripper_indices = np.array([arm * JOINTS_PER_ARM + GRIPPER_INDEX for arm in range(len(ARMS))])
        self._cameras: dict[tuple[int, int], PinholeCamera] = {}
        self._backgrounds: dict[tuple[int, int], np.ndarray] = {}
        self.reset()

    # ----------------------------------------------------------------- episode
    def reset(self) -> None:
        """Start a new episode: arms near home at rest, both cubes placed anew, time 0."""
        c = self.config
        noise = self._task_rng.normal(0.0, c.reset_noise_std, c.num_joints)
        noise[[GRIPPER_INDEX, JOINTS_PER_ARM + GRIPPER_INDEX]] = 0.0
        self._q = np.clip(np.array(c.home_positions) + noise, self._lower, self._upper)
        self._v = np.zeros(c.num_joints)
        self._command = self._q.copy()
        self._pending: list[tuple[float, np.ndarray]] = []
        self._physics_steps = 0
        self._time_s = 0.0
        self._unstepped_s = 0.0
        self._cubes = []
        for arm in range(len(ARMS)):
            cube = _Cube(*self._sample_cube_pose(arm))
            if self._task_rng.random() < c.target_jump_probability:
                cube.jump_time_s = float(self._task_rng.uniform(*c.target_jump_window_s))
            self._cubes.append(cube)
        self._cubes_moved = 0

    def _sample_cube_pose(self, arm: int, away_from: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        c = self.config
        x0, x1, y0, y1 = c.target_region(arm)
        base, yaw = self._bases[arm]
        for _ in range(1000):
            x, y = self._task_rng.uniform(x0, x1), self._task_rng.uniform(y0, y1)
            xyz = np.array([x, y, c.cube_size_m / 2])
            min_distance_m = c.target_jump_min_distance_m
            if away_from is not None and math.hypot(x - away_from[0], y - away_from[1]) < min_distance_m:
                continue
            if self._graspable(arm, xyz):
                # The cube faces its arm, so either finger orientation of a top-down grasp fits it.
                return xyz, math.atan2(xyz[1] - base[1], xyz[0] - base[0])
        raise ValueError(
            f"no graspable cube position found in {c.target_region(arm)} for the {ARMS[arm]} arm")

    def _graspable(self, arm: int, xyz: np.ndarray) -> bool:
        base, yaw = self._bases[arm]
        try:
            for lift_m in (0.0, 0.1):
                for wrist_rotate in (0.0, math.pi / 2):
                    top_down_ik(self._links, base, yaw, xyz + [0.0, 0.0, lift_m], wrist_rotate,
                                self._lower[arm_slice(arm)], self._upper[arm_slice(arm)])
        except UnreachableError:
            return False
        return True

    # --------------------------------------------------------------- interface
    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.config.joint_names

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset."""
        return self._time_s

    @property
    def episode_over(self) -> bool:
        return self._time_s >= self.config.episode_duration_s - 1e-9

    def set_command(self, positions: np.ndarray) -> None:
        """Position targets for all 14 joints in ``joint_names`` order.

        Out-of-limit values are clamped; NaN entries keep that joint's previous command.
        The servos act on the command ``command_latency_s`` later.
        """
        target = np.asarray(positions, dtype=float)
        if target.shape != (self.config.num_joints,):
            raise ValueError(f"command must have shape ({self.config.num_joints},), got {target.shape}")
        latest = self._pending[-1][1] if self._pending else self._command
        target = np.where(np.isnan(target), latest, np.clip(target, self._lower, self._upper))
        self._pending.append((self._time_s + self.config.command_latency_s, target))

    def step(self, duration_s: float) -> None:
        """Advance the physics by ``duration_s``; leftovers under one physics step carry over."""
        if duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        dt = self.config.physics_step_s
        self._unstepped_s += duration_s
        n_steps = int(math.floor(self._unstepped_s / dt + 1e-9))
        self._unstepped_s = max(self._unstepped_s - n_steps * dt, 0.0)
        if n_steps == 0:
            return
        noise = self._process_std * self._physics_rng.standard_normal((n_steps, self.config.num_joints))
        for disturbance in noise:
            while self._pending and self._pending[0][0] <= self._time_s + 1e-9:
                self._command = self._pending.pop(0)[1]
            self._physics_step(dt, disturbance)
            self._physics_steps += 1
            self._time_s = self._physics_steps * dt  # counted, so long runs do not drift
            self._move_cubes_due()
        self._carry_held_cubes()

    def _physics_step(self, dt: float, disturbance: np.ndarray) -> None:
        q, v = self._q, self._v
        error = self._command - q
        distance = np.abs(error)
        # The servo profile: error / time constant near the goal, never faster than it can still
        # brake within the remaining distance at its acceleration limit, never above the velocity limit.
        speed = np.minimum(distance * self._inv_time_constant, np.sqrt(self._two_amax * distance))
        np.minimum(speed, self._vmax, out=speed)
        change = np.copysign(speed, error) - v
        np.minimum(change, self._amax_dt, out=change)
        np.maximum(change, -self._amax_dt, out=change)
        v += change
        v += disturbance
        np.minimum(v, self._vmax, out=v)
        np.maximum(v, -self._vmax, out=v)
        grippers_before = q[self._gripper_indices]
        q += v * dt
        at_limit = (q < self._lower) | (q > self._upper)
        if at_limit.any():
            np.clip(q, self._lower, self._upper, out=q)
            v[at_limit] = 0.0
        self._grip(grippers_before)

    def _grip(self, grippers_before: np.ndarray) -> None:
        """Fingers closing across the cube's width with the cube between them stall on it."""
        width = self.config.cube_size_m
        for arm, cube in enumerate(self._cubes):
            g = self._gripper_indices[arm]
            if cube.held_offset is None:
                if grippers_before[arm] >= width > self._q[g]:
                    ee = self._end_effector(arm)
                    if np.linalg.norm(ee - cube.position) <= self.config.success_distance_m:
                        cube.held_offset = cube.position - ee
            elif self._q[g] > width + _RELEASE_MARGIN_M:
                cube.held_offset = None
                cube.position[2] = width / 2  # released: it drops back onto the table
            if cube.held_offset is not None and self._q[g] < width:
                self._q[g] = width
                self._v[g] = max(self._v[g], 0.0)

    def _end_effector(self, arm: int) -> np.ndarray:
        base, yaw = self._bases[arm]
        return forward_kinematics(self._links, base, yaw, self._q[arm_slice(arm)])[0][-1]

    def _move_cubes_due(self) -> None:
        for arm, cube in enumerate(self._cubes):
            if self._time_s >= cube.jump_time_s:
                cube.jump_time_s = math.inf
                if cube.held_offset is None:
                    cube.position, cube.yaw = self._sample_cube_pose(arm, away_from=cube.position)
                    self._cubes_moved += 1

    def _carry_held_cubes(self) -> None:
        for arm, cube in enumerate(self._cubes):
            if cube.held_offset is not None:
                cube.position = self._end_effector(arm) + cube.held_offset
                cube.position[2] = max(cube.position[2], self.config.cube_size_m / 2)

    def joint_state(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """``(names, positions, velocities)`` as the joint encoders report them (with noise)."""
        c = self.config
        positions = self._q + self._sensor_rng.standard_normal(c.num_joints) * c.position_noise_std
        velocities = self._v + self._sensor_rng.standard_normal(c.num_joints) * c.velocity_noise_std
        return c.joint_names, positions, velocities

    # ---------------------------------------------------------- task and truth
    def end_effector_positions(self) -> np.ndarray:
        """True fingertip centres (2, 3) in the world frame, left then right."""
        return np.stack([self._end_effector(arm) for arm in range(len(ARMS))])

    def target_positions(self) -> np.ndarray:
        """True cube centres (2, 3). Privileged: for the expert and metrics, not for policies."""
        return np.stack([cube.position.copy() for cube in self._cubes])

    def target_distances(self) -> np.ndarray:
        """Fingertip centre to own cube centre, m, per arm (2,)."""
        return np.linalg.norm(self.end_effector_positions() - self.target_positions(), axis=1)

    def grasped(self) -> np.ndarray:
        """Per arm (2,): the gripper is closed on its cube."""
        return np.array([cube.held_offset is not None for cube in self._cubes])

    def task_success(self) -> bool:
        """Both arms hold their cubes."""
        return bool(self.grasped().all())

    @property
    def targets_moved(self) -> int:
        """How many cube moves have happened this episode."""
        return self._cubes_moved

    # ------------------------------------------------------------------ camera
    def camera(self, height: int | None = None, width: int | None = None) -> PinholeCamera:
        c = self.config
        key = (height or c.image_height, width or c.image_width)
        if key not in self._cameras:
            self._cameras[key] = PinholeCamera(
                c.camera_position_m, c.camera_look_at_m, c.camera_vertical_fov_deg, *key)
        return self._cameras[key]

    def render(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The overhead camera image, uint8 (height, width, 3) RGB."""
        c = self.config
        camera = self.camera(height, width)
        canvas = self._background(camera).copy()
        segments = []
        for arm in range(len(ARMS)):
            base, yaw = self._bases[arm]
            points, rotation = forward_kinematics(self._links, base, yaw, self._q[arm_slice(arm)])
            palm = points[-1] - rotation[:, 0] * _FINGER_LENGTH_M
            chain = np.vstack([points[:5], palm])
            half_open = 0.5 * self._q[arm * JOINTS_PER_ARM + GRIPPER_INDEX] + _FINGER_RADIUS_M
            finger_offsets = np.outer([-half_open, half_open], rotation[:, 1])
            segments.append(np.stack([chain[:-1], chain[1:]], axis=1))
            segments.append(np.stack([palm + finger_offsets, points[-1] + finger_offsets], axis=1))
        segments = np.concatenate(segments)  # (arms * 7, 2, 3): links, then two fingers, per arm
        n_seg = len(segments)
        cube_corners = np.concatenate([self._cube_corners(cube) for cube in self._cubes])  # (16, 3)
        px, depth = camera.project(np.concatenate([segments.reshape(-1, 3), cube_corners]))
        seg_px = px[:2 * n_seg].reshape(n_seg, 2, 2)
        seg_depth = depth[:2 * n_seg].reshape(n_seg, 2).mean(axis=1)
        radii_px = _SEGMENT_RADII_M * camera.focal_px / np.maximum(seg_depth, 1e-3)
        primitives = []  # (depth, draw function, args): painter's algorithm, far first
        for i in range(n_seg):
            capsule = (seg_px[i, 0], seg_px[i, 1], radii_px[i], _SEGMENT_COLORS[i])
            primitives.append((seg_depth[i], draw_capsule, capsule))
        for arm in range(len(self._cubes)):
            corners = slice(2 * n_seg + 8 * arm, 2 * n_seg + 8 * arm + 8)
            cube_px, cube_depth = px[corners], depth[corners]
            # The whole silhouette in a darker shade (sides), then the top face over it.
            silhouette, top = (convex_hull(cube_px), _CUBE_SIDE_COLORS[arm]), (cube_px[4:], _CUBE_COLORS[arm])
            primitives.append((cube_depth.mean(), draw_convex_polygon, silhouette))
            primitives.append((cube_depth[4:].mean() - 1e-3, draw_convex_polygon, top))
        for _, draw, args in sorted(primitives, key=lambda item: -item[0]):
            draw(canvas, *args)
        if c.image_noise_std > 0:
            noise = self._camera_rng.standard_normal(canvas.shape, dtype=np.float32)
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

    def _cube_corners(self, cube: _Cube) -> np.ndarray:
        """The 8 corners (8, 3): bottom face then top face, each counter-clockwise."""
        half = self.config.cube_size_m / 2
        cos_y, sin_y = math.cos(cube.yaw), math.sin(cube.yaw)
        square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        xy = square @ np.array([[cos_y, sin_y], [-sin_y, cos_y]]) + cube.position[:2]
        bottom = np.column_stack([xy, np.full(4, cube.position[2] - half)])
        top = np.column_stack([xy, np.full(4, cube.position[2] + half)])
        return np.concatenate([bottom, top])
