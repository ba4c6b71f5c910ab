"""Benchmark tasks: dynamic, noisy, multimodal, and solvable by their experts."""

import numpy as np
import pytest

from rtc_ros.bench.tasks import TASKS, collect_demonstrations, make_task
from rtc_ros.bench.tasks.reference import (
    ChunkedExpert,
    closed_loop_expert,
    mode_average,
    run_episodes,
    zero_action,
)

BATCH = 256
PREDICTION_HORIZON = 8
TASK_NAMES = sorted(TASKS)


def success_rate(name, controller, seed=0):
    return run_episodes(make_task(name), controller, BATCH, np.random.default_rng(seed)).mean()


def test_registry_maps_each_name_to_its_task_class():
    assert set(TASKS) == {"navigation", "lander", "reach"}
    for name, task_class in TASKS.items():
        assert task_class.name == name
        assert isinstance(make_task(name), task_class)


def test_make_task_names_the_known_tasks_when_the_name_is_unknown():
    with pytest.raises(ValueError, match="navigation"):
        make_task("kinetix")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_reset_step_and_success_have_the_documented_shapes(name):
    task = make_task(name)
    observation = task.reset(5, np.random.default_rng(0))
    assert observation.shape == (5, task.observation_dim) and observation.dtype == np.float32
    observation = task.step(np.zeros((5, task.action_dim)))
    assert observation.shape == (5, task.observation_dim) and observation.dtype == np.float32
    assert task.success().shape == (5,) and task.success().dtype == bool
    assert task.expert_action().shape == (5, task.action_dim)
    chunk = task.expert_chunk(PREDICTION_HORIZON)
    assert chunk.shape == (5, PREDICTION_HORIZON, task.action_dim) and chunk.dtype == np.float32
    assert np.all(np.abs(chunk) <= 1.0)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_step_rejects_actions_of_the_wrong_shape_and_requires_reset(name):
    task = make_task(name)
    with pytest.raises(RuntimeError, match="reset"):
        task.step(np.zeros((2, task.action_dim)))
    task.reset(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        task.step(np.zeros((3, task.action_dim)))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_episodes_are_reproducible_from_the_seed_and_differ_across_seeds(name):
    def trajectory(seed):
        task = make_task(name)
        observations = [task.reset(8, np.random.default_rng(seed))]
        for _ in range(20):
            observations.append(task.step(task.expert_action()))
        return np.stack(observations)

    np.testing.assert_array_equal(trajectory(3), trajectory(3))
    assert not np.allclose(trajectory(3), trajectory(4))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_expert_chunk_leaves_the_task_unchanged_and_starts_with_the_expert_action(name):
    task = make_task(name)
    observation = task.reset(16, np.random.default_rng(1))
    chunk = task.expert_chunk(PREDICTION_HORIZON)
    np.testing.assert_array_equal(task.observation(), observation)
    np.testing.assert_allclose(chunk[:, 0], task.expert_action(), atol=1e-6)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_expert_strategies_from_the_same_state_are_distinct(name):
    task = make_task(name)
    task.reset(BATCH, np.random.default_rng(2))
    chunks = [
        task.expert_chunk(PREDICTION_HORIZON, np.full_like(task.modes, mode))
        for mode in range(task.num_modes)
    ]
    # Mean absolute difference per action entry, in units of the [-1, 1] action range.
    assert np.abs(chunks[0] - chunks[1]).mean() > 0.3


@pytest.mark.parametrize("name", TASK_NAMES)
def test_closed_loop_expert_solves_the_task(name):
    assert success_rate(name, closed_loop_expert) >= 0.95


@pytest.mark.parametrize("name", TASK_NAMES)
def test_expert_chunks_executed_open_loop_eight_at_a_time_still_succeed(name):
    assert success_rate(name, ChunkedExpert(PREDICTION_HORIZON, PREDICTION_HORIZON)) >= 0.9


@pytest.mark.parametrize("name", TASK_NAMES)
def test_action_noise_defeats_a_plan_executed_blind_for_the_whole_episode(name):
    episode_length = TASKS[name].episode_length
    assert success_rate(name, ChunkedExpert(episode_length, episode_length)) <= 0.5


@pytest.mark.parametrize("name", TASK_NAMES)
def test_zero_action_moves_the_state_and_fails(name):
    task = make_task(name)
    observation = task.reset(BATCH, np.random.default_rng(0))
    moved = task.step(zero_action(task))
    assert np.all(np.any(moved != observation, axis=1))
    assert success_rate(name, zero_action) <= 0.02


@pytest.mark.parametrize("name", TASK_NAMES)
def test_averaging_the_expert_strategies_fails(name):
    assert success_rate(name, mode_average) <= 0.05


@pytest.mark.parametrize("name", TASK_NAMES)
def test_pausing_four_ticks_before_each_chunk_hurts(name):
    expert = success_rate(name, closed_loop_expert)
    synchronous = success_rate(name, ChunkedExpert(PREDICTION_HORIZON, 4, pause_ticks=4))
    assert synchronous <= 0.7 * expert


@pytest.mark.parametrize("name", TASK_NAMES)
def test_success_is_sticky_and_ended_episodes_are_frozen(name):
    task = make_task(name)
    task.reset(64, np.random.default_rng(5))
    ever_succeeded = np.zeros(64, dtype=bool)
    for _ in range(task.episode_length):
        before = task.observation()
        ended = ~task.running()
        after = task.step(task.expert_action())
        np.testing.assert_array_equal(after[ended], before[ended])
        assert np.all(task.success()[ever_succeeded])
        ever_succeeded |= task.success()
    assert ever_succeeded.any()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_demonstrations_pair_observations_with_expert_chunks_of_every_mode(name):
    task = make_task(name)
    observations, chunks = collect_demonstrations(
        task, 64, PREDICTION_HORIZON, np.random.default_rng(6)
    )
    assert observations.dtype == np.float32 and chunks.dtype == np.float32
    assert observations.shape[1] == task.observation_dim
    assert chunks.shape[1:] == (PREDICTION_HORIZON, task.action_dim)
    assert len(observations) == len(chunks) > 64 * 20
    assert np.all(np.abs(chunks) <= 1.0)
    # Every strategy appears among the episodes that the samples come from.
    modes = task.modes[task.success()]
    assert set(np.unique(modes)) == set(range(task.num_modes))
