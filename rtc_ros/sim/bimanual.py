"""A ROS-free simulated bimanual robot (two ViperX-300-shaped arms, ALOHA style) and its task.

Interface as a real position-controlled arm presents it: joint position commands in, noisy
joint states and a camera image out. Each joint is a servo that tracks its latest command
with a velocity- and acceleration-limited profile (first order near the goal, time-optimal
braking farther out), after a bus latency. Commands are clamped to the position limits; a
NaN entry keeps that joint's previous command.

The task (:mod:`rtc_ros.sim.cubes`): each arm must grasp its own cube, placed at random on its
half of the table. The cube positions are not in the joint state; a policy has to find them in
the image (:mod:`rtc_ros.sim.scene`). The configuration is :mod:`rtc_ros.sim.config`.
Not modelled: collisions (links pass through the table, each other and the cubes) and gravity.
"""

from __future__ import annotations

import math

import numpy as np

from rtc_ros.sim.config import ARMS, GRIPPER_INDEX, JOINTS_PER_ARM, BimanualConfig, arm_slice
from rtc_ros.sim.cubes import Cubes
from rtc_ros.sim.kinematics import forward_kinematics
from rtc_ros.sim.render import PinholeCamera
from rtc_ros.sim.scene import SceneRenderer


def episode_rng(seed: int, episode: int) -> np.random.Generator:
    """The random stream of episode ``episode`` (from 0) of an evaluation seeded with ``seed``.

    Child ``episode`` of ``seed`` (``default_rng(seed).spawn(n)[episode]``): an episode's cubes,
    start pose and noise do not depend on how the episodes before it went, so the same seed
    gives the same episodes through ROS and in process, for every method.
    """
    if episode < 0:
        raise ValueError(f"episode must be >= 0, got {episode}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(episode,)))


class BimanualSim:
    """The simulated robot and task. Deterministic given the Generator it is built with.

    Physics, sensor noise, image noise and task sampling draw from separate child streams, so
    rendering more or less often does not change the robot's motion.
    """

    def __init__(
        self, config: BimanualConfig | None = None, rng: np.random.Generator | None = None
    ) -> None:
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
        self._gripper_indices = np.array(
            [arm * JOINTS_PER_ARM + GRIPPER_INDEX for arm in range(len(ARMS))]
        )
        self._cubes = Cubes(c, self._task_rng)
        self._scene = SceneRenderer(c)
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
        self._cubes.reset()

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
            raise ValueError(
                f"command must have shape ({self.config.num_joints},), got {target.shape}"
            )
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
        noise = self._process_std * self._physics_rng.standard_normal(
            (n_steps, self.config.num_joints)
        )
        for disturbance in noise:
            while self._pending and self._pending[0][0] <= self._time_s + 1e-9:
                self._command = self._pending.pop(0)[1]
            self._physics_step(dt, disturbance)
            self._physics_steps += 1
            self._time_s = self._physics_steps * dt  # counted, so long runs do not drift
            self._cubes.move_due(self._time_s)
        self._cubes.carry(self._end_effector)

    def _physics_step(self, dt: float, disturbance: np.ndarray) -> None:
        q, v = self._q, self._v
        error = self._command - q
        distance = np.abs(error)
        # The servo profile: error / time constant near the goal, never faster than it can still
        # brake within the remaining distance at its acceleration limit, never above the velocity
        # limit.
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
        self._cubes.grip(grippers_before, q, v, self._gripper_indices, self._end_effector)

    def _end_effector(self, arm: int) -> np.ndarray:
        base, yaw = self._bases[arm]
        return forward_kinematics(self._links, base, yaw, self._q[arm_slice(arm)])[0][-1]

    def joint_state(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """``(names, positions, velocities)`` as the joint encoders report them (with noise)."""
        c = self.config
        positions = self._q + self._sensor_rng.standard_normal(c.num_joints) * c.position_noise_std
        velocities = (
            self._v + self._sensor_rng.standard_normal(c.num_joints) * c.velocity_noise_std
        )
        return c.joint_names, positions, velocities

    # ---------------------------------------------------------- task and truth
    def end_effector_positions(self) -> np.ndarray:
        """True fingertip centres (2, 3) in the world frame, left then right."""
        return np.stack([self._end_effector(arm) for arm in range(len(ARMS))])

    def target_positions(self) -> np.ndarray:
        """True cube centres (2, 3). Privileged: for the expert and metrics, not for policies."""
        return np.stack([cube.position.copy() for cube in self._cubes.cubes])

    def target_distances(self) -> np.ndarray:
        """Fingertip centre to own cube centre, m, per arm (2,)."""
        return np.linalg.norm(self.end_effector_positions() - self.target_positions(), axis=1)

    def grasped(self) -> np.ndarray:
        """Per arm (2,): the gripper is closed on its cube."""
        return np.array([cube.held_offset is not None for cube in self._cubes.cubes])

    def task_success(self) -> bool:
        """Both arms hold their cubes."""
        return bool(self.grasped().all())

    @property
    def targets_moved(self) -> int:
        """How many cube moves have happened this episode."""
        return self._cubes.moved

    # ------------------------------------------------------------------ camera
    def camera(self, height: int | None = None, width: int | None = None) -> PinholeCamera:
        return self._scene.camera(height, width)

    def render(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The overhead camera image, uint8 (height, width, 3) RGB."""
        return self._scene.render(self._q, self._cubes.cubes, self._camera_rng, height, width)
