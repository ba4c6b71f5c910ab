"""A scripted expert for the bimanual grasp task: joint-space quintic plans queried as chunks.

Per arm the plan is: approach a pre-grasp pose above the cube (gripper open), descend to the
grasp pose, close the gripper, hold. Poses come from the closed-form top-down IK; each move is
a quintic in joint space (minimum jerk when it starts at rest), long enough that every joint
stays within a fraction of its velocity and acceleration limits. It sees the true cube
positions; when a cube moves it replans that arm from the plan's current position, velocity
and acceleration, so its commands stay smooth, lifting first if the gripper is low.

Multimodal by design: a top-down grasp fits the cube with the fingers across or along the line
from the arm's base, so each arm picks wrist_rotate 0 or pi/2 at random per episode. Both
modes succeed; a policy trained on the demonstrations must commit to one per chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rtc_ros.sim.config import ARMS, GRIPPER_INDEX, JOINTS_PER_ARM, BimanualConfig, arm_slice
from rtc_ros.sim.kinematics import ARM_JOINTS, UnreachableError, forward_kinematics, top_down_ik

# Peak |velocity| and |acceleration| of a rest-to-rest minimum-jerk move of size D over T.
_MIN_JERK_PEAK_VELOCITY = 1.875  # * D / T
_MIN_JERK_PEAK_ACCELERATION = 5.7735  # * D / T^2
_REPLAN_DISTANCE_M = 0.01


@dataclass(frozen=True)
class ExpertConfig:
    """Timing and geometry of the scripted expert's plans."""

    control_period_s: float = 0.02
    """Spacing of the commands in a chunk (50 Hz)."""
    prediction_horizon: int = 50
    """H: commands per chunk."""
    pregrasp_height_m: float = 0.08
    """How far above the cube centre the approach ends."""
    velocity_fraction: float = 0.5
    """Plans keep each joint's peak speed within this fraction of its limit."""
    acceleration_fraction: float = 0.3
    min_approach_s: float = 1.2
    min_descend_s: float = 0.6
    close_duration_s: float = 0.5
    rotated_grasp_probability: float = 0.5
    """Per arm and episode: probability of the wrist_rotate = pi/2 grasp (0 or 1: unimodal)."""
    replan_joint_error_rad: float = 0.2
    """When measured joints are passed to ``action_chunk`` and an arm's joint is this far from
    the plan (the robot was held back or pushed), that arm is replanned from where it is."""

    def __post_init__(self) -> None:
        if self.control_period_s <= 0 or self.prediction_horizon < 1:
            raise ValueError(
                f"need control_period_s > 0 and prediction_horizon >= 1, got "
                f"{self.control_period_s}, {self.prediction_horizon}"
            )
        if not 0 < self.velocity_fraction <= 1 or not 0 < self.acceleration_fraction <= 1:
            raise ValueError("velocity_fraction and acceleration_fraction must be in (0, 1]")
        if not 0.0 <= self.rotated_grasp_probability <= 1.0:
            raise ValueError(
                "rotated_grasp_probability must be in [0, 1], got "
                f"{self.rotated_grasp_probability}"
            )


_POWERS = np.arange(6)
# Row k of _DERIVATIVE[d] maps the coefficients of p(tau) to the tau^k coefficient of d^d p /
# dtau^d.
_DERIVATIVE = [np.eye(6)]
for _ in range(2):
    _DERIVATIVE.append(np.diag(np.arange(1.0, 6.0), 1) @ _DERIVATIVE[-1])


@dataclass(frozen=True)
class _Quintic:
    """p(t) = sum_k coeffs[k] (t - start)^k on [start, start + duration], then held at the goal."""

    start_s: float
    duration_s: float
    derivatives: tuple[np.ndarray, ...]
    """Polynomial coefficients (6, joints) of position, velocity and acceleration."""

    @classmethod
    def to_rest(
        cls,
        start_s: float,
        duration_s: float,
        p0: np.ndarray,
        v0: np.ndarray,
        a0: np.ndarray,
        p1: np.ndarray,
    ) -> _Quintic:
        """From (p0, v0, a0) to p1 at zero velocity and acceleration."""
        t = duration_s
        delta = p1 - p0
        c3 = (20 * delta - 12 * v0 * t - 3 * a0 * t**2) / (2 * t**3)
        c4 = (-30 * delta + 16 * v0 * t + 3 * a0 * t**2) / (2 * t**4)
        c5 = (12 * delta - 6 * v0 * t - a0 * t**2) / (2 * t**5)
        coeffs = np.stack([p0, v0, a0 / 2, c3, c4, c5])
        return cls(start_s, duration_s, tuple(matrix @ coeffs for matrix in _DERIVATIVE))

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def evaluate(self, times_s: np.ndarray, derivative: int = 0) -> np.ndarray:
        tau = np.clip(np.asarray(times_s, dtype=float) - self.start_s, 0.0, self.duration_s)
        return (tau[:, None] ** _POWERS) @ self.derivatives[derivative]


class ScriptedExpert:
    """Plans both arms; :meth:`action_chunk` returns the next H commands (H, 14)."""

    def __init__(
        self,
        sim_config: BimanualConfig | None = None,
        config: ExpertConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.sim_config = sim_config or BimanualConfig()
        self.config = config or ExpertConfig()
        self._rng = rng if rng is not None else np.random.default_rng()
        self._lower = np.array(self.sim_config.position_lower)
        self._upper = np.array(self.sim_config.position_upper)
        self._vmax = np.array(self.sim_config.velocity_limits) * self.config.velocity_fraction
        self._amax = (
            np.array(self.sim_config.acceleration_limits) * self.config.acceleration_fraction
        )
        self._links = self.sim_config.links
        self._plans: list[list[_Quintic]] = [[] for _ in ARMS]
        self._plan_starts: list[np.ndarray] = [np.zeros(0) for _ in ARMS]
        self._planned_targets = np.full((len(ARMS), 3), np.nan)
        self.wrist_rotate_rad = np.zeros(len(ARMS))
        """The grasp mode of each arm this episode: 0 or pi/2."""

    def reset(
        self, joint_positions: np.ndarray, target_positions: np.ndarray, time_s: float = 0.0
    ) -> None:
        """New episode: draw each arm's grasp mode and plan from the measured joints at rest."""
        rotated = self._rng.random(len(ARMS)) < self.config.rotated_grasp_probability
        self.wrist_rotate_rad = np.where(rotated, math.pi / 2, 0.0)
        q = np.clip(np.asarray(joint_positions, dtype=float), self._lower, self._upper)
        for arm in range(len(ARMS)):
            rest = np.zeros(JOINTS_PER_ARM)
            target = np.asarray(target_positions[arm], dtype=float)
            self._plan_arm(arm, time_s, q[arm_slice(arm)], rest, rest, target)

    def action_chunk(
        self,
        time_s: float,
        target_positions: np.ndarray,
        horizon: int | None = None,
        joint_positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """Commands for the next H control ticks, (H, 14): row k is the setpoint for time
        ``time_s + (k + 1) * control_period_s``, to be sent at tick k of the chunk.

        An arm whose cube is more than 1 cm from where it was planned for is replanned first,
        from the plan's own state so the commands stay smooth. With ``joint_positions``
        (measured), an arm that is ``replan_joint_error_rad`` off its plan is replanned from
        there at rest. ``horizon`` overrides H (1 gives just the command to send now).
        """
        targets = np.asarray(target_positions, dtype=float)
        now = np.array([time_s])
        for arm in range(len(ARMS)):
            planned = self._evaluate(arm, now, 0)[0]
            if joint_positions is not None:
                measured = np.clip(
                    np.asarray(joint_positions, dtype=float)[arm_slice(arm)],
                    self._lower[arm_slice(arm)],
                    self._upper[arm_slice(arm)],
                )
                if (
                    np.max(np.abs(measured - planned)[:ARM_JOINTS])
                    > self.config.replan_joint_error_rad
                ):
                    rest = np.zeros(JOINTS_PER_ARM)
                    self._plan_arm(arm, time_s, measured, rest, rest, targets[arm])
                    continue
            if np.linalg.norm(targets[arm] - self._planned_targets[arm]) > _REPLAN_DISTANCE_M:
                velocity, acceleration = (
                    self._evaluate(arm, now, 1)[0],
                    self._evaluate(arm, now, 2)[0],
                )
                self._plan_arm(arm, time_s, planned, velocity, acceleration, targets[arm])
        horizon = self.config.prediction_horizon if horizon is None else horizon
        times = time_s + self.config.control_period_s * np.arange(1, horizon + 1)
        chunk = np.concatenate([self._evaluate(arm, times, 0) for arm in range(len(ARMS))], axis=1)
        return np.clip(chunk, self._lower, self._upper)

    def finish_time_s(self) -> float:
        """When both arms' plans end (gripper closed, holding)."""
        return max(plan[-1].end_s for plan in self._plans)

    def _evaluate(self, arm: int, times_s: np.ndarray, derivative: int) -> np.ndarray:
        plan = self._plans[arm]
        segment = np.searchsorted(self._plan_starts[arm], times_s, side="right") - 1
        first, last = max(segment[0], 0), segment[-1]  # times_s ascend
        if first == last:
            out = plan[first].evaluate(times_s, derivative)
        else:
            out = np.empty((len(times_s), JOINTS_PER_ARM))
            for i in range(first, last + 1):
                mask = segment == i if i > first else segment <= first
                out[mask] = plan[i].evaluate(times_s[mask], derivative)
        if derivative > 0:
            out[times_s >= plan[-1].end_s] = 0.0
        return out

    def _plan_arm(
        self,
        arm: int,
        start_s: float,
        p0: np.ndarray,
        v0: np.ndarray,
        a0: np.ndarray,
        target_m: np.ndarray,
    ) -> None:
        c = self.config
        lo, hi = self._lower[arm_slice(arm)], self._upper[arm_slice(arm)]
        base, yaw = self.sim_config.base_pose(arm)
        wrist_rotate = float(self.wrist_rotate_rad[arm])
        gripper_open, gripper_closed = hi[GRIPPER_INDEX], lo[GRIPPER_INDEX]

        def pose(ee_xyz: np.ndarray, gripper: float) -> np.ndarray:
            return np.append(
                top_down_ik(self._links, base, yaw, ee_xyz, wrist_rotate, lo, hi), gripper
            )

        pregrasp_z = target_m[2] + c.pregrasp_height_m
        waypoints: list[tuple[np.ndarray, float]] = []
        ee_now = forward_kinematics(self._links, base, yaw, p0[:ARM_JOINTS])[0][-1]
        if ee_now[2] < pregrasp_z - 0.02:
            # Low (mid-descent when the cube moved): rise straight up before crossing over.
            try:
                waypoints.append(
                    (pose(np.array([ee_now[0], ee_now[1], pregrasp_z]), gripper_open), 0.0)
                )
            except UnreachableError:
                pass
        waypoints.append(
            (pose(target_m + [0.0, 0.0, c.pregrasp_height_m], gripper_open), c.min_approach_s)
        )
        waypoints.append((pose(target_m, gripper_open), c.min_descend_s))
        grasp = waypoints[-1][0]
        waypoints.append((np.append(grasp[:ARM_JOINTS], gripper_closed), c.close_duration_s))

        plan = []
        t, p, v, a = start_s, *(np.asarray(x, dtype=float) for x in (p0, v0, a0))
        for goal, min_duration_s in waypoints:
            duration = self._duration(arm, goal - p, min_duration_s)
            plan.append(_Quintic.to_rest(t, duration, p, v, a, goal))
            t, p, v, a = t + duration, goal, np.zeros_like(goal), np.zeros_like(goal)
        self._plans[arm] = plan
        self._plan_starts[arm] = np.array([segment.start_s for segment in plan])
        self._planned_targets[arm] = target_m

    def _duration(self, arm: int, delta: np.ndarray, min_duration_s: float) -> float:
        """Shortest time, rounded up to whole control periods, that keeps a rest-to-rest
        minimum-jerk move within the expert's velocity and acceleration budget.
        """
        distance = np.abs(delta)
        vmax, amax = self._vmax[arm_slice(arm)], self._amax[arm_slice(arm)]
        by_velocity = np.max(_MIN_JERK_PEAK_VELOCITY * distance / vmax)
        by_acceleration = np.max(np.sqrt(_MIN_JERK_PEAK_ACCELERATION * distance / amax))
        duration = max(min_duration_s, by_velocity, by_acceleration, self.config.control_period_s)
        return (
            math.ceil(duration / self.config.control_period_s - 1e-9)
            * self.config.control_period_s
        )
