"""The delay benchmark's policies: one flow-matching chunking policy per task, and a weak one.

Each policy is a :class:`ReferenceFlowPolicy` (state observation, H = 8) trained by behaviour
cloning on the task's scripted expert (:func:`collect_demonstrations`). BID's contrast model
is the same recipe stopped after a tenth of the steps: an under-trained policy standing in for
the paper's "earlier checkpoint". Checkpoints are small (about 1 MB) and shipped in
``rtc_ros/bench/checkpoints``; ``python -m rtc_ros.bench.delay train`` remakes them.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import numpy as np

from rtc_ros.bench.tasks import collect_demonstrations, make_task
from rtc_ros.policies.reference import (
    ReferenceFlowPolicy,
    ReferencePolicyConfig,
    TrainingConfig,
    train_flow_policy,
)

SHIPPED_CHECKPOINTS = pathlib.Path(__file__).resolve().parent / "checkpoints"


@dataclasses.dataclass(frozen=True)
class PolicyRecipe:
    """How a task's policies are made; the defaults made the shipped checkpoints."""

    prediction_horizon: int = 8
    demonstration_episodes: int = 4000
    steps: int = 16000
    weak_steps: int = 1600
    """Training steps of BID's weak policy."""
    hidden_dim: int = 256
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.weak_steps < self.steps:
            raise ValueError(
                f"weak_steps must be in [1, steps={self.steps}), got {self.weak_steps}"
            )


@dataclasses.dataclass(frozen=True)
class TaskPolicies:
    strong: ReferenceFlowPolicy
    weak: ReferenceFlowPolicy


def checkpoint_paths(directory: pathlib.Path, task_name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(strong, weak) checkpoint files of a task in ``directory``."""
    return directory / f"{task_name}.pt", directory / f"{task_name}_weak.pt"


def train_task_policies(
    task_name: str, recipe: PolicyRecipe = PolicyRecipe(), log: Callable[[str], None] | None = None
) -> TaskPolicies:
    """Collect expert demonstrations of ``task_name`` and train its strong and weak policies."""
    task = make_task(task_name)
    observations, chunks = collect_demonstrations(
        task,
        recipe.demonstration_episodes,
        recipe.prediction_horizon,
        np.random.default_rng(recipe.seed),
    )
    if log:
        log(
            f"{task_name}: {len(chunks)} (observation, chunk) pairs from "
            f"{recipe.demonstration_episodes} expert episodes"
        )
    # The plain MLP made the shipped checkpoints and docs/benchmarks/delay's results.
    config = ReferencePolicyConfig(
        recipe.prediction_horizon,
        task.action_dim,
        task.observation_dim,
        hidden_dim=recipe.hidden_dim,
        velocity_network="mlp",
    )
    policies = []
    for steps in (recipe.steps, recipe.weak_steps):
        policy = ReferenceFlowPolicy(config)
        training = TrainingConfig(steps=steps, batch_size=recipe.batch_size, seed=recipe.seed)
        train_flow_policy(
            policy,
            {"state": observations},
            chunks,
            training,
            log=(lambda line: log(f"{task_name} ({steps} steps): {line}")) if log else None,
        )
        policies.append(policy)
    return TaskPolicies(*policies)


def save_task_policies(policies: TaskPolicies, directory: pathlib.Path, task_name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    strong_path, weak_path = checkpoint_paths(directory, task_name)
    policies.strong.save(strong_path)
    policies.weak.save(weak_path)


class StaleCheckpointError(ValueError):
    """A checkpoint whose parameters do not fit the current :class:`ReferenceFlowPolicy`."""


def load_task_policies(directory: pathlib.Path, task_name: str) -> TaskPolicies | None:
    """The task's policies from ``directory``, or None when a checkpoint is missing there.

    Raises :class:`StaleCheckpointError` when a checkpoint was made for another version of
    the policy's architecture.
    """
    strong_path, weak_path = checkpoint_paths(directory, task_name)
    if not (strong_path.exists() and weak_path.exists()):
        return None
    try:
        return TaskPolicies(
            ReferenceFlowPolicy.load(strong_path), ReferenceFlowPolicy.load(weak_path)
        )
    except (
        RuntimeError,
        TypeError,
    ) as error:  # load_state_dict's key/shape mismatch, config fields
        raise StaleCheckpointError(
            f"{strong_path} does not fit the current ReferenceFlowPolicy "
            f"({str(error).splitlines()[0]}); "
            f"remake it with: python -m rtc_ros.bench.delay train --output {directory}"
        ) from error


def load_or_train(
    task_name: str,
    checkpoints: pathlib.Path,
    trained_into: pathlib.Path,
    recipe: PolicyRecipe = PolicyRecipe(),
    log: Callable[[str], None] | None = None,
) -> TaskPolicies:
    """Shipped (or given) checkpoints if present, else train and
    save them into ``trained_into``.
    """
    for directory in (checkpoints, trained_into):
        try:
            policies = load_task_policies(directory, task_name)
        except StaleCheckpointError as error:
            if log:
                log(f"{task_name}: ignoring a stale checkpoint: {error}")
            continue
        if policies is not None:
            return policies
    if log:
        log(f"{task_name}: no checkpoint in {checkpoints}; training (minutes on CPU)")
    policies = train_task_policies(task_name, recipe, log)
    save_task_policies(policies, trained_into, task_name)
    return policies
