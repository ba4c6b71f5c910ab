"""What every benchmark task shares: batched numpy state, action noise, the expert's chunks.

A task keeps B parallel episodes. Its physics, observation, expert and success test are pure
functions of a state dataclass, so the same code steps the noisy episodes and the noise-free
copy that rolls the expert forward to make a chunk. Episodes that have ended (success or
crash) are frozen: later steps leave their state unchanged.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Generic, TypeVar

import numpy as np

State = TypeVar("State")


def _copy_state(state: State) -> State:
    return dataclasses.replace(
        state, **{f.name: getattr(state, f.name).copy() for f in dataclasses.fields(state)}
    )


def _keep_where(done: np.ndarray, old: State, new: State) -> State:
    """``new`` for running episodes, ``old`` for ended ones (field by field)."""
    fields = {}
    for f in dataclasses.fields(new):
        old_value, new_value = getattr(old, f.name), getattr(new, f.name)
        mask = done.reshape(done.shape + (1,) * (new_value.ndim - 1))
        fields[f.name] = np.where(mask, old_value, new_value)
    return dataclasses.replace(new, **fields)


class Task(abc.ABC, Generic[State]):
    """B parallel episodes of a dynamic, stochastic task with a multimodal scripted expert.

    Actions are in [-1, 1] and command forces or accelerations: a zero action never holds
    the state still. Every executed action is perturbed by Gaussian noise of standard
    deviation ``action_noise_std`` (drawn from the generator given to :meth:`reset`).
    The expert picks one of ``num_modes`` strategies per decision (``modes`` holds one entry
    per decision of the episode); the average of two strategies' actions fails the task.
    """

    name: ClassVar[str]
    observation_dim: ClassVar[int]
    action_dim: ClassVar[int]
    episode_length: ClassVar[int]
    """Ticks per episode."""
    num_modes: ClassVar[int]
    """Distinct expert strategies at each decision."""
    num_decisions: ClassVar[int]
    """Independent strategy choices per episode (columns of ``modes``)."""
    action_noise_std: ClassVar[float]

    def __init__(self) -> None:
        self._state: State | None = None
        self._rng: np.random.Generator | None = None
        self._modes: np.ndarray | None = None
        self.tick = 0

    # -- the interface the benchmark harness drives ------------------------------------
    def reset(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Start ``batch_size`` episodes from random initial states; return (B, obs) float32."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._rng = rng
        self._state = self._initial_state(batch_size, rng)
        self._modes = rng.integers(0, self.num_modes, size=(batch_size, self.num_decisions))
        self.tick = 0
        return self.observation()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply (B, action_dim) actions, clipped to [-1, 1] and then perturbed by noise."""
        state = self._require_state()
        actions = np.asarray(actions, dtype=np.float64)
        expected = (self.batch_size, self.action_dim)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        noise = self.action_noise_std * self._rng.standard_normal(expected)
        applied = np.clip(actions, -1.0, 1.0) + noise
        done = ~self._running(state)
        self._state = _keep_where(done, state, self._advance(state, applied))
        self.tick += 1
        return self.observation()

    def observation(self) -> np.ndarray:
        return self._observe(self._require_state()).astype(np.float32)

    def success(self) -> np.ndarray:
        """(B,) bool: the episode has succeeded (sticky: once true it stays true)."""
        return self._succeeded(self._require_state())

    def running(self) -> np.ndarray:
        """(B,) bool: the episode has neither succeeded nor failed for good yet."""
        return self._running(self._require_state())

    @property
    def batch_size(self) -> int:
        return len(self._require_modes())

    @property
    def modes(self) -> np.ndarray:
        """(B, num_decisions) int: the strategy the expert uses at each decision."""
        return self._require_modes().copy()

    # -- the scripted expert -------------------------------------------------------------
    def expert_action(self, modes: np.ndarray | None = None) -> np.ndarray:
        """(B, action_dim) the expert's next action from the true
        state (episode's modes by default).
        """
        modes = self._require_modes() if modes is None else modes
        return np.clip(self._expert(self._require_state(), modes), -1.0, 1.0)

    def expert_chunk(self, horizon: int, modes: np.ndarray | None = None) -> np.ndarray:
        """(B, horizon, action_dim): the expert's next actions, rolled forward without noise.

        The rollout runs on a copy of the true state, so the task itself is unchanged, and
        every action of a chunk follows the same strategy.
        """
        modes = self._require_modes() if modes is None else modes
        state = _copy_state(self._require_state())
        chunk = np.empty((self.batch_size, horizon, self.action_dim))
        for i in range(horizon):
            chunk[:, i] = np.clip(self._expert(state, modes), -1.0, 1.0)
            state = _keep_where(~self._running(state), state, self._advance(state, chunk[:, i]))
        return chunk.astype(np.float32)

    def mode_average_action(self) -> np.ndarray:
        """(B, action_dim): the mean of the expert's actions over all strategies.

        What a policy that averages multimodal demonstrations would do (the failure mode of
        temporal ensembling and of regression-trained policies): it fails every task.
        """
        state = self._require_state()
        actions = [
            np.clip(self._expert(state, np.full_like(self._require_modes(), mode)), -1.0, 1.0)
            for mode in range(self.num_modes)
        ]
        return np.mean(actions, axis=0)

    # -- what each task defines ------------------------------------------------------------
    @abc.abstractmethod
    def _initial_state(self, batch_size: int, rng: np.random.Generator) -> State: ...

    @abc.abstractmethod
    def _advance(self, state: State, applied_actions: np.ndarray) -> State:
        """The state one tick later, without mutating ``state``."""

    @abc.abstractmethod
    def _observe(self, state: State) -> np.ndarray: ...

    @abc.abstractmethod
    def _expert(self, state: State, modes: np.ndarray) -> np.ndarray:
        """Unclipped expert actions from the true state under the given strategies."""

    @abc.abstractmethod
    def _succeeded(self, state: State) -> np.ndarray: ...

    @abc.abstractmethod
    def _running(self, state: State) -> np.ndarray: ...

    def _require_state(self) -> State:
        if self._state is None:
            raise RuntimeError(f"call {type(self).__name__}.reset(batch_size, rng) first")
        return self._state

    def _require_modes(self) -> np.ndarray:
        self._require_state()
        return self._modes
