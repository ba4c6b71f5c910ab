"""Reference controllers that calibrate a task: how well the expert, a pause, an average do.

A controller is called once per tick with the task and returns the (B, action_dim) actions
to apply. :func:`run_episodes` plays one batch of full episodes with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtc_ros.bench.tasks.base import Task

Controller = Callable[[Task], np.ndarray]


def run_episodes(
    task: Task, controller: Controller, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """(B,) bool: which of ``batch_size`` episodes, driven by ``controller``, succeeded."""
    task.reset(batch_size, rng)
    for _ in range(task.episode_length):
        task.step(controller(task))
    return task.success()


def closed_loop_expert(task: Task) -> np.ndarray:
    """The expert re-planned at every tick from the true state."""
    return task.expert_action()


def zero_action(task: Task) -> np.ndarray:
    """Doing nothing: the state still moves (gravity, wind, momentum)."""
    return np.zeros((task.batch_size, task.action_dim))


def mode_average(task: Task) -> np.ndarray:
    """The mean of the expert's strategies at every tick."""
    return task.mode_average_action()


class ChunkedExpert:
    """Executes ``execution_horizon`` actions of each expert chunk open loop, then re-plans.

    With ``pause_ticks > 0`` it applies zero actions for that many ticks before each new
    chunk starts, like a synchronous controller that stops while the policy thinks.
    """

    def __init__(self, prediction_horizon: int, execution_horizon: int, pause_ticks: int = 0):
        if not 1 <= execution_horizon <= prediction_horizon:
            raise ValueError(
                f"execution_horizon must be in [1, {prediction_horizon}], got {execution_horizon}"
            )
        self.prediction_horizon = prediction_horizon
        self.execution_horizon = execution_horizon
        self.pause_ticks = pause_ticks
        self._chunk: np.ndarray | None = None
        self._index = 0

    def __call__(self, task: Task) -> np.ndarray:
        if task.tick == 0:
            self._chunk, self._index = None, 0
        if self._chunk is None or self._index >= self.execution_horizon:
            # The chunk is planned from the state at the start of the pause, as in
            # synchronous inference; the first chunk is ready before the episode starts.
            self._chunk = task.expert_chunk(self.prediction_horizon)
            self._index = -self.pause_ticks if task.tick > 0 else 0
        index, self._index = self._index, self._index + 1
        if index < 0:
            return np.zeros((task.batch_size, task.action_dim))
        return self._chunk[:, index]
