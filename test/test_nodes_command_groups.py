"""Command groups: each group of joints on its own topic, as one joint_trajectory_controller per
arm expects; checked at the parameter boundary and over real DDS.
"""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_graph import CONFIG, RosGraph, config_overrides  # noqa: E402
from test_launch_support import small_policy_checkpoint  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rtc_ros.msg import RtcStatus  # noqa: E402
from rtc_ros.nodes.controller_links import CommandPublisher  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import (  # noqa: E402
    CommandFormat,
    ControllerPlacement,
    parse_command_groups,
)
from rtc_ros.sim.config import BimanualConfig  # noqa: E402

JOINTS = list(BimanualConfig().joint_names)
LEFT, RIGHT = JOINTS[:7], JOINTS[7:]
TWO_ARMS = [f"left_arm/commands: {', '.join(LEFT)}", f"right_arm/commands: {', '.join(RIGHT)}"]
PROBE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


def test_without_groups_every_joint_goes_to_commands_in_action_order():
    (group,) = parse_command_groups(None, JOINTS)
    assert (group.topic, group.joint_names, group.action_indices) == (
        "commands",
        tuple(JOINTS),
        tuple(range(14)),
    )


def test_groups_map_their_joints_to_their_places_in_the_action_vector():
    left, right = parse_command_groups(
        ["/left_arm_controller/joint_trajectory: b, a", "r: c"], "abc"
    )
    assert (left.topic, left.joint_names, left.action_indices) == (
        "/left_arm_controller/joint_trajectory",
        ("b", "a"),
        (1, 0),
    )
    assert (right.topic, right.joint_names, right.action_indices) == ("r", ("c",), (2,))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["left: a, b"], r"joints \['c'\] are in no group"),
        (["left: a, b", "right: b, c"], "joint 'b' is in both 'left' and 'right'"),
        (["left: a, b, x", "right: c"], "joint 'x' of 'left' is not in joint_names"),
        (["left a, b, c"], "entries read 'TOPIC: JOINT, JOINT, ...'"),
        (["left:"], "entries read 'TOPIC: JOINT, JOINT, ...'"),
        (["left arm: a, b, c"], "'left arm' is not a valid topic name"),
        (["same: a", "same: b, c"], "topic 'same' appears twice"),
    ],
)
def test_a_joint_in_no_group_or_in_two_or_a_malformed_group_is_a_clear_error(entries, message):
    with pytest.raises(ValueError, match=message):
        parse_command_groups(entries, ["a", "b", "c"])


def test_each_group_publishes_only_its_joints_once_every_group_is_matched(graph):
    node = graph.add(Node("commander", context=graph.context))
    commands = CommandPublisher(
        node, CommandFormat.JOINT_TRAJECTORY, parse_command_groups(TWO_ARMS, JOINTS), 0.02
    )
    left = graph.collect(JointTrajectory, "left_arm/commands", PROBE_QOS)
    assert not commands.connected()  # only one arm's controller is there
    right = graph.collect(JointTrajectory, "right_arm/commands", PROBE_QOS)
    graph.wait_for(commands.connected, what="both groups matched")
    commands(np.arange(14, dtype=np.float64))
    graph.wait_for(lambda: left and right, what="one command per arm")
    for received, names, values in ((left, LEFT, range(7)), (right, RIGHT, range(7, 14))):
        message = received[0]
        assert list(message.joint_names) == names
        np.testing.assert_allclose(message.points[0].positions, list(values))
        assert (message.header.stamp.sec, message.header.stamp.nanosec) == (0, 0)
        assert message.points[0].time_from_start.nanosec == 20_000_000


@pytest.mark.parametrize("placement", [ControllerPlacement.PROCESS, ControllerPlacement.THREAD])
def test_the_composed_node_commands_each_arm_on_its_own_topic(graph, placement):
    """The simulator supplies joint states and the camera; the probe is both arms' controllers."""
    left = graph.collect(JointTrajectory, "left_arm/commands", PROBE_QOS)
    right = graph.collect(JointTrajectory, "right_arm/commands", PROBE_QOS)
    single = graph.collect(JointTrajectory, "commands", PROBE_QOS)
    statuses = graph.collect(RtcStatus, "rtc/status")
    graph.start_process("rtc_ros.nodes.sim_node", ["--params-file", str(CONFIG)])
    graph.add_active(
        InferenceNode(
            "rtc",
            placement=placement,
            context=graph.context,
            parameter_overrides=config_overrides(
                policy=small_policy_checkpoint(), command_groups=TWO_ARMS
            ),
        )
    )
    graph.wait_for(
        lambda: len(left) >= 50 and len(right) >= 50 and statuses and statuses[-1].swaps >= 1,
        timeout_s=60,
        what="commands on both arms' topics",
    )
    assert all(list(m.joint_names) == LEFT for m in left)
    assert all(list(m.joint_names) == RIGHT for m in right)
    assert single == []


def test_the_two_arm_example_is_the_bimanual_config_with_one_group_per_controller():
    import yaml
    from ros_graph import CONFIG

    def parameters(name):
        return yaml.safe_load((CONFIG.parent / name).read_text())

    rtc = parameters("aloha_command_groups.yaml")["/**"]["ros__parameters"]
    bimanual = parameters("bimanual.yaml")["/**"]["ros__parameters"]
    changed = {"command_groups", "hardware_id"}
    assert {k: v for k, v in rtc.items() if k not in changed} == {
        k: v for k, v in bimanual.items() if k not in changed
    }
    controllers = parameters("aloha_controllers.yaml")
    for group in parse_command_groups(rtc["command_groups"], rtc["joint_names"]):
        controller = group.topic.split("/")[1]
        assert group.topic == f"/{controller}/joint_trajectory"
        assert (
            controllers["controller_manager"]["ros__parameters"][controller]["type"]
            == "joint_trajectory_controller/JointTrajectoryController"
        )
        assert tuple(controllers[controller]["ros__parameters"]["joints"]) == group.joint_names
