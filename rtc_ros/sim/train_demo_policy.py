"""Train the demo's policy on the scripted expert's demonstrations in the bimanual simulator.

    .venv/bin/python -m rtc_ros.sim.train_demo_policy [--episodes 300] [--steps 4000]

writes rtc_ros/policies/checkpoints/bimanual_demo.pt (the ``policy`` parameter's default) and
prints the closed-loop success rate of the trained policy under RTC with a simulated delay.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np
import torch

from rtc_ros.core.config import ChunkingConfig
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
from rtc_ros.sim.bimanual import BimanualSim
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


def evaluate(
    policy: ReferenceFlowPolicy,
    episodes: int,
    delay_ticks: int,
    seed: int = 1,
    config: ChunkingConfig = ChunkingConfig(guidance="stop_gradient"),
    min_execution_horizon: int = 25,
) -> float:
    """Closed-loop success rate with RTC in the simulator, inference taking ``delay_ticks``."""
    successes = 0
    for episode_rng in np.random.default_rng(seed).spawn(episodes):
        sim = BimanualSim(BimanualConfig(), episode_rng)
        generator = ChunkGenerator(policy, config)

        def infer(request, sim=sim, generator=generator):
            unexecuted = (
                None
                if request.warmup
                else torch.tensor(request.unexecuted, dtype=torch.float32)[None]
            )
            return (
                generator.generate(
                    observation(sim),
                    unexecuted,
                    request.inference_delay,
                    request.execution_horizon,
                )[0]
                .double()
                .numpy()
            )

        loop = SimulatedTimeLoop(
            ChunkExecutor(config.executor_spec(min_execution_horizon)),
            InferencePlanner(PREDICTION_HORIZON, min_execution_horizon, 10, delay_ticks),
            infer,
            lambda r: 0 if r.warmup else delay_ticks,
        )
        loop.start()
        while not sim.episode_over and not sim.task_success():
            result = loop.tick()
            if result.action is not None:
                sim.set_command(result.action)
            sim.step(CONTROL_PERIOD_S)
            loop.after_world_step()
        successes += int(sim.task_success())
    return successes / episodes


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
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); 1 is fastest on a machine busy with other "
        "work, where idle OpenMP workers spin against it",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
        rate = evaluate(policy, args.eval_episodes, args.eval_delay)
        print(
            f"closed-loop success with RTC, d={args.eval_delay}: {rate:.0%} of "
            f"{args.eval_episodes} episodes"
        )


if __name__ == "__main__":
    main()
