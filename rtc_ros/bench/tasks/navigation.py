"""Obstacle navigation: steer a point mass with inertia past two discs to a goal, in wind.

Dynamics (dt = 0.05 s): ``v' = v + dt (4 a + wind - v)``, ``p' = p + dt v'``; the action
``a`` (2,) is an acceleration, so zero action leaves the mass coasting and drifting with the
wind. The start is near (0, -1.1), the goal near (0, 1.1), and two discs of radius 0.2 lie on
the way, near y = -0.45 and y = +0.45. Touching a disc or leaving the arena ends the episode
as a failure; coming within 0.12 of the goal ends it as a success.

Multimodal expert: for each disc it picks a side (left or right) at random, so there are
four strategies; averaging left and right steers into the disc.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rtc_ros.bench.tasks.base import Task

_DT_S = 0.05
_ACCELERATION_SCALE = 4.0
_DRAG = 1.0
_OBSTACLE_RADIUS = 0.2
_GOAL_RADIUS = 0.12
_ARENA_HALF_WIDTH = 1.25
_ARENA_HALF_HEIGHT = 1.5
# Expert.
_CRUISE_SPEED = 1.3
_VELOCITY_GAIN = 6.0
_SIDE_MARGIN = 0.17
_CLEARANCE = 0.22
_CIRCULATION_GAIN = 2.5


@dataclasses.dataclass
class NavigationState:
    position: np.ndarray  # (B, 2)
    velocity: np.ndarray  # (B, 2)
    goal: np.ndarray  # (B, 2)
    obstacles: np.ndarray  # (B, 2, 2): two disc centres, the lower one first
    wind: np.ndarray  # (B, 2) constant acceleration
    reached: np.ndarray  # (B,) bool
    crashed: np.ndarray  # (B,) bool


class ObstacleNavigation(Task[NavigationState]):
    """Point mass with inertia and wind; go around two discs on either side to the goal."""

    name = "navigation"
    observation_dim = 12
    action_dim = 2
    episode_length = 80
    num_modes = 2
    num_decisions = 2
    action_noise_std = 0.25

    def _initial_state(self, batch_size: int, rng: np.random.Generator) -> NavigationState:
        b = batch_size
        position = np.stack([rng.uniform(-0.2, 0.2, b), rng.uniform(-1.15, -1.05, b)], axis=1)
        obstacles = np.stack(
            [
                np.stack([rng.uniform(-0.15, 0.15, b), rng.uniform(-0.5, -0.4, b)], axis=1),
                np.stack([rng.uniform(-0.15, 0.15, b), rng.uniform(0.4, 0.5, b)], axis=1),
            ],
            axis=1,
        )
        return NavigationState(
            position=position,
            velocity=rng.normal(0.0, 0.1, (b, 2)),
            goal=np.stack([rng.uniform(-0.2, 0.2, b), np.full(b, 1.1)], axis=1),
            obstacles=obstacles,
            wind=rng.uniform(-0.6, 0.6, (b, 2)),
            reached=np.zeros(b, dtype=bool),
            crashed=np.zeros(b, dtype=bool),
        )

    def _advance(self, state: NavigationState, applied_actions: np.ndarray) -> NavigationState:
        acceleration = _ACCELERATION_SCALE * applied_actions + state.wind - _DRAG * state.velocity
        velocity = state.velocity + _DT_S * acceleration
        position = state.position + _DT_S * velocity
        hit_obstacle = np.any(
            np.linalg.norm(position[:, None] - state.obstacles, axis=2) < _OBSTACLE_RADIUS, axis=1
        )
        outside = (np.abs(position[:, 0]) > _ARENA_HALF_WIDTH) | (
            np.abs(position[:, 1]) > _ARENA_HALF_HEIGHT
        )
        crashed = state.crashed | hit_obstacle | outside
        reached = ~crashed & (np.linalg.norm(position - state.goal, axis=1) < _GOAL_RADIUS)
        return dataclasses.replace(
            state, position=position, velocity=velocity, reached=reached, crashed=crashed
        )

    def _observe(self, state: NavigationState) -> np.ndarray:
        return np.concatenate(
            [
                state.position,
                state.velocity,
                state.goal,
                state.obstacles.reshape(-1, 4),
                state.wind,
            ],
            axis=1,
        )

    def _expert(self, state: NavigationState, modes: np.ndarray) -> np.ndarray:
        # Waypoint beside each disc on the chosen side; the next one not yet passed (by
        # height) is the target, then the goal.
        sides = 2.0 * modes - 1.0  # (B, 2): -1 left, +1 right
        waypoints = state.obstacles.copy()
        waypoints[..., 0] += sides * (_OBSTACLE_RADIUS + _SIDE_MARGIN)
        y = state.position[:, 1:2]
        target = np.where(
            y < state.obstacles[:, 0, 1:2],
            waypoints[:, 0],
            np.where(y < state.obstacles[:, 1, 1:2], waypoints[:, 1], state.goal),
        )
        offset = target - state.position
        distance = np.linalg.norm(offset, axis=1, keepdims=True)
        desired_velocity = _CRUISE_SPEED * offset / np.maximum(distance, 1e-6)
        # Near a disc, circulate around it on the chosen side. Only the chosen side's
        # direction is added (no radial push), so the average of two sides heads straight
        # into the disc, as averaged demonstrations would.
        away = state.position[:, None] - state.obstacles
        gap = np.linalg.norm(away, axis=2, keepdims=True)
        closeness = np.clip((_OBSTACLE_RADIUS + _CLEARANCE - gap) / _CLEARANCE, 0.0, None)
        tangent = sides[..., None] * np.stack([-away[..., 1], away[..., 0]], axis=2)
        desired_velocity += (
            _CIRCULATION_GAIN
            * _CRUISE_SPEED
            * np.sum(closeness * tangent / np.maximum(gap, 1e-6), axis=1)
        )
        acceleration = (
            _VELOCITY_GAIN * (desired_velocity - state.velocity)
            - state.wind
            + _DRAG * state.velocity
        )
        return acceleration / _ACCELERATION_SCALE

    def _succeeded(self, state: NavigationState) -> np.ndarray:
        return state.reached.copy()

    def _running(self, state: NavigationState) -> np.ndarray:
        return ~(state.reached | state.crashed)
