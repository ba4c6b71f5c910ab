"""Demonstrations of the scripted expert in the bimanual sim, as numpy arrays for training.

At each control tick (50 Hz) the expert is asked for its next H commands; the first is sent to
the robot. Every ``record_every``-th tick stores what a policy would see then (camera image,
measured joint positions) and the expert's chunk (H, 14) as the label. Episodes end at the
time limit or ``hold_after_success_s`` after both cubes are held, so a policy also learns to
hold. Episodes run in worker processes, each from its own child Generator, so the result does
not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from rtc_ros.sim.bimanual import BimanualSim
from rtc_ros.sim.config import BimanualConfig
from rtc_ros.sim.expert import ExpertConfig, ScriptedExpert


@dataclass(frozen=True)
class Demonstrations:
    """Samples stacked over all episodes (N samples, H horizon, 14 joints)."""

    images: np.ndarray
    """(N, height, width, 3) uint8 camera images."""
    joint_positions: np.ndarray
    """(N, 14) float32 measured joint positions (what the policy observes besides the image)."""
    action_chunks: np.ndarray
    """(N, H, 14) float32: the expert's next H commands; row 0 is what it sent at this tick."""
    episode_index: np.ndarray
    """(N,) int32."""
    tick: np.ndarray
    """(N,) int32 control tick within the episode."""
    target_positions: np.ndarray
    """(N, 2, 3) float32 true cube centres. Privileged, for probes and metrics, never an input."""
    episode_success: np.ndarray
    """(episodes,) bool: both cubes held at the end of the episode."""
    episode_duration_s: np.ndarray
    """(episodes,) float32."""

    def __len__(self) -> int:
        return len(self.joint_positions)


@dataclass(frozen=True)
class EpisodeResult:
    """One expert episode: samples of its recorded ticks and the outcome."""

    images: np.ndarray
    joint_positions: np.ndarray
    action_chunks: np.ndarray
    ticks: np.ndarray
    target_positions: np.ndarray
    success: bool
    duration_s: float
    targets_moved: int


def run_expert_episode(
    rng: np.random.Generator,
    sim_config: BimanualConfig | None = None,
    expert_config: ExpertConfig | None = None,
    record_every: int = 1,
    image_size: tuple[int, int] | None = None,
    hold_after_success_s: float = 0.5,
) -> EpisodeResult:
    """Reset a sim, let the expert drive it at its control period, record every k-th tick.

    ``record_every = 0`` records nothing (for measuring the expert's success fast).
    """
    sim_rng, expert_rng = rng.spawn(2)
    sim = BimanualSim(sim_config, sim_rng)
    expert = ScriptedExpert(sim.config, expert_config, expert_rng)
    period_s = expert.config.control_period_s
    height, width = image_size or (sim.config.image_height, sim.config.image_width)
    _, q, _ = sim.joint_state()
    expert.reset(q, sim.target_positions(), sim.time_s)
    images, joints, chunks, ticks, targets = [], [], [], [], []
    success_time_s = None
    tick = 0
    while not sim.episode_over:
        _, q, _ = sim.joint_state()
        recording = record_every and tick % record_every == 0
        chunk = expert.action_chunk(
            sim.time_s, sim.target_positions(), horizon=None if recording else 1, joint_positions=q
        )
        if recording:
            images.append(sim.render(height, width))
            joints.append(q)
            chunks.append(chunk)
            ticks.append(tick)
            targets.append(sim.target_positions())
        sim.set_command(chunk[0])
        sim.step(period_s)
        tick += 1
        if sim.task_success():
            success_time_s = sim.time_s if success_time_s is None else success_time_s
            if sim.time_s - success_time_s >= hold_after_success_s - 1e-9:
                break
        else:
            success_time_s = None
    horizon = expert.config.prediction_horizon
    return EpisodeResult(
        images=np.array(images, dtype=np.uint8).reshape(-1, height, width, 3),
        joint_positions=np.array(joints, dtype=np.float32).reshape(-1, sim.config.num_joints),
        action_chunks=np.array(chunks, dtype=np.float32).reshape(
            -1, horizon, sim.config.num_joints
        ),
        ticks=np.array(ticks, dtype=np.int32),
        target_positions=np.array(targets, dtype=np.float32).reshape(-1, 2, 3),
        success=sim.task_success(),
        duration_s=sim.time_s,
        targets_moved=sim.targets_moved,
    )


def _episode_job(args: tuple) -> EpisodeResult:
    return run_expert_episode(*args)


def generate_demonstrations(
    num_episodes: int,
    rng: np.random.Generator,
    sim_config: BimanualConfig | None = None,
    expert_config: ExpertConfig | None = None,
    record_every: int = 5,
    image_size: tuple[int, int] | None = None,
    hold_after_success_s: float = 0.5,
    workers: int | None = None,
) -> Demonstrations:
    """Run ``num_episodes`` expert episodes and stack their recorded ticks.

    ``workers`` processes (default: all cores; 1 runs in this process). They are started with
    "spawn", so a script calling this with workers > 1 needs the ``if __name__ == "__main__":``
    guard. The default ``record_every = 5`` records at 10 Hz: neighbouring ticks at 50 Hz are
    near duplicates.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    jobs = [
        (episode_rng, sim_config, expert_config, record_every, image_size, hold_after_success_s)
        for episode_rng in rng.spawn(num_episodes)
    ]
    workers = min(workers or os.cpu_count() or 1, num_episodes)
    if workers == 1:
        episodes = [_episode_job(job) for job in jobs]
    else:
        # spawn, not fork: the caller may already run torch threads, which fork can deadlock.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            episodes = list(
                pool.map(_episode_job, jobs, chunksize=max(1, num_episodes // (4 * workers)))
            )
    return Demonstrations(
        images=np.concatenate([e.images for e in episodes]),
        joint_positions=np.concatenate([e.joint_positions for e in episodes]),
        action_chunks=np.concatenate([e.action_chunks for e in episodes]),
        episode_index=np.concatenate(
            [np.full(len(e.ticks), i, dtype=np.int32) for i, e in enumerate(episodes)]
        ),
        tick=np.concatenate([e.ticks for e in episodes]),
        target_positions=np.concatenate([e.target_positions for e in episodes]),
        episode_success=np.array([e.success for e in episodes]),
        episode_duration_s=np.array([e.duration_s for e in episodes], dtype=np.float32),
    )
