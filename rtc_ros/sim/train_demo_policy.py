"""Train the demo's policy on the scripted expert's demonstrations in the bimanual simulator.

    .venv/bin/python -m rtc_ros.sim.train_demo_policy [--episodes 300] [--steps 4000]

writes rtc_ros/policies/checkpoints/bimanual_demo.pt (the ``policy`` parameter's default) and
prints the closed-loop success rate of the trained policy under RTC with a simulated delay.

    .venv/bin/python -m rtc_ros.sim.train_demo_policy --evaluate --eval-episodes 30 --eval-seed 7

evaluates the shipped checkpoint the same way, in process (no ROS): success and the
frozen-prefix mismatch of its chunks, at ``--eval-delay`` ticks, optionally with observations
``--observation-age-ticks`` old.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import time

import numpy as np
import torch

from rtc_ros.core.config import ChunkingConfig, GuidanceMode
from rtc_ros.core.methods import ChunkGenerator
from rtc_ros.core.scheduler import ChunkExecutor, InferencePlanner
from rtc_ros.core.simulated_time import SimulatedTimeLoop
from rtc_ros.policies.reference import (
    AuxiliaryTask,
    ReferenceFlowPolicy,
    ReferencePolicyConfig,
    TrainingConfig,
    train_flow_policy,
)
from rtc_ros.policies.registry import BIMANUAL_DEMO_CHECKPOINT
from rtc_ros.sim.bimanual import BimanualSim, episode_rng
from rtc_ros.sim.config import BimanualConfig
from rtc_ros.sim.dataset import generate_demonstrations

PREDICTION_HORIZON = 50
CONTROL_PERIOD_S = 0.02


def observation(sim: BimanualSim) -> dict[str, torch.Tensor]:
    """What the policy sees: noisy joint positions and the camera image (C, H, W)."""
    _, positions, _ = sim.joint_state()
    image = sim.render()
    return {
        "state": torch.from_numpy(positions.astype(np.float32))[None],
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None],
    }


@dataclasses.dataclass(frozen=True)
class Evaluation:
    episodes: int
    successes: int
    failed_episodes: tuple[int, ...]
    """Their indices among the seed's episodes (:func:`episode_rng`)."""
    frozen_prefix_mismatch_rad: tuple[float, ...]
    """Per guided chunk: largest gap between its first d actions and the previous chunk's
    actions they replace."""
    seam_steps_rad: tuple[float, ...]
    """Largest joint step between the last command of a chunk and the first of the next."""
    in_chunk_steps_rad: tuple[float, ...]
    """Largest joint step between two commands of one chunk."""

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes


def evaluate(
    policy: ReferenceFlowPolicy,
    episodes: int,
    delay_ticks: int,
    seed: int = 1,
    config: ChunkingConfig = ChunkingConfig(guidance="stop_gradient"),
    min_execution_horizon: int = 25,
    observation_age_ticks: int = 0,
    dated_observations: bool = True,
    first_episode: int = 0,
) -> Evaluation:
    """Closed-loop success with RTC in the simulator, inference taking ``delay_ticks``.

    Episodes ``first_episode`` on of ``seed`` (:func:`episode_rng`: ``sim_node`` with
    ``seed`` runs episode k from child k - 1). Each ends at the first success or the time
    limit. ``observation_age_ticks``: the
    policy sees the world as it was that many ticks before the inference starts (a stale sensor
    or a slow transport); ``dated_observations`` False plans as if it were fresh.
    """
    failed, mismatches, seam_steps, in_chunk_steps = [], [], [], []
    for episode in range(first_episode, first_episode + episodes):
        sim = BimanualSim(BimanualConfig(), episode_rng(seed, episode))
        generator = ChunkGenerator(policy, config)
        seen = collections.deque([observation(sim)], maxlen=observation_age_ticks + 1)

        def infer(request, seen=seen, generator=generator):
            unexecuted = None if request.warmup else np.asarray(request.unexecuted)
            chunk = (
                generator.generate(
                    seen[0],
                    None if unexecuted is None else torch.tensor(unexecuted).float()[None],
                    request.inference_delay,
                    request.execution_horizon,
                )[0]
                .double()
                .numpy()
            )
            if unexecuted is not None:
                frozen = max(request.inference_delay, 1)
                mismatches.append(float(np.abs(chunk[:frozen] - unexecuted[:frozen]).max()))
            return chunk

        loop = SimulatedTimeLoop(
            ChunkExecutor(config.executor_spec(min_execution_horizon)),
            InferencePlanner(PREDICTION_HORIZON, min_execution_horizon, 10, delay_ticks),
            infer,
            lambda r: 0 if r.warmup else delay_ticks,
            observation_age_ticks if dated_observations else 0,
        )
        loop.start()
        previous = None
        while not sim.episode_over and not sim.task_success():
            result = loop.tick()
            if result.action is not None:
                sim.set_command(result.action)
                if previous is not None:
                    step = float(np.abs(result.action - previous).max())
                    (seam_steps if result.swapped else in_chunk_steps).append(step)
                previous = result.action
            sim.step(CONTROL_PERIOD_S)
            seen.append(observation(sim))
            loop.after_world_step()
        if not sim.task_success():
            failed.append(episode)
    return Evaluation(
        episodes,
        episodes - len(failed),
        tuple(failed),
        tuple(mismatches),
        tuple(seam_steps),
        tuple(in_chunk_steps),
    )


def _print_evaluation(result: Evaluation, delay_ticks: int) -> None:
    mismatch = np.array(result.frozen_prefix_mismatch_rad)
    seam, in_chunk = np.median(result.seam_steps_rad), np.median(result.in_chunk_steps_rad)
    print(
        f"closed-loop success with RTC, d={delay_ticks}: {result.successes} of "
        f"{result.episodes} episodes ({result.success_rate:.0%}, failed: "
        f"{', '.join(map(str, result.failed_episodes)) or 'none'}); frozen-prefix mismatch p50 "
        f"{np.median(mismatch):.3f} rad, max {mismatch.max():.3f} rad; command step p50 at "
        f"seams {seam:.4f} rad, inside chunks {in_chunk:.4f} rad ({seam / in_chunk:.2f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=300, help="expert episodes to record")
    parser.add_argument("--steps", type=int, default=6000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--eval-delay", type=int, default=5, help="simulated inference delay, ticks"
    )
    parser.add_argument("--output", type=pathlib.Path, default=BIMANUAL_DEMO_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="do not train: evaluate the checkpoint at --output in the simulator, in process",
    )
    parser.add_argument(
        "--eval-seed", type=int, default=1, help="seed of the evaluation's episodes and noise"
    )
    parser.add_argument(
        "--guidance", choices=[m.value for m in GuidanceMode], default="stop_gradient"
    )
    parser.add_argument("--beta", type=float, default=5.0, help="guidance-weight clip")
    parser.add_argument(
        "--first-episode",
        type=int,
        default=0,
        help="evaluate the episodes of --eval-seed from this one on (0-based); the demo's "
        "episode k is the simulator's episode k + 1, child k of the seed: --first-episode 1 "
        "with the simulator's seed runs the demo's episodes",
    )
    parser.add_argument(
        "--observation-age-ticks",
        type=int,
        default=0,
        help="the policy sees the world as it was this many ticks before each inference starts",
    )
    parser.add_argument(
        "--undated-observations",
        action="store_true",
        help="plan as if every observation were fresh (a stack that does not date its sensor "
        "data): the chunk starts at the tick its inference starts",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); 1 is fastest on a machine busy with other "
        "work, where idle OpenMP workers spin against it",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.evaluate:
        torch.manual_seed(args.eval_seed)
        _print_evaluation(
            evaluate(
                ReferenceFlowPolicy.load(args.output),
                args.eval_episodes,
                args.eval_delay,
                args.eval_seed,
                ChunkingConfig(guidance=args.guidance, beta=args.beta),
                observation_age_ticks=args.observation_age_ticks,
                dated_observations=not args.undated_observations,
                first_episode=args.first_episode,
            ),
            args.eval_delay,
        )
        return
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    demos = generate_demonstrations(args.episodes, np.random.default_rng(args.seed))
    print(
        f"{len(demos)} samples from {args.episodes} expert episodes "
        f"({demos.episode_success.mean():.0%} successful) in {time.perf_counter() - started:.0f} s"
    )
    height, width = demos.images.shape[1:3]
    policy = ReferenceFlowPolicy(
        ReferencePolicyConfig(
            prediction_horizon=demos.action_chunks.shape[1],
            action_dim=demos.action_chunks.shape[2],
            state_dim=demos.joint_positions.shape[1],
            image_shape=(3, height, width),
            hidden_dim=256,
            network_output="actions",
        )
    )
    observations = {
        "state": demos.joint_positions,
        "image": demos.images.transpose(0, 3, 1, 2).copy(),
    }
    # Training-only help for the image encoder: predict where the cubes are (the simulator's
    # truth). The policy's inputs stay the image and the joint positions.
    cube_xy = demos.target_positions[:, :, :2].reshape(len(demos), -1)
    auxiliary = AuxiliaryTask(
        torch.nn.Linear(2 * policy.config.hidden_dim, cube_xy.shape[1]), cube_xy
    )
    train_flow_policy(
        policy,
        observations,
        demos.action_chunks,
        TrainingConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed),
        log=print,
        auxiliary=auxiliary,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.output, joint_names=BimanualConfig().joint_names)
    print(
        f"saved {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) after "
        f"{time.perf_counter() - started:.0f} s"
    )
    if args.eval_episodes:
        torch.manual_seed(args.eval_seed)
        _print_evaluation(
            evaluate(
                policy,
                args.eval_episodes,
                args.eval_delay,
                args.eval_seed,
                ChunkingConfig(guidance=args.guidance, beta=args.beta),
            ),
            args.eval_delay,
        )


if __name__ == "__main__":
    main()
