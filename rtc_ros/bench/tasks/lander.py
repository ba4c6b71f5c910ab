"""Two-pad landing: bring a thruster craft down softly on one of two pads, under gravity.

Dynamics (dt = 0.05 s): ``vx' = vx + dt (2 a0 + wind - 0.3 vx)``,
``vy' = vy + dt (3 a1 - 1.5)``; zero action free-falls. The craft starts at about 1.2 above
the ground near x = 0, the pads (half-width 0.15) lie near x = -0.9 and x = +0.9. Touching the
ground on a pad with |vx|, |vy| < 0.4 ends the episode as a success; touching it anywhere
else, or faster, or leaving the arena, ends it as a failure.

Multimodal expert: it picks a pad at random, flies over it at a safe height and descends.
The average of the two strategies hovers between the pads until time runs out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rtc_ros.bench.tasks.base import Task

_DT_S = 0.05
_GRAVITY = 1.5
_LATERAL_ACCELERATION_SCALE = 2.0
_VERTICAL_ACCELERATION_SCALE = 3.0
_LATERAL_DRAG = 0.3
_PAD_HALF_WIDTH = 0.15
_SAFE_LANDING_SPEED = 0.4
_ARENA_HALF_WIDTH = 1.6
_ARENA_HEIGHT = 2.0
# Expert.
_LATERAL_GAIN = 1.5
_MAX_LATERAL_SPEED = 1.0
_CRUISE_HEIGHT = 0.4
_VELOCITY_GAIN = 4.0


@dataclasses.dataclass
class LanderState:
    position: np.ndarray  # (B, 2): x, height above the ground
    velocity: np.ndarray  # (B, 2)
    pads: np.ndarray  # (B, 2): x of the left and of the right pad
    wind: np.ndarray  # (B,) constant lateral acceleration
    landed: np.ndarray  # (B,) bool
    crashed: np.ndarray  # (B,) bool


class TwoPadLander(Task[LanderState]):
    """Thruster craft under gravity and wind; land softly on the left or the right pad."""

    name = "lander"
    observation_dim = 7
    action_dim = 2
    episode_length = 80
    num_modes = 2
    num_decisions = 1
    action_noise_std = 0.2

    def _initial_state(self, batch_size: int, rng: np.random.Generator) -> LanderState:
        b = batch_size
        return LanderState(
            position=np.stack([rng.uniform(-0.3, 0.3, b), rng.uniform(1.1, 1.3, b)], axis=1),
            velocity=np.stack([rng.normal(0.0, 0.15, b), rng.uniform(-0.3, 0.0, b)], axis=1),
            pads=np.stack([rng.uniform(-1.0, -0.8, b), rng.uniform(0.8, 1.0, b)], axis=1),
            wind=rng.uniform(-0.4, 0.4, b),
            landed=np.zeros(b, dtype=bool),
            crashed=np.zeros(b, dtype=bool),
        )

    def _advance(self, state: LanderState, applied_actions: np.ndarray) -> LanderState:
        acceleration = np.stack(
            [
                _LATERAL_ACCELERATION_SCALE * applied_actions[:, 0]
                + state.wind
                - _LATERAL_DRAG * state.velocity[:, 0],
                _VERTICAL_ACCELERATION_SCALE * applied_actions[:, 1] - _GRAVITY,
            ],
            axis=1,
        )
        velocity = state.velocity + _DT_S * acceleration
        position = state.position + _DT_S * velocity
        touched_down = position[:, 1] <= 0.0
        on_pad = np.any(np.abs(position[:, :1] - state.pads) < _PAD_HALF_WIDTH, axis=1)
        soft = np.all(np.abs(velocity) < _SAFE_LANDING_SPEED, axis=1)
        outside = (np.abs(position[:, 0]) > _ARENA_HALF_WIDTH) | (position[:, 1] > _ARENA_HEIGHT)
        landed = touched_down & on_pad & soft
        crashed = (touched_down & ~landed) | outside
        # A craft on the ground stays where it touched down.
        position[:, 1] = np.maximum(position[:, 1], 0.0)
        return dataclasses.replace(
            state, position=position, velocity=velocity, landed=landed, crashed=crashed
        )

    def _observe(self, state: LanderState) -> np.ndarray:
        return np.concatenate(
            [state.position, state.velocity, state.pads, state.wind[:, None]], axis=1
        )

    def _expert(self, state: LanderState, modes: np.ndarray) -> np.ndarray:
        pad = np.take_along_axis(state.pads, modes[:, :1], axis=1)[:, 0]
        x, height = state.position[:, 0], state.position[:, 1]
        offset = pad - x
        desired_vx = np.clip(_LATERAL_GAIN * offset, -_MAX_LATERAL_SPEED, _MAX_LATERAL_SPEED)
        # Hold a safe height until over the pad, then descend ever slower to touch down at
        # about 0.2 (blending the two so that the command is continuous).
        hold_vy = np.clip(2.0 * (_CRUISE_HEIGHT - height), -0.8, 0.5)
        descend_vy = -np.minimum(0.2 + 0.6 * height, 0.8)
        over_pad = np.clip((0.15 - np.abs(offset)) / 0.1, 0.0, 1.0)
        desired_vy = over_pad * descend_vy + (1.0 - over_pad) * hold_vy
        ax = (
            _VELOCITY_GAIN * (desired_vx - state.velocity[:, 0])
            - state.wind
            + _LATERAL_DRAG * state.velocity[:, 0]
        )
        ay = _VELOCITY_GAIN * (desired_vy - state.velocity[:, 1]) + _GRAVITY
        return np.stack(
            [ax / _LATERAL_ACCELERATION_SCALE, ay / _VERTICAL_ACCELERATION_SCALE], axis=1
        )

    def _succeeded(self, state: LanderState) -> np.ndarray:
        return state.landed.copy()

    def _running(self, state: LanderState) -> np.ndarray:
        return ~(state.landed | state.crashed)
