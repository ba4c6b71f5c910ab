"""The simulated bimanual robot behaves like a position-controlled arm with a camera."""

import math

import numpy as np
import pytest

from rtc_ros.sim.bimanual import BimanualSim, episode_rng
from rtc_ros.sim.config import GRIPPER_INDEX, JOINTS_PER_ARM, BimanualConfig, arm_slice
from rtc_ros.sim.kinematics import top_down_ik

NOISELESS = dict(
    process_noise_std=(0.0,) * 14,
    position_noise_std=(0.0,) * 14,
    velocity_noise_std=(0.0,) * 14,
    image_noise_std=0.0,
    reset_noise_std=0.0,
    target_jump_probability=0.0,
)


def noiseless_sim(seed=0, **overrides):
    return BimanualSim(BimanualConfig(**{**NOISELESS, **overrides}), np.random.default_rng(seed))


def test_default_config_names_fourteen_viperx_joints_left_then_right():
    names = BimanualConfig().joint_names
    assert names[:7] == (
        "left_waist",
        "left_shoulder",
        "left_elbow",
        "left_forearm_roll",
        "left_wrist_angle",
        "left_wrist_rotate",
        "left_gripper",
    )
    assert names[7:] == tuple(n.replace("left_", "right_") for n in names[:7])


def test_config_round_trips_through_a_plain_dict_of_lists():
    config = BimanualConfig(cube_size_m=0.03, left_base_xyz_m=(-0.5, 0.01, 0.0))
    values = config.to_dict()
    assert isinstance(values["joint_names"], list) and isinstance(values["position_upper"], list)
    assert BimanualConfig.from_dict(values) == config


def test_config_rejects_unknown_keys_and_wrong_lengths_with_the_field_name():
    with pytest.raises(ValueError, match="unknown BimanualConfig keys"):
        BimanualConfig.from_dict({"cube_size": 0.03})
    with pytest.raises(ValueError, match="velocity_limits"):
        BimanualConfig(velocity_limits=(1.0,) * 13)
    with pytest.raises(ValueError, match="position_lower must be below"):
        BimanualConfig(position_lower=BimanualConfig().position_upper)


def test_joint_state_reports_names_positions_and_velocities_at_rest_near_home():
    sim = noiseless_sim()
    names, positions, velocities = sim.joint_state()
    assert names == sim.config.joint_names
    np.testing.assert_allclose(positions, sim.config.home_positions)
    np.testing.assert_array_equal(velocities, np.zeros(14))


def test_commands_beyond_the_limits_are_clamped_and_joints_stop_at_the_limits():
    sim = noiseless_sim()
    upper = np.array(sim.config.position_upper)
    sim.set_command(upper + 10.0)
    sim.step(4.0)
    _, positions, _ = sim.joint_state()
    assert np.all(positions <= upper + 1e-12)
    np.testing.assert_allclose(positions, upper, atol=1e-3)


def test_joint_speed_and_acceleration_never_exceed_their_limits():
    config = BimanualConfig()
    sim = BimanualSim(config, np.random.default_rng(0))
    vmax, amax = np.array(config.velocity_limits), np.array(config.acceleration_limits)
    lower, upper = np.array(config.position_lower), np.array(config.position_upper)
    sim.set_command(lower + 0.1 * (upper - lower))
    dt = config.physics_step_s
    # Encoder noise on two readings, and one step of process noise, each at most 5 std.
    velocity_slack = 10 * np.array(config.velocity_noise_std)
    position_slack = 10 * np.array(config.position_noise_std)
    accel_slack = 5 * np.array(config.process_noise_std) * math.sqrt(dt) + velocity_slack
    _, previous_q, previous_v = sim.joint_state()
    peak = np.zeros(14)
    for _ in range(1000):
        sim.step(dt)
        _, q, v = sim.joint_state()
        assert np.all(np.abs(v) <= vmax + velocity_slack)
        assert np.all(np.abs(q - previous_q) <= vmax * dt + position_slack)
        assert np.all(np.abs(v - previous_v) <= amax * dt + accel_slack)
        peak = np.maximum(peak, np.abs(v))
        previous_q, previous_v = q, v
    assert np.all(peak > 0.97 * vmax), "long moves reach the velocity limit"


def test_a_nan_entry_keeps_that_joints_previous_command():
    sim = noiseless_sim()
    _, start, _ = sim.joint_state()
    first = start + 0.3
    first[[GRIPPER_INDEX, JOINTS_PER_ARM + GRIPPER_INDEX]] = 0.05
    sim.set_command(first)
    sim.step(0.1)
    second = np.full(14, np.nan)
    second[0] = start[0] - 0.3
    sim.set_command(second)
    sim.step(2.0)
    _, q, _ = sim.joint_state()
    assert q[0] == pytest.approx(start[0] - 0.3, abs=1e-4)
    np.testing.assert_allclose(q[1:], first[1:], atol=1e-4)


def test_commands_act_only_after_the_bus_latency():
    sim = noiseless_sim(command_latency_s=0.01)
    _, start, _ = sim.joint_state()
    sim.set_command(start + 0.5)
    sim.step(0.01)
    np.testing.assert_array_equal(sim.joint_state()[1], start)
    sim.step(0.004)
    assert np.all(sim.joint_state()[1][:6] > start[:6])


def test_fractional_step_durations_accumulate_into_physics_steps():
    whole, split = noiseless_sim(), noiseless_sim()
    for sim in (whole, split):
        sim.set_command(np.array(sim.config.position_upper))
    whole.step(0.02)
    for _ in range(20):
        split.step(0.001)
    assert split.time_s == pytest.approx(whole.time_s)
    np.testing.assert_allclose(split.joint_state()[1], whole.joint_state()[1])


def test_same_seed_gives_the_same_episode_and_images_and_another_seed_does_not():
    def run(seed):
        sim = BimanualSim(BimanualConfig(target_jump_probability=1.0), np.random.default_rng(seed))
        sim.set_command(np.array(sim.config.home_positions) + 0.2)
        sim.step(2.0)
        return sim.target_positions(), sim.joint_state()[1], sim.render()

    for a, b in zip(run(7), run(7)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(run(7)[0], run(8)[0])


def test_rendering_does_not_change_the_robots_motion():
    rendered, blind = (
        BimanualSim(rng=np.random.default_rng(3)),
        BimanualSim(rng=np.random.default_rng(3)),
    )
    for _ in range(10):
        rendered.render()
        for sim in (rendered, blind):
            sim.set_command(np.array(sim.config.home_positions) + 0.1)
            sim.step(0.02)
    np.testing.assert_array_equal(rendered.joint_state()[1], blind.joint_state()[1])


def test_render_is_uint8_rgb_of_the_requested_size():
    sim = BimanualSim(rng=np.random.default_rng(0))
    image = sim.render()
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert sim.render(48, 64).shape == (48, 64, 3)


def cube_pixel(sim, arm, image):
    (col, row), _ = sim.camera(*image.shape[:2]).project(sim.target_positions()[arm])
    return image[int(round(row)), int(round(col))].astype(int)


def test_each_cube_is_drawn_in_its_colour_where_the_camera_sees_it():
    sim = noiseless_sim(seed=4)
    image = sim.render()
    red, blue = cube_pixel(sim, 0, image), cube_pixel(sim, 1, image)
    assert red[0] > 150 and red[2] < 80, red
    assert blue[2] > 150 and blue[0] < 80, blue


def test_the_image_changes_where_a_cube_moved_and_the_joint_state_does_not_show_it():
    sim = noiseless_sim(seed=5, target_jump_probability=1.0, target_jump_window_s=(0.1, 0.1))
    before_targets, before_image = sim.target_positions(), sim.render()
    before_joints = sim.joint_state()[1]
    sim.step(0.12)
    after_targets, after_image = sim.target_positions(), sim.render()
    moved_m = np.linalg.norm(after_targets - before_targets, axis=1)
    assert np.all(moved_m >= sim.config.target_jump_min_distance_m)
    np.testing.assert_array_equal(sim.joint_state()[1], before_joints)
    changed = np.abs(after_image.astype(int) - before_image.astype(int)).sum(axis=2) > 60
    assert 4 <= changed.sum() < 0.05 * changed.size
    assert cube_pixel(sim, 0, after_image)[0] > 150


def move_gripper_to(sim, arm, ee_xyz, seconds=2.5):
    base, yaw = sim.config.base_pose(arm)
    command = np.array(sim.joint_state()[1])
    command[arm_slice(arm)][:6] = top_down_ik(sim.config.links, base, yaw, ee_xyz)
    command[arm * JOINTS_PER_ARM + GRIPPER_INDEX] = sim.config.position_upper[GRIPPER_INDEX]
    sim.set_command(command)
    sim.step(seconds)
    return command


def close_gripper(sim, arm, command):
    command[arm * JOINTS_PER_ARM + GRIPPER_INDEX] = 0.0
    sim.set_command(command)
    sim.step(1.0)


def test_closing_on_the_cube_stalls_at_its_width_and_counts_as_grasped():
    sim = noiseless_sim(seed=1)
    command = move_gripper_to(sim, 0, sim.target_positions()[0])
    assert sim.target_distances()[0] < 1e-3
    close_gripper(sim, 0, command)
    assert sim.joint_state()[1][GRIPPER_INDEX] == pytest.approx(sim.config.cube_size_m)
    assert sim.grasped().tolist() == [True, False] and not sim.task_success()


def test_closing_on_air_closes_fully_and_grasps_nothing():
    sim = noiseless_sim(seed=1)
    command = move_gripper_to(sim, 0, sim.target_positions()[0] + [0.0, 0.0, 0.06])
    close_gripper(sim, 0, command)
    assert sim.joint_state()[1][GRIPPER_INDEX] == pytest.approx(0.0, abs=1e-4)
    assert not sim.grasped()[0]


def test_a_held_cube_follows_the_gripper_and_drops_when_released():
    sim = noiseless_sim(seed=1)
    command = move_gripper_to(sim, 0, sim.target_positions()[0])
    close_gripper(sim, 0, command)
    lifted = sim.target_positions()[0] + [0.05, 0.0, 0.1]
    command[:6] = top_down_ik(sim.config.links, *sim.config.base_pose(0), lifted)
    sim.set_command(command)
    sim.step(2.0)
    np.testing.assert_allclose(sim.target_positions()[0], lifted, atol=2e-3)
    command[GRIPPER_INDEX] = sim.config.position_upper[GRIPPER_INDEX]
    sim.set_command(command)
    sim.step(1.0)
    assert not sim.grasped()[0]
    assert sim.target_positions()[0][2] == pytest.approx(sim.config.cube_size_m / 2)


def test_the_episode_is_over_at_its_duration():
    sim = noiseless_sim(episode_duration_s=0.1)
    sim.step(0.08)
    assert not sim.episode_over
    sim.step(0.02)
    assert sim.episode_over
    sim.reset()
    assert sim.time_s == 0.0 and not sim.episode_over


def test_the_cube_positions_can_be_read_from_the_default_image_to_within_a_centimetre():
    errors = []
    for seed in range(10):
        sim = BimanualSim(rng=np.random.default_rng(seed))
        image = sim.render().astype(int)
        camera = sim.camera()
        axis = np.linspace(-0.3, 0.3, 121)
        grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
        top_face = np.column_stack([grid, np.full(len(grid), sim.config.cube_size_m)])
        grid_px, _ = camera.project(top_face)
        for arm, (channel, others) in enumerate([(0, [1, 2]), (2, [0, 1])]):
            mask = (image[..., channel] > 140) & (image[..., others] < 100).all(axis=-1)
            rows, cols = np.nonzero(mask)
            centroid = np.array([cols.mean(), rows.mean()])
            estimate = grid[np.argmin(np.linalg.norm(grid_px - centroid, axis=1))]
            errors.append(np.linalg.norm(estimate - sim.target_positions()[arm, :2]))
    assert max(errors) < 0.01, errors


def test_episode_streams_are_the_children_of_the_seed_in_order():
    children = np.random.default_rng(7).spawn(3)
    assert [episode_rng(7, k).random() for k in range(3)] == [c.random() for c in children]
