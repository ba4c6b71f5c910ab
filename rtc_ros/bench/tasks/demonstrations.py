"""Expert demonstrations for behaviour cloning: observations paired with the expert's chunks."""

from __future__ import annotations

import numpy as np

from rtc_ros.bench.tasks.base import Task


def collect_demonstrations(
    task: Task,
    num_episodes: int,
    horizon: int,
    rng: np.random.Generator,
    successful_only: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Observations (N, obs_dim) float32 and action chunks (N, horizon, action_dim) float32.

    All episodes run in one batch with the closed-loop expert and action noise, so the
    observations include the perturbed states a policy must recover from. Each sample is
    the observation at one tick of a running episode and the expert's next ``horizon``
    actions planned from the true state without noise: one strategy per chunk, consistent
    from tick to tick. The strategy is drawn per episode (and per decision), so the data
    holds every mode. With ``successful_only`` the rare failed episodes are dropped.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    observation = task.reset(num_episodes, rng)
    observations, chunks, running = [], [], []
    for _ in range(task.episode_length):
        chunk = task.expert_chunk(horizon)
        observations.append(observation)
        chunks.append(chunk)
        running.append(task.running())
        observation = task.step(chunk[:, 0])
    keep = np.stack(running, axis=1)  # (episodes, ticks)
    if successful_only:
        keep &= task.success()[:, None]
    observations = np.stack(observations, axis=1)[keep]
    chunks = np.stack(chunks, axis=1)[keep]
    return observations.astype(np.float32), chunks.astype(np.float32)
