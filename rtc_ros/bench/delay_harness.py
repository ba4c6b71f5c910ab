"""One cell of the delay benchmark: B rollouts of one task under one method, delay and horizon.

All B episodes run in lockstep through ONE batched :class:`ChunkExecutor`, planner and
:class:`SimulatedTimeLoop` over (B, H, M) chunks: they share the delay, so their inferences
start at the same ticks, and each inference is one batched policy call. The world is stepped
every tick, whatever the controller does (the paper's "the world never pauses"); the first
chunk is made before the episode starts, as in the paper.

A paused tick (the synchronous baseline waiting for inference) commands a ZERO action: the
executor reports the last action on such ticks (hold-last suits position control), but the
benchmark tasks are force- or acceleration-controlled, where repeating the last force keeps
accelerating, while a zero force is what a stopped controller exerts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from rtc_ros.bench.tasks import Task
from rtc_ros.core import ChunkExecutor, ChunkingConfig, InferencePlanner, InferenceRequest, Method
from rtc_ros.core.simulated_time import SimulatedTimeLoop

Generate = Callable[[Mapping[str, Any], "torch.Tensor | None", int, int], torch.Tensor]
"""``generate(observation, unexecuted, inference_delay, execution_horizon) -> (B, H, M)``,
the signature of :meth:`rtc_ros.core.ChunkGenerator.generate`."""

WILSON_Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default z)."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes}")
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)  # exact at the ends, where
    high = 1.0 if successes == trials else min(1.0, centre + half_width)  # rounding could cross p
    return low, high


@dataclasses.dataclass(frozen=True)
class Rollouts:
    """What one cell recorded, tick by tick, for all B episodes."""

    actions: np.ndarray
    """(B, T, M) commanded actions (zero on paused ticks), before the task clips them."""
    running: np.ndarray
    """(B, T) bool: the episode was still running when the action was applied."""
    chunk_sequence: np.ndarray
    """(T,) sequence number of the chunk each tick's action came from (-1: none)."""
    request_ticks: tuple[int, ...]
    """Ticks at which an inference started (the warm-up at tick 0 included)."""
    success: np.ndarray
    """(B,) bool at the end of the episodes."""
    paused: np.ndarray
    """(T,) bool: the controller waited for inference (synchronous baseline); zero action."""
    underruns: int
    prefix_error: float
    """Mean |new chunk - previous chunk| over the d actions that were frozen while the new
    chunk was inferred (they were executed from the previous chunk): how well a method
    continues the actions already committed. NaN when d = 0 and for the synchronous baseline,
    which executes nothing while it waits."""

    @property
    def seams(self) -> np.ndarray:
        """(T,) bool: ticks whose action is the first one taken from a new chunk."""
        seams = np.zeros(self.chunk_sequence.shape, dtype=bool)
        seams[1:] = self.chunk_sequence[1:] != self.chunk_sequence[:-1]
        return seams


@dataclasses.dataclass(frozen=True)
class Smoothness:
    jerk_mean: float
    """Mean over rollouts of the mean |third difference| of applied actions per tick."""
    jerk_max: float
    """Mean over rollouts of each rollout's largest |third difference|."""
    seam_jump_max: float
    """Mean over rollouts of each rollout's largest |a_t - a_{t-1}| at a seam."""
    seam_jump_mean: float
    """Mean |a_t - a_{t-1}| over all seams of all rollouts."""
    step_mean: float
    """Mean |a_t - a_{t-1}| away from seams: the policy's own action changes, for scale."""


def smoothness(actions: np.ndarray, running: np.ndarray, seams: np.ndarray) -> Smoothness:
    """Jerk and seam jumps of (B, T, M) applied actions; |.| is the Euclidean norm over M.

    Only ticks at which the episode still runs count. A rollout without any valid jerk or
    seam tick contributes nothing to the corresponding average.
    """
    steps = np.linalg.norm(np.diff(actions, axis=1), axis=-1)  # (B, T-1), change into tick t
    step_valid = running[:, 1:]
    seam_valid = step_valid & seams[None, 1:]
    jerk = np.linalg.norm(np.diff(actions, n=3, axis=1), axis=-1)  # (B, T-3), ends at tick t
    jerk_valid = running[:, 3:]
    return Smoothness(
        jerk_mean=_mean_of_rollouts(jerk, jerk_valid, np.mean),
        jerk_max=_mean_of_rollouts(jerk, jerk_valid, np.max),
        seam_jump_max=_mean_of_rollouts(steps, seam_valid, np.max),
        seam_jump_mean=float(steps[seam_valid].mean()) if seam_valid.any() else float("nan"),
        step_mean=_masked_mean(steps, step_valid & ~seams[None, 1:]),
    )


def _mean_of_rollouts(values: np.ndarray, valid: np.ndarray, reduce) -> float:
    per_rollout = [reduce(v[m]) for v, m in zip(values, valid) if m.any()]
    return float(np.mean(per_rollout)) if per_rollout else float("nan")


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> float:
    return float(values[valid].mean()) if valid.any() else float("nan")


def run_rollouts(
    task: Task,
    generate: Generate,
    config: ChunkingConfig,
    prediction_horizon: int,
    inference_delay: int,
    execution_horizon: int,
    rollouts: int,
    seed: int,
) -> Rollouts:
    """Play ``rollouts`` episodes of ``task`` with ``config``'s method under an exact delay.

    Every inference after the warm-up takes ``inference_delay`` ticks. ``execution_horizon``
    s is the planner's s_min and the synchronous baseline's actions per chunk; with s >= d
    each chunk is requested s ticks after its predecessor started (Algorithm 1), so
    s + d <= H keeps the executing chunk from running out.
    """
    if not 0 <= inference_delay <= execution_horizon:
        raise ValueError(
            f"inference_delay must be in [0, execution_horizon={execution_horizon}], "
            f"got {inference_delay}"
        )
    if execution_horizon + inference_delay > prediction_horizon:
        raise ValueError(
            f"execution_horizon + inference_delay must be <= H={prediction_horizon}, got "
            f"{execution_horizon} + {inference_delay}"
        )
    task.reset(rollouts, np.random.default_rng(seed))
    executor = ChunkExecutor(config.executor_spec(execution_horizon))
    planner = InferencePlanner(
        prediction_horizon, execution_horizon, initial_delay=inference_delay
    )
    request_ticks: list[int] = []
    prefix_errors: list[np.ndarray] = []

    def infer(request: InferenceRequest) -> np.ndarray:
        request_ticks.append(request.request_tick)
        running = task.running()
        chunk = np.zeros((rollouts, prediction_horizon, task.action_dim))
        if running.any():  # ended episodes are frozen: no need to think for them
            observation = {"state": torch.as_tensor(task.observation()[running])}
            unexecuted = (
                None
                if request.warmup
                else torch.as_tensor(request.unexecuted[running], dtype=torch.float32)
            )
            chunk[running] = (
                generate(
                    observation, unexecuted, request.inference_delay, request.execution_horizon
                )
                .cpu()
                .numpy()
            )
            d = request.inference_delay
            if not request.warmup and d > 0 and config.method is not Method.SYNC:
                frozen = chunk[running, :d] - request.unexecuted[running, :d]
                prefix_errors.append(np.linalg.norm(frozen, axis=-1).ravel())
        return chunk

    loop = SimulatedTimeLoop(
        executor, planner, infer, lambda r: 0 if r.warmup else inference_delay
    )
    length = task.episode_length
    actions = np.zeros((rollouts, length, task.action_dim))
    running = np.zeros((rollouts, length), dtype=bool)
    sequence = np.full(length, -1)
    paused = np.zeros(length, dtype=bool)
    loop.start()
    for t in range(length):
        running[:, t] = task.running()
        result = loop.tick()
        paused[t] = result.paused or result.action is None
        if not paused[t]:
            actions[:, t] = result.action
        sequence[t] = executor.state.sequence
        task.step(actions[:, t])
        if t + 1 < length:  # no inference for after the episode
            loop.after_world_step()
    prefix_error = float(np.concatenate(prefix_errors).mean()) if prefix_errors else float("nan")
    return Rollouts(
        actions,
        running,
        sequence,
        tuple(request_ticks),
        task.success(),
        paused,
        executor.underruns,
        prefix_error,
    )
