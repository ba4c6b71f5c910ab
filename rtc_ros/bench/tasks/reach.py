"""Two-link reach: track a moving target with a torque-driven arm under gravity.

Two links of 0.5 with unit point masses at their ends, joint damping 0.1, gravity 2; actions
are the two joint torques scaled by (6, 2.5), integrated with two semi-implicit Euler substeps
per tick (dt = 0.05 s). Zero torque lets the arm fall. The arm starts hanging down; the
target moves on a circle about the shoulder (radius 0.55-0.8) at a constant angular rate,
starting above the shoulder. The episode succeeds once the hand stays within 0.08 of the
target for 15 consecutive ticks.

Multimodal expert: it reaches with the elbow bent one way or the other (the two inverse
kinematics solutions), which swings the shoulder up clockwise or counter-clockwise. The
average of the two strategies cancels the shoulder torque and keeps the arm hanging.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rtc_ros.bench.tasks.base import Task

_DT_S = 0.05
_SUBSTEPS = 2
_LINK_LENGTH = 0.5
_MASS = 1.0
_GRAVITY = 2.0
_DAMPING = 0.1
_TORQUE_SCALE = np.array([6.0, 2.5])
_TOLERANCE = 0.08
_TICKS_ON_TARGET = 15
# Expert: computed-torque tracking of the inverse-kinematics joint angles.
_POSITION_GAIN = 20.0
_VELOCITY_GAIN = 9.0


@dataclasses.dataclass
class ReachState:
    angles: np.ndarray  # (B, 2): shoulder from the +x axis, elbow relative to the upper arm
    rates: np.ndarray  # (B, 2)
    target_angle: np.ndarray  # (B,) about the shoulder
    target_radius: np.ndarray  # (B,)
    target_rate: np.ndarray  # (B,) rad/s
    ticks_on_target: np.ndarray  # (B,) consecutive ticks within tolerance
    reached: np.ndarray  # (B,) bool


def _hand(angles: np.ndarray) -> np.ndarray:
    shoulder, elbow = angles[:, 0], angles[:, 0] + angles[:, 1]
    return _LINK_LENGTH * np.stack(
        [np.cos(shoulder) + np.cos(elbow), np.sin(shoulder) + np.sin(elbow)], axis=1
    )


def _target(state: ReachState) -> tuple[np.ndarray, np.ndarray]:
    """Target position and velocity, each (B, 2)."""
    direction = np.stack([np.cos(state.target_angle), np.sin(state.target_angle)], axis=1)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    radius = state.target_radius[:, None]
    return radius * direction, radius * state.target_rate[:, None] * normal


def _dynamics_terms(angles: np.ndarray, rates: np.ndarray):
    """Mass matrix entries and the Coriolis + gravity + damping torques of M q'' + bias = tau."""
    length, mass = _LINK_LENGTH, _MASS
    cos2, sin2 = np.cos(angles[:, 1]), np.sin(angles[:, 1])
    m11 = 2 * mass * length**2 + mass * length**2 + 2 * mass * length**2 * cos2
    m12 = mass * length**2 + mass * length**2 * cos2
    m22 = np.full_like(m11, mass * length**2)
    h = mass * length**2 * sin2
    cos12 = np.cos(angles[:, 0] + angles[:, 1])
    gravity1 = (
        2 * mass * _GRAVITY * length * np.cos(angles[:, 0]) + mass * _GRAVITY * length * cos12
    )
    gravity2 = mass * _GRAVITY * length * cos12
    bias1 = (
        -h * (2 * rates[:, 0] * rates[:, 1] + rates[:, 1] ** 2) + gravity1 + _DAMPING * rates[:, 0]
    )
    bias2 = h * rates[:, 0] ** 2 + gravity2 + _DAMPING * rates[:, 1]
    return m11, m12, m22, np.stack([bias1, bias2], axis=1)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


class TwoLinkReach(Task[ReachState]):
    """Torque-driven two-link arm under gravity; catch and follow a moving target."""

    name = "reach"
    observation_dim = 10
    action_dim = 2
    episode_length = 80
    num_modes = 2
    num_decisions = 1
    action_noise_std = 0.15

    def _initial_state(self, batch_size: int, rng: np.random.Generator) -> ReachState:
        b = batch_size
        return ReachState(
            angles=np.stack(
                [-np.pi / 2 + rng.normal(0.0, 0.1, b), rng.normal(0.0, 0.1, b)], axis=1
            ),
            rates=rng.normal(0.0, 0.1, (b, 2)),
            target_angle=np.pi / 2 + rng.uniform(-0.4, 0.4, b),
            target_radius=rng.uniform(0.55, 0.8, b),
            target_rate=rng.choice([-1.0, 1.0], b) * rng.uniform(0.1, 0.4, b),
            ticks_on_target=np.zeros(b, dtype=np.int64),
            reached=np.zeros(b, dtype=bool),
        )

    def _advance(self, state: ReachState, applied_actions: np.ndarray) -> ReachState:
        torques = _TORQUE_SCALE * applied_actions
        angles, rates = state.angles, state.rates
        step_s = _DT_S / _SUBSTEPS
        for _ in range(_SUBSTEPS):
            m11, m12, m22, bias = _dynamics_terms(angles, rates)
            rhs = torques - bias
            det = m11 * m22 - m12**2
            accelerations = np.stack(
                [
                    (m22 * rhs[:, 0] - m12 * rhs[:, 1]) / det,
                    (m11 * rhs[:, 1] - m12 * rhs[:, 0]) / det,
                ],
                axis=1,
            )
            rates = rates + step_s * accelerations
            angles = angles + step_s * rates
        moved = dataclasses.replace(
            state,
            angles=angles,
            rates=rates,
            target_angle=state.target_angle + _DT_S * state.target_rate,
        )
        target, _ = _target(moved)
        on_target = np.linalg.norm(_hand(angles) - target, axis=1) < _TOLERANCE
        ticks_on_target = np.where(on_target, state.ticks_on_target + 1, 0)
        return dataclasses.replace(
            moved,
            ticks_on_target=ticks_on_target,
            reached=state.reached | (ticks_on_target >= _TICKS_ON_TARGET),
        )

    def _observe(self, state: ReachState) -> np.ndarray:
        target, target_velocity = _target(state)
        return np.concatenate(
            [np.cos(state.angles), np.sin(state.angles), state.rates, target, target_velocity],
            axis=1,
        )

    def _expert(self, state: ReachState, modes: np.ndarray) -> np.ndarray:
        target, target_velocity = _target(state)
        elbow_sign = 2.0 * modes[:, 0] - 1.0
        cos_elbow = (np.sum(target**2, axis=1) - 2 * _LINK_LENGTH**2) / (2 * _LINK_LENGTH**2)
        elbow = elbow_sign * np.arccos(np.clip(cos_elbow, -1.0, 1.0))
        shoulder = np.arctan2(target[:, 1], target[:, 0]) - np.arctan2(
            np.sin(elbow), 1.0 + np.cos(elbow)
        )
        desired = np.stack([shoulder, elbow], axis=1)
        # Joint rates that move the hand with the target: J(q_desired)^-1 times its velocity.
        s1, c1 = np.sin(shoulder), np.cos(shoulder)
        s12, c12 = np.sin(shoulder + elbow), np.cos(shoulder + elbow)
        j11, j12 = -_LINK_LENGTH * (s1 + s12), -_LINK_LENGTH * s12
        j21, j22 = _LINK_LENGTH * (c1 + c12), _LINK_LENGTH * c12
        det = j11 * j22 - j12 * j21
        vx, vy = target_velocity[:, 0], target_velocity[:, 1]
        desired_rates = np.stack(
            [(j22 * vx - j12 * vy) / det, (j11 * vy - j21 * vx) / det], axis=1
        )
        error = _wrap(desired - state.angles)
        m11, m12, m22, bias = _dynamics_terms(state.angles, state.rates)
        command = _POSITION_GAIN * error + _VELOCITY_GAIN * (desired_rates - state.rates)
        torques = (
            np.stack(
                [
                    m11 * command[:, 0] + m12 * command[:, 1],
                    m12 * command[:, 0] + m22 * command[:, 1],
                ],
                axis=1,
            )
            + bias
        )
        return torques / _TORQUE_SCALE

    def _succeeded(self, state: ReachState) -> np.ndarray:
        return state.reached.copy()

    def _running(self, state: ReachState) -> np.ndarray:
        return ~state.reached
