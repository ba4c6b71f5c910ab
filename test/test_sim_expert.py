"""The scripted expert solves the grasp task with smooth, limit-respecting action chunks."""

import math

import numpy as np
import pytest

from rtc_ros.sim.bimanual import BimanualSim
from rtc_ros.sim.config import BimanualConfig
from rtc_ros.sim.dataset import generate_demonstrations, run_expert_episode
from rtc_ros.sim.expert import ExpertConfig, ScriptedExpert, _Quintic


def test_quintic_meets_its_boundary_conditions_and_holds_after_its_end():
    p0, v0, a0, p1 = np.array([0.3]), np.array([-1.0]), np.array([2.0]), np.array([1.2])
    segment = _Quintic.to_rest(1.0, 0.8, p0, v0, a0, p1)
    ends = np.array([1.0, 1.8])
    np.testing.assert_allclose(segment.evaluate(ends, 0)[:, 0], [0.3, 1.2])
    np.testing.assert_allclose(segment.evaluate(ends, 1)[:, 0], [-1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(segment.evaluate(ends, 2)[:, 0], [2.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(segment.evaluate(np.array([5.0]), 0)[:, 0], [1.2])


def test_expert_grasps_both_cubes_in_at_least_19_of_20_episodes_with_cube_moves():
    results = [
        run_expert_episode(np.random.default_rng(seed), record_every=0) for seed in range(20)
    ]
    assert sum(r.success for r in results) >= 19
    assert sum(r.targets_moved > 0 for r in results) >= 5, "the test covers replanning"
    assert max(r.duration_s for r in results) < BimanualConfig().episode_duration_s


def make_expert(seed=0, **config):
    sim = BimanualSim(rng=np.random.default_rng(seed))
    expert = ScriptedExpert(sim.config, ExpertConfig(**config), np.random.default_rng(seed))
    expert.reset(sim.joint_state()[1], sim.target_positions())
    return sim, expert


def test_a_chunk_is_h_commands_within_limits_that_continue_the_previous_chunk():
    sim, expert = make_expert()
    period = expert.config.control_period_s
    first = expert.action_chunk(0.0, sim.target_positions())
    assert first.shape == (50, 14)
    assert np.all(first >= np.array(sim.config.position_lower))
    assert np.all(first <= np.array(sim.config.position_upper))
    later = expert.action_chunk(10 * period, sim.target_positions())
    np.testing.assert_allclose(later[:40], first[10:], atol=1e-12)


def test_commands_stay_within_the_experts_share_of_the_velocity_limits_across_a_cube_move():
    config = BimanualConfig(target_jump_probability=1.0, target_jump_window_s=(1.0, 1.0))
    sim = BimanualSim(config, np.random.default_rng(2))
    expert = ScriptedExpert(config, rng=np.random.default_rng(2))
    expert.reset(sim.joint_state()[1], sim.target_positions())
    period = expert.config.control_period_s
    commands = []
    for _ in range(200):
        commands.append(expert.action_chunk(sim.time_s, sim.target_positions())[0])
        sim.set_command(commands[-1])
        sim.step(period)
    assert sim.targets_moved == 2
    speeds = np.abs(np.diff(commands, axis=0)) / period
    # Min-jerk moves from rest peak at the budget; replans starting in motion may exceed it a
    # little.
    assert np.all(
        speeds <= 1.3 * expert.config.velocity_fraction * np.array(config.velocity_limits)
    )
    accelerations = np.abs(np.diff(commands, n=2, axis=0)) / period**2
    acceleration_budget = expert.config.acceleration_fraction * np.array(
        config.acceleration_limits
    )
    assert np.all(accelerations <= 2.0 * acceleration_budget)


def test_each_arm_grasps_in_either_wrist_mode_and_both_modes_occur():
    modes = []
    for seed in range(12):
        sim, expert = make_expert(seed)
        modes.append(expert.wrist_rotate_rad.copy())
    modes = np.concatenate(modes)
    assert set(np.round(modes, 6)) == {0.0, round(math.pi / 2, 6)}
    for probability in (0.0, 1.0):
        result = run_expert_episode(
            np.random.default_rng(5),
            expert_config=ExpertConfig(rotated_grasp_probability=probability),
            record_every=0,
        )
        assert result.success


def test_unimodal_expert_always_grasps_with_wrist_rotate_zero():
    sim, expert = make_expert(3, rotated_grasp_probability=0.0)
    assert expert.wrist_rotate_rad.tolist() == [0.0, 0.0]
    final = expert.action_chunk(expert.finish_time_s(), sim.target_positions())[-1]
    assert final[5] == pytest.approx(0.0) and final[12] == pytest.approx(0.0)


def test_demonstrations_stack_images_joints_and_chunks_of_every_recorded_tick():
    demos = generate_demonstrations(
        3, np.random.default_rng(0), record_every=10, image_size=(64, 64), workers=1
    )
    n = len(demos)
    assert demos.images.shape == (n, 64, 64, 3) and demos.images.dtype == np.uint8
    assert demos.joint_positions.shape == (n, 14) and demos.action_chunks.shape == (n, 50, 14)
    assert demos.action_chunks.dtype == np.float32
    assert demos.episode_success.all()
    assert set(demos.episode_index.tolist()) == {0, 1, 2}
    assert np.all(demos.tick % 10 == 0)
    first = demos.episode_index == 0
    assert len(demos.tick[first]) == math.ceil(demos.episode_duration_s[0] / 0.02 / 10)


def test_demonstrations_do_not_depend_on_the_number_of_workers():
    one = generate_demonstrations(2, np.random.default_rng(9), record_every=25, workers=1)
    two = generate_demonstrations(2, np.random.default_rng(9), record_every=25, workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.action_chunks, two.action_chunks)


def test_an_arm_held_back_from_its_plan_is_replanned_from_where_it_is_and_still_succeeds():
    config = BimanualConfig(target_jump_probability=0.0)
    sim = BimanualSim(config, np.random.default_rng(4))
    expert = ScriptedExpert(config, rng=np.random.default_rng(4))
    expert.reset(sim.joint_state()[1], sim.target_positions())
    period = expert.config.control_period_s
    stuck = sim.joint_state()[1]
    for _ in range(40):  # the robot ignores the expert for 0.8 s (e.g. a protective stop)
        expert.action_chunk(sim.time_s, sim.target_positions())
        sim.set_command(stuck)
        sim.step(period)
    _, measured, _ = sim.joint_state()
    first_after = expert.action_chunk(sim.time_s, sim.target_positions(), joint_positions=measured)
    np.testing.assert_allclose(first_after[0], measured, atol=0.01)
    while not sim.episode_over and not sim.task_success():
        _, q, _ = sim.joint_state()
        command = expert.action_chunk(
            sim.time_s, sim.target_positions(), horizon=1, joint_positions=q
        )[0]
        sim.set_command(command)
        sim.step(period)
    assert sim.task_success()
