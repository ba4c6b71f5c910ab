"""The ViperX-shaped chain: forward kinematics and the closed-form top-down IK agree."""

import math

import numpy as np
import pytest

from rtc_ros.sim.config import BimanualConfig
from rtc_ros.sim.kinematics import ArmLinks, UnreachableError, forward_kinematics, top_down_ik
from rtc_ros.sim.render import PinholeCamera, convex_hull


def test_zero_pose_has_the_upper_arm_up_and_forearm_and_gripper_forward():
    links = ArmLinks()
    points, rotation = forward_kinematics(links, np.zeros(3), 0.0, np.zeros(6))
    reach = (
        links.upper_arm_offset_m
        + links.forearm_length_m
        + links.wrist_length_m
        + links.gripper_length_m
    )
    np.testing.assert_allclose(
        points[-1], [reach, 0.0, links.shoulder_height_m + links.upper_arm_length_m]
    )
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("arm", [0, 1])
@pytest.mark.parametrize("wrist_rotate", [0.0, math.pi / 2])
def test_top_down_ik_puts_the_fingertips_on_the_point_with_the_gripper_pointing_down(
    arm, wrist_rotate
):
    config = BimanualConfig()
    base, yaw = config.base_pose(arm)
    rng = np.random.default_rng(arm)
    x0, x1, y0, y1 = config.target_region(arm)
    for _ in range(20):
        target = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(0.02, 0.15)])
        joints = top_down_ik(
            config.links,
            base,
            yaw,
            target,
            wrist_rotate,
            config.position_lower,
            config.position_upper,
        )
        points, rotation = forward_kinematics(config.links, base, yaw, joints)
        np.testing.assert_allclose(points[-1], target, atol=1e-9)
        np.testing.assert_allclose(rotation[:, 0], [0.0, 0.0, -1.0], atol=1e-9)
        radial = (target - base)[:2] / np.linalg.norm((target - base)[:2])
        finger_dir = rotation[:2, 1]
        # wrist_rotate 0: fingers open across the line from the base; pi/2: along it.
        assert abs(finger_dir @ radial) == pytest.approx(math.sin(wrist_rotate), abs=1e-9)


def test_top_down_ik_reports_points_out_of_reach():
    config = BimanualConfig()
    with pytest.raises(UnreachableError, match="out of reach"):
        top_down_ik(config.links, *config.base_pose(0), np.array([0.5, 0.0, 0.02]))


def test_camera_projects_the_look_at_point_to_the_image_centre_and_x_to_the_right():
    camera = PinholeCamera((0.0, -0.3, 1.5), (0.0, 0.0, 0.0), 40.0, 64, 96)
    (col, row), depth = camera.project(np.zeros(3))
    assert (col, row) == pytest.approx((47.5, 31.5))
    assert depth == pytest.approx(math.hypot(0.3, 1.5))
    assert camera.project(np.array([0.1, 0.0, 0.0]))[0][0] > col


def test_convex_hull_keeps_only_the_outer_points():
    points = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [1, 0]])
    assert sorted(map(tuple, convex_hull(points))) == [(0, 0), (0, 2), (2, 0), (2, 2)]
